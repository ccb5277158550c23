"""Train a process reward model on labeled records (label.py's output) with the HF Trainer.

    PYTHONPATH=$PYTHONPATH:$(pwd) python prm/finetune2.py --model_name_or_path Qwen/Qwen3-8B \\
        --train_data_path results/QMSum/labeled.jsonl --output_dir outputs/prm_qmsum --num_train_epochs 3 \\
        --per_device_train_batch_size 64 --learning_rate 1e-4 --bf16 True --fix_llm True

Every `TrainingArguments` flag works (`--deepspeed`, `--report_to`, `--resume_from_checkpoint`, ...);
`--warmup_ratio` is mapped to transformers 5's fractional `--warmup_steps`. Also `python -m prm.finetune2`.
"""
from __future__ import annotations

import os
import sys

if __package__ in (None, ""):
    # Run as `python prm/finetune2.py`: Python puts prm/ first on sys.path, where our module names
    # (model, template, ...) would shadow real packages. Put the repository root there instead.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

import dataclasses  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from transformers import HfArgumentParser, TrainingArguments  # noqa: E402

from data.errors import DataError  # noqa: E402
from prm.callbacks import NanMonitor, NonFiniteTrainingError, StepProbe  # noqa: E402
from prm.examples import (  # noqa: E402
    LABEL_MODES,
    PRMCollator,
    encode_questions,
    read_labeled,
    select_questions,
    split_questions,
)
from prm.loading import build_prm  # noqa: E402
from prm.template import DEFAULT_SEPARATOR  # noqa: E402
from prm.trainer import PRMTrainer, step_metrics  # noqa: E402

logger = logging.getLogger("agentark.prm")


class UsageError(ValueError):
    """A flag or input that cannot work; reported in one line, exit status 2."""


@dataclass
class PRMArguments:
    """PRM flags beside TrainingArguments (the seed's names kept)."""

    model_name_or_path: str | None = field(default=None, metadata={
        "help": "base model (hub id or folder); default: the embedded default model (SmolLM2-135M-Instruct)"})
    train_data_path: str | None = field(default=None, metadata={"help": "labeled records (label.py output); required"})
    eval_data_path: str | None = field(default=None, metadata={
        "help": "held-out labeled records; its step AUROC is printed after training"})
    eval_split_ratio: float = field(default=0.0, metadata={
        "help": "share of training questions held out for evaluation when no --eval_data_path is given"})
    max_length: int = field(default=2048, metadata={
        "help": "most tokens per solution: the question is cut from the left first; solutions whose steps "
                "alone do not fit are left out and counted"})
    label_mode: str = field(default="outcome", metadata={
        "help": "outcome: every step labelled with the solution's correctness; last: only the final step; "
                "solution: the whole solution as one step", "choices": list(LABEL_MODES)})
    require_mixed: bool = field(default=True, metadata={
        "help": "keep only questions with both correct and incorrect solutions"})
    fix_llm: bool = field(default=False, metadata={"help": "freeze the backbone and train the step head only"})
    use_lora: bool = field(default=False, metadata={"help": "train LoRA adapters (peft) and the head"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: str = field(default="all-linear", metadata={
        "help": "LoRA target modules: all-linear, or comma-separated module names (q_proj,v_proj)"})
    separator: str = field(default=DEFAULT_SEPARATOR, metadata={
        "help": "text after each step; the step's label sits on its last token"})
    enable_nan_monitoring: bool = field(default=True, metadata={
        "help": "skip steps with a NaN/inf loss or gradient, save their batch ids to <output_dir>/nan_debug/"})
    nan_patience: int = field(default=5, metadata={"help": "stop after this many bad steps in a row"})
    warmup_ratio: float | None = field(default=None, metadata={
        "help": "share of training steps spent warming up (passed as transformers 5's fractional warmup_steps)"})


def parse_args(argv: list[str] | None = None) -> tuple[PRMArguments, TrainingArguments]:
    """Both dataclasses; TrainingArguments is built after mapping --warmup_ratio and picking a device
    for --bf16, because its own checks would reject both as given."""
    parser = HfArgumentParser((PRMArguments, TrainingArguments), description=__doc__)
    namespace = parser.parse_args(argv)
    values = vars(namespace)
    prm_keys = {f.name for f in dataclasses.fields(PRMArguments)}
    prm_args = PRMArguments(**{k: v for k, v in values.items() if k in prm_keys})
    train_values = {k: v for k, v in values.items() if k not in prm_keys}
    if prm_args.warmup_ratio is not None:
        if not 0.0 <= prm_args.warmup_ratio < 1.0:
            raise UsageError(f"--warmup_ratio must be in [0, 1), got {prm_args.warmup_ratio}")
        if train_values.get("warmup_steps"):
            raise UsageError("give --warmup_ratio or --warmup_steps, not both")
        train_values["warmup_steps"] = float(prm_args.warmup_ratio)
    if train_values.get("bf16"):
        if not torch.cuda.is_available() and not train_values.get("use_cpu"):
            logger.info("--bf16 True without a GPU: training on CPU with bf16 autocast (--use_cpu True)")
            train_values["use_cpu"] = True
        elif torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            logger.warning("--bf16 True but this GPU has no bf16: training in fp32 instead")
            train_values["bf16"] = False
    if not torch.cuda.is_available():
        train_values["dataloader_pin_memory"] = False  # pinning is for copies to an accelerator; none here
    # Our collator needs each example's id (for nan_debug/); the Trainer would strip it as an unused column.
    train_values["remove_unused_columns"] = False
    report_to = train_values.get("report_to") or []
    if "wandb" in (report_to if isinstance(report_to, list) else [report_to]) and \
            importlib.util.find_spec("wandb") is None:
        raise UsageError("--report_to wandb needs the wandb package: pip install wandb "
                         "(its key comes from WANDB_API_KEY or `wandb login`; WANDB_MODE=offline works too)")
    deepspeed = train_values.get("deepspeed")
    if deepspeed:
        if isinstance(deepspeed, str) and deepspeed.endswith(".json") and not os.path.isfile(deepspeed):
            raise UsageError(f"--deepspeed {deepspeed}: no such file (configs/ds_zero2.json is one)")
        if importlib.util.find_spec("deepspeed") is None:
            raise UsageError("--deepspeed needs the deepspeed package (pip install -r requirements-gpu.txt)")
    return prm_args, TrainingArguments(**train_values)


def _resume_path(value: str | None, output_dir: str) -> str | None:
    """The checkpoint to resume: a folder, or true/last for the newest complete one in --output_dir.

    The Trainer writes trainer_state.json last, so a checkpoint without it was cut off mid-save by a kill.
    """
    if not value:
        return None
    if value.lower() in ("true", "last", "latest"):
        found = sorted((int(p.name.split("-")[1]), p) for p in Path(output_dir).glob("checkpoint-*")
                       if p.is_dir() and p.name.split("-")[1].isdigit()) if os.path.isdir(output_dir) else []
        complete = [p for _, p in found if (p / "trainer_state.json").is_file()]
        if not complete:
            raise UsageError(f"--resume_from_checkpoint {value}: no complete checkpoint-* folder in {output_dir}")
        if found[-1][1] != complete[-1]:
            logger.warning("%s is incomplete (killed while saving?): resuming from %s", found[-1][1], complete[-1])
        return str(complete[-1])
    if not os.path.isdir(value):
        raise UsageError(f"--resume_from_checkpoint {value}: no such folder")
    if not os.path.isfile(os.path.join(value, "trainer_state.json")):
        raise UsageError(f"--resume_from_checkpoint {value}: no trainer_state.json (an incomplete checkpoint)")
    return value


def _report_selection(name: str, selection, require_mixed: bool) -> None:
    kept = len(selection.questions)
    parts = [f"{name}: kept {kept} of {selection.questions_in} questions"]
    if require_mixed:
        parts.append(f"dropped {selection.dropped_not_mixed} without both correct and incorrect solutions")
    parts.append(f"dropped {selection.dropped_no_judged} with no judged solution")
    parts.append(f"skipped {selection.solutions_unjudged} solutions with is_correct null")
    print("; ".join(parts))


def _report_encoding(name: str, dataset, max_length: int) -> None:
    s = dataset.summary
    positive = s.positive_labels / s.steps_labelled if s.steps_labelled else float("nan")
    print(f"{name}: {s.solutions} solutions, {s.steps_labelled} labelled steps ({positive:.1%} correct); "
          f"{s.did_not_fit} solutions left out because their steps exceed --max_length {max_length}; "
          f"{s.prompt_truncated} with the question cut from the left; {s.empty} with no steps")


def load_data(args: PRMArguments, seed: int):
    """Training and evaluation questions, with what was kept and dropped printed."""
    if not args.train_data_path:
        raise UsageError("--train_data_path is required (a labeled file from label.py)")
    train_selection = select_questions(read_labeled(args.train_data_path), args.require_mixed)
    _report_selection(args.train_data_path, train_selection, args.require_mixed)
    if not train_selection.questions:
        why = "has both correct and incorrect solutions" if args.require_mixed else "has a judged solution"
        raise UsageError(f"{args.train_data_path}: no question {why}; nothing to train on"
                         + (" (--require_mixed False trains on all of them)" if args.require_mixed else ""))
    train_questions = train_selection.questions
    eval_questions: list = []
    if args.eval_data_path:
        eval_selection = select_questions(read_labeled(args.eval_data_path), require_mixed=False)
        _report_selection(args.eval_data_path, eval_selection, require_mixed=False)
        eval_questions = eval_selection.questions
    elif args.eval_split_ratio > 0:
        try:
            train_questions, eval_questions = split_questions(train_questions, args.eval_split_ratio, seed)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        print(f"held out {len(eval_questions)} of {len(train_selection.questions)} questions for evaluation")
    return train_questions, eval_questions


def run(prm_args: PRMArguments, training_args: TrainingArguments) -> dict:
    if prm_args.max_length < 8:
        raise UsageError(f"--max_length must be >= 8, got {prm_args.max_length}")
    if prm_args.fix_llm and prm_args.use_lora:
        raise UsageError("--fix_llm and --use_lora exclude each other: --fix_llm trains the head only")
    resume = _resume_path(training_args.resume_from_checkpoint, training_args.output_dir)
    train_questions, eval_questions = load_data(prm_args, training_args.seed)
    model_name = prm_args.model_name_or_path
    if model_name is None:
        from engine.default_model import ensure_default_model

        model_name = str(ensure_default_model())
    # A frozen backbone needs no fp32 master weights: in bf16 it takes half the memory (16 GB for an 8B).
    backbone_dtype = torch.bfloat16 if prm_args.fix_llm and training_args.bf16 else torch.float32
    model = build_prm(model_name, label_mode=prm_args.label_mode, max_length=prm_args.max_length,
                      separator=prm_args.separator, fix_llm=prm_args.fix_llm, use_lora=prm_args.use_lora,
                      lora_r=prm_args.lora_r, lora_alpha=prm_args.lora_alpha, lora_dropout=prm_args.lora_dropout,
                      lora_target_modules=prm_args.lora_target_modules, backbone_dtype=backbone_dtype,
                      seed=training_args.seed)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    print(f"model {model_name}: {trainable:,} of {total:,} parameters trained"
          + (" (head only: --fix_llm)" if prm_args.fix_llm else " (LoRA + head)" if prm_args.use_lora else ""))
    train_dataset = encode_questions(train_questions, model.template, prm_args.label_mode, prm_args.max_length)
    _report_encoding("train", train_dataset, prm_args.max_length)
    if len(train_dataset) == 0:
        raise UsageError(f"{prm_args.train_data_path}: no solution fits --max_length {prm_args.max_length}")
    eval_dataset = None
    if eval_questions:
        eval_dataset = encode_questions(eval_questions, model.template, prm_args.label_mode, prm_args.max_length)
        _report_encoding("eval", eval_dataset, prm_args.max_length)
    probe = StepProbe()
    callbacks = [NanMonitor(probe, prm_args.nan_patience)] if prm_args.enable_nan_monitoring else []
    trainer = PRMTrainer(model=model, args=training_args, train_dataset=train_dataset,
                         eval_dataset=eval_dataset or None, data_collator=PRMCollator(model.tokenizer.pad_token_id),
                         processing_class=model.tokenizer, compute_metrics=step_metrics, callbacks=callbacks,
                         probe=probe)
    if resume:
        step = json.loads(Path(resume, "trainer_state.json").read_text(encoding="utf-8")).get("global_step")
        print(f"resuming from {resume} (global step {step})")
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_state()
    if training_args.should_save:
        model.save_pretrained(training_args.output_dir, merge_lora=True)
    summary = {"train_loss": result.training_loss, "global_step": result.global_step}
    if eval_dataset is not None and len(eval_dataset):
        metrics = trainer.evaluate()
        summary.update({k: v for k, v in metrics.items() if k in ("eval_loss", "eval_step_auroc",
                                                                  "eval_step_accuracy")})
    print(f"saved the PRM to {training_args.output_dir} (load it with prm.load); "
          + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()))
    return summary


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        prm_args, training_args = parse_args(argv)
        logger.info("PRM arguments: %s", prm_args)
        run(prm_args, training_args)
    except (UsageError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteTrainingError as exc:
        print(f"error: training stopped: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
