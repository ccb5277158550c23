"""Throughput of the backends on the same runs: every method over the same samples, samples/s per backend.

Each backend starts once (its start is timed apart), then runs each method through the inference driver
(`run_method`, all samples concurrently) at the engine's default sampling, as `inference.py` would; the
report gives samples/s per method and backend, the failed samples, and the ratio to the first backend.

    python scripts/bench_backends.py --enforce_eager --model_max_tokens 128
    python scripts/bench_backends.py --methods llm_debate,cot --backends hf,vllm --max_samples 4
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.errors import DataError
from data.registry import get_dataset_spec, load_samples
from data.schema import Sample
from engine.args import BACKENDS, EngineArgs, add_engine_args, build_engine
from engine.base import EngineError
from methods import REGISTRY, ConfigError, UnknownMethodError, get_method_class
from methods.runner import run_method


@dataclasses.dataclass
class MethodRun:
    """One method on one backend, and what it produced."""

    backend: str
    method: str
    num_samples: int
    failed: int
    num_calls: int
    completion_tokens: int
    wall_s: float

    @property
    def samples_per_s(self) -> float:
        return self.num_samples / self.wall_s

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s


class ListStore:
    """Records kept in memory: the benchmark measures the engine, not the disk."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def append(self, record: dict) -> None:
        self.records.append(record)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(REGISTRY),
                        help="comma-separated methods to run (default: all six)")
    parser.add_argument("--backends", default="hf,vllm",
                        help="comma-separated backends, each started once; ratios are to the first")
    parser.add_argument("--method_config_name", default="config_main", help="methods/<name>/configs/<this>.yaml")
    parser.add_argument("--test_dataset_name", default="GSM8K", help="dataset name (see data/registry.py)")
    parser.add_argument("--data_path", default="data/samples/gsm8k.jsonl",
                        help="local file in the dataset's schema; empty string: the hub split")
    parser.add_argument("--split", default=None, help="dataset split (default: the dataset's test split)")
    parser.add_argument("--max_samples", type=int, default=None, help="use only the first N samples")
    parser.add_argument("--output_json", default=None, help="also write the figures to this JSON file")
    add_engine_args(parser)
    # A short budget so six methods on two backends finish on a CPU; sampling stays at the defaults.
    parser.set_defaults(model_max_tokens=128)
    args = parser.parse_args(argv)
    args.method_list = [name.strip() for name in args.methods.split(",") if name.strip()]
    args.backend_list = [name.strip() for name in args.backends.split(",") if name.strip()]
    for name in args.method_list:
        get_method_class(name)  # an unknown name fails here, before any model loads
    unknown = [name for name in args.backend_list if name not in BACKENDS]
    if unknown or not args.backend_list:
        parser.error(f"--backends: choose from {', '.join(BACKENDS)}, got {args.backends!r}")
    return args


async def bench_backend(args: argparse.Namespace, backend: str, samples: list[Sample]) -> tuple[float, list[MethodRun]]:
    """Start `backend` once and run every method on `samples`; returns the start time and the runs."""
    engine_args = dataclasses.replace(EngineArgs.from_namespace(args), backend=backend)
    task_type = get_dataset_spec(args.test_dataset_name).task_type
    runs = []
    start = time.perf_counter()
    async with build_engine(engine_args) as engine:
        # Warm-up outside the clocks (first-call allocations, lazy kernels).
        await engine.chat([{"role": "user", "content": samples[0].query}], max_tokens=4)
        start_s = time.perf_counter() - start
        print(f"[{backend}] started in {start_s:.1f} s", flush=True)
        for name in args.method_list:
            method_cls = get_method_class(name)
            method = method_cls(engine, method_cls.load_config(args.method_config_name), task_type=task_type,
                                seed=args.seed)
            calls, tokens = engine.total.num_llm_calls, engine.total.completion_tokens
            summary = await run_method(method, engine, samples, ListStore(), max_concurrency=args.max_concurrency,
                                       progress=False)
            run = MethodRun(backend, name, len(samples), summary.failed, engine.total.num_llm_calls - calls,
                            engine.total.completion_tokens - tokens, summary.elapsed_s)
            runs.append(run)
            print(f"[{backend}] {name:<17} {run.wall_s:7.1f} s  {run.samples_per_s:6.3f} samples/s  "
                  f"{run.tokens_per_s:6.1f} tok/s  calls {run.num_calls}  failed {run.failed}", flush=True)
    return start_s, runs


def print_report(args: argparse.Namespace, starts: dict[str, float], runs: list[MethodRun]) -> None:
    base, others = args.backend_list[0], args.backend_list[1:]
    by_key = {(run.backend, run.method): run for run in runs}
    print(f"\ndataset={args.test_dataset_name} samples={runs[0].num_samples} "
          f"model={args.model_name or 'default (SmolLM2-135M-Instruct)'} temperature={args.model_temperature} "
          f"max_tokens={args.model_max_tokens} enforce_eager={args.enforce_eager}")
    print("engine start (s): " + ", ".join(f"{backend} {seconds:.1f}" for backend, seconds in starts.items()))
    header = f"{'method':<17}" + "".join(f" {backend + ' samples/s':>17} {'failed':>6}"
                                         for backend in args.backend_list)
    header += "".join(f" {other + '/' + base:>10}" for other in others)
    print(header)
    print("-" * len(header))
    totals = {backend: [0, 0.0] for backend in args.backend_list}
    for name in args.method_list:
        line = f"{name:<17}"
        for backend in args.backend_list:
            run = by_key[(backend, name)]
            totals[backend][0] += run.num_samples
            totals[backend][1] += run.wall_s
            line += f" {run.samples_per_s:>17.3f} {run.failed:>6}"
        for other in others:
            line += f" {by_key[(other, name)].samples_per_s / by_key[(base, name)].samples_per_s:>9.2f}x"
        print(line)
    line = f"{'all methods':<17}"
    for backend in args.backend_list:
        failed = sum(run.failed for run in runs if run.backend == backend)
        line += f" {totals[backend][0] / totals[backend][1]:>17.3f} {failed:>6}"
    for other in others:
        line += f" {(totals[other][0] / totals[other][1]) / (totals[base][0] / totals[base][1]):>9.2f}x"
    print(line)


async def bench(args: argparse.Namespace) -> list[MethodRun]:
    samples = load_samples(args.test_dataset_name, data_path=args.data_path or None, split=args.split,
                           max_samples=args.max_samples)
    if not samples:
        raise DataError(f"--data_path {args.data_path}: no samples")
    starts, runs = {}, []
    # One backend at a time: both would compete for the same cores (and memory) otherwise.
    for backend in args.backend_list:
        starts[backend], backend_runs = await bench_backend(args, backend, samples)
        runs.extend(backend_runs)
    print_report(args, starts, runs)
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(
            {"engine_start_s": starts, "runs": [dataclasses.asdict(run) | {"samples_per_s": run.samples_per_s}
                                                for run in runs]}, indent=2), encoding="utf-8")
    return runs


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        args = parse_args(argv)
        asyncio.run(bench(args))
    except (ConfigError, DataError, EngineError, UnknownMethodError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
