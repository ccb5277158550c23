"""LLM judge throughput: judge calls per second with every call in flight vs one at a time, per backend.

Each backend starts once (timed apart), warms up, and judges seeded items (arithmetic word problems with
right and wrong candidate answers, so the known labels also give the judge's accuracy): one set all at
once through one `judge_many` (the engine batches them), then another set of the same size and kind with
one `judge_many` per item. The sets differ so that vLLM's prefix cache cannot serve the second mode the
prompts the first one computed (prefixes shared within a set, like the system prompt, are cached in both).
A judge call is nearly all prompt (one token out), so on a CPU, where a prompt's forward pass is bound by
arithmetic rather than memory, batching gains little; on a GPU it gains the most.

    python scripts/bench_judge.py --num_items 64 --enforce_eager
    python scripts/bench_judge.py --backends hf --model_name Qwen/Qwen2.5-0.5B-Instruct --device cuda
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.args import BACKENDS, EngineArgs, add_engine_args, resolve_model_name
from engine.base import EngineError
from labeling.judge import JudgeItem, Verdict
from labeling.llm_judge import LLMJudge


@dataclasses.dataclass
class BackendRun:
    backend: str
    num_items: int
    start_s: float
    all_in_flight_s: float
    one_at_a_time_s: float
    prompt_tokens_per_call: float
    accuracy: float  # share of verdicts (both modes) equal to the known label
    unknown: int  # verdicts of None (both modes)

    @property
    def all_in_flight_per_s(self) -> float:
        return self.num_items / self.all_in_flight_s

    @property
    def one_at_a_time_per_s(self) -> float:
        return self.num_items / self.one_at_a_time_s

    @property
    def speedup(self) -> float:
        return self.all_in_flight_per_s / self.one_at_a_time_per_s


def make_items(num_items: int, seed: int) -> tuple[list[JudgeItem], list[bool]]:
    """Seeded word problems, each with a candidate that is right or wrong (alternately), and the truth."""
    rng = random.Random(seed)
    items, labels = [], []
    for index in range(num_items):
        red, blue = rng.randint(2, 40), rng.randint(2, 40)
        total = red + blue
        correct = index % 2 == 0
        answer = total if correct else total + rng.choice([-3, -2, -1, 1, 2, 10])
        items.append(JudgeItem(
            query=f"Sam has {red} red balls and {blue} blue balls. How many balls does Sam have?",
            gt=str(total),
            candidate=f"Sam has {red} red balls and {blue} blue balls.\n\n{red} + {blue} = {answer}.\n\n"
                      f"The answer is \\boxed{{{answer}}}.",
            answer=str(answer), task_type="math"))
        labels.append(correct)
    return items, labels


async def bench_backend(args: EngineArgs, num_items: int, seed: int) -> BackendRun:
    warm_up, _ = make_items(2, seed + 2)
    together_items, together_labels = make_items(num_items, seed)
    alone_items, alone_labels = make_items(num_items, seed + 1)
    began = time.perf_counter()
    async with LLMJudge(args) as judge:
        start_s = time.perf_counter() - began
        await judge.judge_many(warm_up)  # first forward pass, grammar compilation
        assert judge.engine is not None
        calls_before, prompt_before = judge.engine.total.num_llm_calls, judge.engine.total.prompt_tokens
        began = time.perf_counter()
        together = await judge.judge_many(together_items)
        all_in_flight_s = time.perf_counter() - began
        began = time.perf_counter()
        alone: list[Verdict] = []
        for item in alone_items:
            alone.extend(await judge.judge_many([item]))
        one_at_a_time_s = time.perf_counter() - began
        calls = judge.engine.total.num_llm_calls - calls_before
        prompt_tokens = judge.engine.total.prompt_tokens - prompt_before
    verdicts, labels = together + alone, together_labels + alone_labels
    right = sum(v.is_correct == label for v, label in zip(verdicts, labels))
    return BackendRun(args.backend, num_items, start_s, all_in_flight_s, one_at_a_time_s, prompt_tokens / calls,
                      right / len(verdicts), sum(v.is_correct is None for v in verdicts))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="hf,vllm", help="comma-separated backends, each started once")
    parser.add_argument("--num_items", type=int, default=64, help="judge calls per mode")
    parser.add_argument("--output_json", default=None, help="also write the figures to this JSON file")
    add_engine_args(parser)
    args = parser.parse_args(argv)
    args.backend_list = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = [name for name in args.backend_list if name not in BACKENDS]
    if unknown:
        parser.error(f"--backends: unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    if args.num_items < 1:
        parser.error("--num_items must be at least 1")
    return args


async def run(args: argparse.Namespace) -> list[BackendRun]:
    base = EngineArgs.from_namespace(args)
    base = dataclasses.replace(base, model_name=resolve_model_name(base.model_name))
    runs = []
    for backend in args.backend_list:
        run = await bench_backend(dataclasses.replace(base, backend=backend), args.num_items, args.seed)
        runs.append(run)
        print(f"{backend}: {run.all_in_flight_per_s:.1f} calls/s all in flight, {run.one_at_a_time_per_s:.1f} "
              f"one at a time ({run.speedup:.1f}x)", flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        runs = asyncio.run(run(args))
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"\nmodel {resolve_model_name(args.model_name)}, {args.num_items} judge calls per mode")
    header = f"{'backend':8} {'start s':>8} {'in flight/s':>12} {'one by one/s':>13} {'ratio':>6} " \
             f"{'prompt tok':>11} {'acc':>6} {'None':>5}"
    print(header)
    for r in runs:
        print(f"{r.backend:8} {r.start_s:8.1f} {r.all_in_flight_per_s:12.2f} {r.one_at_a_time_per_s:13.2f} "
              f"{r.speedup:6.2f} {r.prompt_tokens_per_call:11.0f} {r.accuracy:6.2f} {r.unknown:5d}")
    if args.output_json:
        figures = [{**dataclasses.asdict(r), "all_in_flight_per_s": r.all_in_flight_per_s,
                    "one_at_a_time_per_s": r.one_at_a_time_per_s, "speedup": r.speedup} for r in runs]
        Path(args.output_json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":  # vLLM on CPU spawns its engine processes: the guard is required
    sys.exit(main())
