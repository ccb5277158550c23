"""The driver: concurrency, per-sample token accounting, failed samples recorded without stopping the run."""
from __future__ import annotations

import asyncio

import pytest

from data.schema import Sample
from engine.base import EngineError
from engine.scripted_backend import ScriptedEngine
from methods.base import Method, Solution
from methods.runner import default_output_path, model_label, run_method


class ListStore:
    def __init__(self):
        self.records = []

    def append(self, record):
        self.records.append(record)


class EchoMethod(Method):
    """Makes `int(sample.gt)` calls; fails on samples whose query says so."""

    name = "echo"

    async def solve(self, sample):
        if "fail" in sample.query:
            raise ValueError("could not parse")
        traj = self.trajectory()
        turns = await traj.chat_many([[{"role": "user", "content": sample.query}]] * int(sample.gt))
        return Solution(response=turns[-1].text, answer=turns[-1].answer, trajectory=traj.turns)


def samples(n):
    return [Sample(id=str(i), query=f"question {i} words", gt=str(i % 3 + 1), source="t") for i in range(n)]


async def test_token_stats_are_per_sample_under_concurrency():
    engine = ScriptedEngine(lambda m, p: "the answer is \\boxed{5}")
    store = ListStore()
    summary = await run_method(EchoMethod(engine, task_type="math"), engine, samples(30), store,
                               max_concurrency=8, progress=False)
    assert summary.done == 30 and summary.failed == 0
    by_id = {r["id"]: r for r in store.records}
    for sample in samples(30):
        record = by_id[sample.id]
        stats = record["token_stats"]["scripted"]
        assert stats["num_llm_calls"] == int(sample.gt) == len(record["trajectory"])
        assert stats["completion_tokens"] == sum(t["completion_tokens"] for t in record["trajectory"])
        assert record["answer"] == "5"
    assert engine.total.num_llm_calls == sum(int(s.gt) for s in samples(30))


async def test_concurrency_is_bounded():
    in_flight, peak = 0, 0

    class SlowEngine(ScriptedEngine):
        async def _chat(self, messages, params):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            return await super()._chat(messages, params)

    engine = SlowEngine(lambda m, p: "1")
    one_call = [Sample(id=str(i), query="q", gt="1", source="t") for i in range(20)]
    await run_method(EchoMethod(engine), engine, one_call, ListStore(), max_concurrency=4, progress=False)
    assert peak == 4


async def test_failed_sample_is_recorded_and_run_goes_on():
    engine = ScriptedEngine(lambda m, p: "x")
    data = samples(3) + [Sample(id="bad", query="please fail", gt="1", source="t")]
    store = ListStore()
    summary = await run_method(EchoMethod(engine), engine, data, store, max_concurrency=2, progress=False)
    assert summary.failed == 1 and summary.failed_ids == ["bad"] and summary.done == 3
    bad = next(r for r in store.records if r["id"] == "bad")
    assert bad["error"] == "ValueError: could not parse" and bad["trajectory"] == []
    assert all("error" not in r for r in store.records if r["id"] != "bad")


async def test_engine_error_stops_the_run():
    def broken(messages, params):
        raise EngineError("endpoint gone")

    engine = ScriptedEngine(broken)
    with pytest.raises(EngineError):
        await run_method(EchoMethod(engine), engine, samples(5), ListStore(), progress=False)


def test_output_path_names(tmp_path):
    assert model_label("Qwen/Qwen3-8B") == "Qwen/Qwen3-8B"
    local = tmp_path / "my-model"
    local.mkdir()
    assert model_label(str(local)) == "my-model"
    path = default_output_path("results", "GSM8K", "Qwen/Qwen3-8B", "llm_debate")
    assert str(path) == "results/GSM8K/Qwen/Qwen3-8B/llm_debate_infer.jsonl"
