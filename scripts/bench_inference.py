"""Does the engine batch? Run a method on N samples three ways in one process and compare throughput.

(a) every sample's `solve` concurrently through the engine, as the inference driver runs them;
(b) the same method one sample and one LLM call at a time;
(c) the ceiling: the requests recorded in (a) as one flat batch (hf: one direct `model.generate`;
    other backends: all fired at once through `chat_many`).

Greedy decoding with a fixed max token count by default, so the three generate comparable tokens.

    python scripts/bench_inference.py --method_name cot --num_samples 32 --model_max_tokens 64
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.errors import DataError
from data.registry import get_dataset_spec, load_samples
from data.schema import Sample
from engine.args import EngineArgs, add_engine_args, build_engine
from engine.base import ChatResult, Engine, EngineError, Message, SamplingParams
from methods import ConfigError, Method, UnknownMethodError, get_method_class


@dataclasses.dataclass
class Run:
    """One way of running the workload, and what it produced."""

    label: str
    num_samples: int
    num_calls: int
    completion_tokens: int
    wall_s: float

    @property
    def samples_per_s(self) -> float:
        return self.num_samples / self.wall_s

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s


class OneCallAtATime(Engine):
    """Wraps an engine so its calls run strictly one after another (parallel agents included)."""

    def __init__(self, inner: Engine):
        super().__init__(inner.model_name, inner.defaults)
        self.backend_name = inner.backend_name
        self.inner = inner
        self._lock = asyncio.Lock()

    async def _chat(self, messages: list[Message], params: SamplingParams) -> ChatResult:
        async with self._lock:
            return await self.inner._chat(messages, params)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method_name", default="cot", help="method to run (see methods/__init__.py)")
    parser.add_argument("--method_config_name", default="config_main", help="methods/<name>/configs/<this>.yaml")
    parser.add_argument("--test_dataset_name", default="GSM8K", help="dataset name (see data/registry.py)")
    parser.add_argument("--data_path", default="data/samples/gsm8k.jsonl",
                        help="local file in the dataset's schema; empty string: the hub split")
    parser.add_argument("--split", default=None, help="dataset split (default: the dataset's test split)")
    parser.add_argument("--num_samples", type=int, default=32,
                        help="samples per run; a smaller file is repeated under fresh ids to reach it")
    parser.add_argument("--num_sequential_samples", type=int, default=None,
                        help="samples for the one-at-a-time run (b), to shorten it; rates are per second, "
                             "so they stay comparable (default: --num_samples)")
    add_engine_args(parser)
    # Greedy and a short fixed budget: (a), (b) and (c) then decode the same tokens.
    parser.set_defaults(model_temperature=0.0, model_max_tokens=64)
    return parser.parse_args(argv)


def bench_samples(args: argparse.Namespace) -> list[Sample]:
    """`--num_samples` samples; a sample file smaller than that is cycled under fresh ids."""
    if args.num_samples < 1:
        raise DataError(f"--num_samples must be >= 1, got {args.num_samples}")
    pool = load_samples(args.test_dataset_name, data_path=args.data_path or None, split=args.split,
                        max_samples=args.num_samples)
    if not pool:
        raise DataError(f"--data_path {args.data_path}: no samples")
    samples = []
    for index in range(args.num_samples):
        sample = pool[index % len(pool)]
        copy = index // len(pool)
        samples.append(dataclasses.replace(sample, id=f"{sample.id}#{copy}") if copy else sample)
    return samples


async def run_concurrent(method: Method, samples: list[Sample], max_concurrency: int) -> tuple[Run, list]:
    """(a): what the inference driver does."""
    engine = method.llm
    calls, tokens = engine.total.num_llm_calls, engine.total.completion_tokens
    semaphore = asyncio.Semaphore(max_concurrency)

    async def solve(sample: Sample):
        async with semaphore:
            return await method.solve(sample)

    start = time.perf_counter()
    solutions = await asyncio.gather(*(solve(s) for s in samples))
    wall = time.perf_counter() - start
    run = Run("(a) concurrent through the engine", len(samples), engine.total.num_llm_calls - calls,
              engine.total.completion_tokens - tokens, wall)
    return run, solutions


async def run_sequential(method: Method, samples: list[Sample]) -> Run:
    """(b): one sample, one call at a time."""
    serial = OneCallAtATime(method.llm)
    method = type(method)(serial, method.config, task_type=method.task_type, seed=method.seed)
    start = time.perf_counter()
    for sample in samples:
        await method.solve(sample)
    wall = time.perf_counter() - start
    return Run("(b) one call at a time", len(samples), serial.total.num_llm_calls,
               serial.total.completion_tokens, wall)


async def run_flat_batch(engine: Engine, conversations: list[list[Message]], num_samples: int) -> Run:
    """(c): the recorded requests as one batch: the most the backend can do with them."""
    label = "(c) one flat batch (ceiling)"
    from engine.hf_backend import HFEngine

    if isinstance(engine, HFEngine):
        start = time.perf_counter()
        tokens = await asyncio.to_thread(flat_generate, engine, conversations)
        return Run(label, num_samples, len(conversations), tokens, time.perf_counter() - start)
    start = time.perf_counter()
    results = await engine.chat_many(conversations)
    return Run(label, num_samples, len(results), sum(r.completion_tokens for r in results),
               time.perf_counter() - start)


def flat_generate(engine, conversations: list[list[Message]]) -> int:
    """One direct `model.generate` on every prompt; returns completion tokens (to EOS, padding excluded)."""
    import torch

    tokenizer, model, params = engine.tokenizer, engine.model, engine.defaults
    prompts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in conversations]
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(engine.device)
    sampling = ({"do_sample": False, "temperature": None, "top_p": None, "top_k": None} if params.greedy else
                {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": None})
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos, tokenizer.eos_token_id])
    with torch.inference_mode():
        output = model.generate(**encoded, max_new_tokens=params.max_tokens, pad_token_id=tokenizer.pad_token_id,
                                eos_token_id=list(eos_ids), **sampling)
    total = 0
    for row in output[:, encoded["input_ids"].shape[1]:].tolist():
        total += next((i + 1 for i, token in enumerate(row) if token in eos_ids), len(row))
    return total


async def bench(args: argparse.Namespace) -> list[Run]:
    method_cls = get_method_class(args.method_name)
    config = method_cls.load_config(args.method_config_name)
    task_type = get_dataset_spec(args.test_dataset_name).task_type
    samples = bench_samples(args)
    engine_args = EngineArgs.from_namespace(args)
    async with build_engine(engine_args) as engine:
        method = method_cls(engine, config, task_type=task_type, seed=args.seed)
        # Warm-up outside the clocks: first-call allocations, lazy kernels, connection setup. On a GPU the
        # caching allocator grows on the first batch of a new size (thousands of cudaMallocs for the
        # growing KV cache), so the warm-up there is a full-size batch, or (a) would pay it alone.
        warmup_rows = min(len(samples), 256) if _on_gpu(engine) else 1
        warmup_tokens = engine.defaults.max_tokens if warmup_rows > 1 else 4
        await engine.chat_many([[{"role": "user", "content": samples[0].query}]] * warmup_rows,
                               max_tokens=warmup_tokens)
        batches_before = len(getattr(engine, "batch_sizes", []))
        concurrent, solutions = await run_concurrent(method, samples, args.max_concurrency)
        batch_sizes = getattr(engine, "batch_sizes", [])[batches_before:]
        conversations = [turn.messages for solution in solutions for turn in solution.trajectory]
        sequential = await run_sequential(method, samples[:args.num_sequential_samples or len(samples)])
        flat = await run_flat_batch(engine, conversations, len(samples))
    runs = [concurrent, sequential, flat]
    print_report(args, engine_args, runs, batch_sizes)
    return runs


def _on_gpu(engine: Engine) -> bool:
    device = getattr(engine, "device", None)
    return getattr(device, "type", None) == "cuda"


def print_report(args: argparse.Namespace, engine_args: EngineArgs, runs: list[Run], batch_sizes: list[int]) -> None:
    concurrent, sequential, flat = runs
    print(f"\nmethod={args.method_name} dataset={args.test_dataset_name} backend={engine_args.backend} "
          f"model={engine_args.model_name or 'default (SmolLM2-135M-Instruct)'} "
          f"temperature={engine_args.model_temperature} max_tokens={engine_args.model_max_tokens}")
    header = f"{'run':<34} {'samples':>7} {'calls':>6} {'compl_tok':>9} {'wall_s':>8} {'samples/s':>9} {'tok/s':>8}"
    print(header)
    print("-" * len(header))
    for run in runs:
        print(f"{run.label:<34} {run.num_samples:>7} {run.num_calls:>6} {run.completion_tokens:>9} "
              f"{run.wall_s:>8.2f} {run.samples_per_s:>9.3f} {run.tokens_per_s:>8.1f}")
    if batch_sizes:
        print(f"hf batches in (a): {len(batch_sizes)}, rows per batch: mean "
              f"{sum(batch_sizes) / len(batch_sizes):.1f}, max {max(batch_sizes)}")
    print(f"a/b: {concurrent.samples_per_s / sequential.samples_per_s:.2f}x samples/s, "
          f"{concurrent.tokens_per_s / sequential.tokens_per_s:.2f}x tokens/s")
    print(f"a/c: {concurrent.samples_per_s / flat.samples_per_s:.2f} samples/s, "
          f"{concurrent.tokens_per_s / flat.tokens_per_s:.2f} tokens/s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        asyncio.run(bench(args))
    except (ConfigError, DataError, EngineError, UnknownMethodError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
