"""Run a multi-agent method over a dataset and write one trajectory record per sample.

    python inference.py --method_name llm_debate --test_dataset_name GSM8K --model_name Qwen/Qwen3-8B --use_vllm
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from engine import EngineArgs, EngineError, add_engine_args, build_engine
from engine.args import parse_args_with_explicit
from methods import REGISTRY, ConfigError, UnknownMethodError, get_method_class
from methods.runner import default_output_path, model_label, run_method

logger = logging.getLogger("agentark.inference")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = parser.add_argument_group("run")
    g.add_argument("--method_name", default="llm_debate", help=f"one of: {', '.join(sorted(REGISTRY))}")
    g.add_argument("--method_config_name", default="config_main",
                   help="config name under methods/<method_name>/configs/ (without .yaml), or a path to a .yaml file")
    g.add_argument("--test_dataset_name", default="GSM8K", help="dataset registry name (GSM8K, MATH, MedMCQA, ...)")
    g.add_argument("--data_path", default=None, help="local JSON/JSONL/parquet file in the dataset's own schema")
    g.add_argument("--split", default=None, help="dataset split (default: the dataset's evaluation split)")
    g.add_argument("--max_samples", type=int, default=None, help="use only the first N samples")
    g.add_argument("--output_path", default=None,
                   help="results file (default: <result_dir>/<dataset>/<model>/<method>_infer.jsonl)")
    g.add_argument("--result_dir", default="results", help="root folder of results")
    g.add_argument("--retry_errors", action="store_true", help="redo samples whose record holds an error")
    g.add_argument("--num_shards", type=int, default=1, help="split the samples into K shards (one per job)")
    g.add_argument("--shard_id", type=int, default=0, help="which shard this job runs (0-based)")
    g.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    g.add_argument("--log_level", default="INFO", help="logging level")
    add_engine_args(parser)
    return parser


async def run(args: argparse.Namespace) -> int:
    from data.records import RecordStore, shard_path
    from data.registry import get_dataset_spec, load_samples

    # Everything a user can get wrong is checked before the model loads.
    if not 0 <= args.shard_id < args.num_shards:
        raise UserError(f"--shard_id {args.shard_id} must be in [0, --num_shards {args.num_shards})")
    spec = get_dataset_spec(args.test_dataset_name)
    method_cls = get_method_class(args.method_name)
    config = method_cls.load_config(args.method_config_name)
    engine_args = EngineArgs.from_namespace(args)
    samples = load_samples(args.test_dataset_name, data_path=args.data_path, split=args.split,
                           max_samples=args.max_samples, num_shards=args.num_shards, shard_id=args.shard_id)

    engine = build_engine(engine_args)
    model = model_label(engine.model_name)
    output = args.output_path or default_output_path(args.result_dir, spec.name, engine.model_name, args.method_name)
    if args.num_shards > 1:
        output = shard_path(output, args.shard_id, args.num_shards)
    store = RecordStore(output)
    store.load()
    if args.retry_errors:
        store.drop_errors()
    done = store.done_ids(retry_errors=args.retry_errors)
    todo = [s for s in samples if s.id not in done]
    logger.info("method=%s config=%s dataset=%s samples=%d (done %d, to run %d) model=%s backend=%s output=%s",
                args.method_name, args.method_config_name, spec.name, len(samples), len(samples) - len(todo),
                len(todo), engine.model_name, engine_args.backend, output)
    if not todo:
        logger.info("nothing to do: all %d samples have records in %s", len(samples), output)
        return 0

    method = method_cls(engine, config, task_type=spec.task_type, seed=args.seed)
    async with engine:
        summary = await run_method(method, engine, todo, store, max_concurrency=args.max_concurrency,
                                   model=model, progress=not args.no_progress)
    logger.info("wrote %d records (%d failed) in %.1fs to %s; LLM calls %d, tokens %d prompt / %d completion",
                summary.done + summary.failed, summary.failed, summary.elapsed_s, output,
                engine.total.num_llm_calls, engine.total.prompt_tokens, engine.total.completion_tokens)
    if summary.failed:
        logger.warning("%d samples failed (first: %s); rerun with --retry_errors to redo them",
                       summary.failed, ", ".join(summary.failed_ids[:5]))
    return 1 if summary.failed and summary.failed == summary.total else 0


class UserError(ValueError):
    """A bad flag value: reported in one line."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args_with_explicit(build_parser(), argv)  # flags given for another backend are warned about
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    from data.errors import DataError

    try:
        return asyncio.run(run(args))
    except (UserError, DataError, ConfigError, UnknownMethodError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished samples are saved; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
