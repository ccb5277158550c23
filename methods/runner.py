"""The inference driver: run one method over many samples concurrently, one crash-safe record per sample."""
from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from data.schema import Sample
from engine.base import Engine, EngineError, track_usage
from methods.base import Method, Solution, Turn, track_turns

logger = logging.getLogger(__name__)


def model_label(model_name: str) -> str:
    """How a model is named in result paths: a local directory by its folder name, a hub id as is."""
    path = Path(model_name).expanduser()
    if path.exists():
        return path.resolve().name
    return model_name.strip("/")


def default_output_path(result_dir: str | Path, dataset_name: str, model_name: str, method_name: str) -> Path:
    return Path(result_dir) / dataset_name / model_label(model_name) / f"{method_name}_infer.jsonl"


@dataclass
class RunSummary:
    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    failed_ids: list[str] = field(default_factory=list)


def build_record(sample: Sample, method: Method, model: str, solution: Solution | None,
                 usage: dict[str, int], latency_s: float, error: str | None = None,
                 partial_turns: list[Turn] | None = None) -> dict[str, Any]:
    """One inference record in design.md's format (sample fields first, `error` only on failure).

    A failed sample has no solution; its record keeps `partial_turns`, the calls that got a result.
    """
    turns = solution.trajectory if solution else (partial_turns or [])
    record = sample.to_dict()
    record.update(
        method=method.name,
        model=model,
        config=method.config.to_dict(),
        response=solution.response if solution else None,
        answer=solution.answer if solution else None,
        trajectory=[turn.to_dict() for turn in turns],
        # Answers cut off by --model_max_tokens: the eval CLIs and report show these counts.
        num_truncated_turns=sum(turn.finish_reason == "length" for turn in turns),
        token_stats={model: usage},
        latency_s=round(latency_s, 3),
    )
    if solution and solution.info:
        record["info"] = solution.info
    if error is not None:
        record["error"] = error
    return record


async def run_method(method: Method, engine: Engine, samples: Iterable[Sample], store, *,
                     max_concurrency: int = 256, model: str | None = None,
                     progress: bool = True) -> RunSummary:
    """Solve every sample with up to `max_concurrency` in flight, appending each record as it finishes.

    `store` is a data.records.RecordStore (anything with `append(dict)`). A sample whose solve raises
    (e.g. engine.base.RequestError: the server refused one request) is written with `error` and the
    turns it completed, so the run goes on; an EngineError (the backend itself is unusable) stops the run.
    """
    todo = list(samples)
    summary = RunSummary(total=len(todo))
    model = model or model_label(engine.model_name)
    queue: asyncio.Queue[Sample] = asyncio.Queue()
    for sample in todo:
        queue.put_nowait(sample)
    bar = tqdm(total=len(todo), desc=f"{method.name}", unit="sample", disable=not progress, dynamic_ncols=True)
    start = time.perf_counter()
    start_calls, start_tokens = engine.total.num_llm_calls, engine.total.completion_tokens

    def refresh() -> None:
        elapsed = max(time.perf_counter() - start, 1e-6)
        bar.set_postfix(calls_s=f"{(engine.total.num_llm_calls - start_calls) / elapsed:.1f}",
                        tok_s=f"{(engine.total.completion_tokens - start_tokens) / elapsed:.0f}",
                        failed=summary.failed, refresh=False)

    async def worker() -> None:
        while True:
            try:
                sample = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            usage = track_usage()
            turn_log = track_turns()
            t0 = time.perf_counter()
            solution, error = None, None
            try:
                solution = await method.solve(sample)
            except EngineError:
                raise
            except Exception as exc:  # a failed sample is recorded and retried later, not fatal
                error = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line in the record
                logger.debug("sample %s failed:\n%s", sample.id, traceback.format_exc())
            record = build_record(sample, method, model, solution, usage.as_dict(),
                                  time.perf_counter() - t0, error,
                                  partial_turns=turn_log.completed_turns() if error is not None else None)
            store.append(record)
            if error is None:
                summary.done += 1
            else:
                summary.failed += 1
                summary.failed_ids.append(sample.id)
            bar.update(1)
            refresh()

    workers = [asyncio.create_task(worker()) for _ in range(max(1, min(max_concurrency, len(todo))))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        bar.close()
        summary.elapsed_s = time.perf_counter() - start
    return summary
