"""Label teacher trajectories: judge every solution turn of inference records, write labeled records.

    python label.py --input results/GSM8K/Qwen/Qwen3-8B/llm_debate_infer.jsonl --dataset_name GSM8K
    python label.py --input results/QMSum/Qwen/Qwen3-32B/llm_debate_infer.jsonl --dataset_name QMSum \\
        --model Qwen/Qwen2.5-72B-Instruct --tensor_parallel_size 4 --use_vllm
    python label.py --input 'results/Arith/SmolLM2-135M-Instruct/*_infer.jsonl' --dataset_name Arith \\
        --judge rule --output results/Arith/labeled.jsonl
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys

from engine import EngineArgs, EngineError, add_engine_args
from engine.args import parse_args_with_explicit
from labeling.labeler import JUDGE_CHOICES, LabelError, LabelOptions, format_run, run_labeling
from labeling.rule_judge import DEFAULT_F1_THRESHOLD

logger = logging.getLogger("agentark.label")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = parser.add_argument_group("labelling")
    g.add_argument("--input", nargs="+", required=True,
                   help="inference files (<method>_infer.jsonl) or globs; several go into one labeled file")
    g.add_argument("--dataset_name", required=True, help="dataset registry name (GSM8K, MATH, MedMCQA, QMSum, ...)")
    g.add_argument("--judge", choices=JUDGE_CHOICES, default=None,
                   help="rule (eval's graders), llm (the judge model) or both (agreement is reported); "
                        "default: rule for math and multiple-choice datasets, llm for short answers")
    g.add_argument("--model", dest="model_name", default=argparse.SUPPRESS,
                   help="the judge model for --judge llm/both (same as --model_name)")
    g.add_argument("--output", default=None,
                   help="labeled file (default: <method>_labeled.jsonl beside the input; required with several)")
    g.add_argument("--all_rounds", action="store_true",
                   help="every round's solution of each agent (default: each agent's last one)")
    g.add_argument("--keep_truncated", action="store_true",
                   help="keep solutions cut off at the token limit (finish_reason length)")
    g.add_argument("--f1_threshold", type=float, default=DEFAULT_F1_THRESHOLD,
                   help="rule judge, short answers: correct when token F1 >= this")
    g.add_argument("--max_context_tokens", type=int, default=None,
                   help="llm judge: most tokens of a long context (QMSum, QASPER) kept, cut from the middle "
                        "(default: what fits the judge model's context length)")
    g.add_argument("--grade_timeout", type=float, default=5.0, help="rule judge: seconds per symbolic math check")
    g.add_argument("--num_workers", type=int, default=None,
                   help="rule judge: processes for symbolic math checks (default: the number of CPU cores)")
    g.add_argument("--start", type=int, default=0, help="first question (0-based, in input order)")
    g.add_argument("--end", type=int, default=None, help="stop before this question")
    g.add_argument("--num_shards", type=int, default=1, help="split the questions into K shards (one per job)")
    g.add_argument("--shard_id", type=int, default=0, help="which shard this job labels (0-based)")
    g.add_argument("--retry_errors", action="store_true",
                   help="label again the questions whose record is incomplete (an unread verdict, a failed input)")
    g.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    g.add_argument("--log_level", default="INFO", help="logging level")
    add_engine_args(parser)
    return parser


ENGINE_FLAGS = frozenset(action.dest for action in add_engine_args(argparse.ArgumentParser())._actions) - {"help"}


async def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.f1_threshold <= 1.0:
        raise LabelError(f"--f1_threshold must be in [0, 1], got {args.f1_threshold}")
    if not 0 < args.grade_timeout < math.inf:
        raise LabelError(f"--grade_timeout must be a finite number of seconds > 0, got {args.grade_timeout}")
    if args.max_context_tokens is not None and args.max_context_tokens < 0:
        raise LabelError(f"--max_context_tokens must be >= 0, got {args.max_context_tokens}")
    if args.num_workers is not None and args.num_workers < 1:
        raise LabelError(f"--num_workers must be >= 1, got {args.num_workers}")
    engine_args = EngineArgs.from_namespace(args)

    def make_llm_judge():
        from labeling.llm_judge import LLMJudge  # imported only here: rule judging never loads an engine

        return LLMJudge(engine_args, max_context_tokens=args.max_context_tokens)

    options = LabelOptions(
        inputs=args.input, dataset_name=args.dataset_name, output=args.output, judge=args.judge,
        all_rounds=args.all_rounds, keep_truncated=args.keep_truncated, f1_threshold=args.f1_threshold,
        start=args.start, end=args.end, num_shards=args.num_shards, shard_id=args.shard_id,
        retry_errors=args.retry_errors, progress=not args.no_progress, num_workers=args.num_workers,
        grade_timeout_s=args.grade_timeout,
        engine_flags=sorted(args.explicit_flags & ENGINE_FLAGS))
    result = await run_labeling(options, make_llm_judge)
    print(format_run(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args_with_explicit(build_parser(), argv)  # flags given for another backend are warned about
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    try:
        return asyncio.run(run(args))
    except (LabelError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: labeled questions are saved; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
