"""The driver: concurrency, per-sample token accounting, failed samples recorded without stopping the run."""
from __future__ import annotations

import asyncio

import pytest

from data.schema import Sample
from engine.base import ChatResult, EngineError, RequestError, SamplingParams
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
    assert bad["num_truncated_turns"] == 0
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


class TwoRoundMethod(Method):
    """Two agents, two rounds; the scripted engine refuses round-1 calls of agent 1 on samples marked 'long'."""

    name = "two_round"

    async def solve(self, sample):
        traj = self.trajectory()
        for round_index in range(2):
            conversations = [[{"role": "user", "content": f"{sample.query} round {round_index} agent {agent}"}]
                             for agent in range(2)]
            turns = await traj.chat_many(conversations, round=round_index)
        return Solution(response=turns[0].text, answer=turns[0].answer, trajectory=traj.turns)


def refuse_long_round_1_agent_1(messages, params):
    content = messages[-1]["content"]
    if "long" in content and "round 1 agent 1" in content:
        raise RequestError("openai endpoint http://x/v1 failed for model m: HTTP 400: prompt is too long")
    return "the answer is \\boxed{4}"


async def test_request_error_fails_one_sample_and_keeps_its_completed_turns():
    engine = ScriptedEngine(refuse_long_round_1_agent_1)
    data = [Sample(id="ok1", query="short", gt="4", source="t"), Sample(id="bad", query="long", gt="4", source="t"),
            Sample(id="ok2", query="short", gt="4", source="t")]
    store = ListStore()
    summary = await run_method(TwoRoundMethod(engine), engine, data, store, max_concurrency=3, progress=False)
    assert (summary.done, summary.failed, summary.failed_ids) == (2, 1, ["bad"])
    bad = next(r for r in store.records if r["id"] == "bad")
    assert bad["error"] == ("RequestError: openai endpoint http://x/v1 failed for model m: "
                            "HTTP 400: prompt is too long")
    # The turns that got a result, in call order: round 0, then round 1's agent 0 (agent 1 was refused).
    assert [(t["round"], t["agent"]) for t in bad["trajectory"]] == [(0, 0), (0, 1), (1, 0)]
    assert all(t["text"] == "the answer is \\boxed{4}" and t["finish_reason"] == "stop" for t in bad["trajectory"])
    assert bad["token_stats"]["scripted"]["num_llm_calls"] == 3
    assert bad["response"] is None and bad["answer"] is None
    for record in store.records:
        if record["id"] != "bad":
            assert "error" not in record and len(record["trajectory"]) == 4


async def test_turns_record_finish_reason_and_records_count_truncated_turns():
    class CutOffEngine(ScriptedEngine):
        """Cuts a reply to max_tokens words, as a server does, and says so in finish_reason."""

        async def _chat(self, messages, params):
            result = await super()._chat(messages, params)
            words = result.text.split()
            if len(words) > params.max_tokens:
                return ChatResult(texts=[" ".join(words[: params.max_tokens])], prompt_tokens=result.prompt_tokens,
                                  completion_tokens=params.max_tokens, finish_reasons=["length"])
            return result

    engine = CutOffEngine(lambda m, p: "one two three" if "agent 1" in m[-1]["content"] else "one",
                          defaults=SamplingParams(max_tokens=2))
    store = ListStore()
    await run_method(TwoRoundMethod(engine), engine, [Sample(id="s", query="q", gt="1", source="t")], store,
                     progress=False)
    (record,) = store.records
    assert [t["finish_reason"] for t in record["trajectory"]] == ["stop", "length", "stop", "length"]
    assert record["num_truncated_turns"] == 2
