"""cot, self_consistency and llm_debate on a scripted engine (exact outcomes) and on the tiny hf model."""
from __future__ import annotations

import pytest

from data.schema import Sample
from data.task_prompts import task_prompt
from engine.args import EngineArgs
from engine.base import ChatResult, SamplingParams, track_usage
from engine.scripted_backend import ScriptedEngine
from methods import ConfigError, get_method_class

QUESTION = Sample(id="q1", query="Tom has 2 apples and buys 3 more. How many apples does he have?", gt="5",
                  source="test")
TURN_FIELDS = {"agent", "role", "round", "messages", "text", "answer", "prompt_tokens", "completion_tokens",
               "finish_reason"}


class InFlightEngine(ScriptedEngine):
    """Records how many calls were in flight when each call arrived, to prove agents run together."""

    def __init__(self, responder, **kwargs):
        super().__init__(responder, **kwargs)
        self.in_flight = 0
        self.arrivals: list[tuple[list[dict], int]] = []

    async def _chat(self, messages, params: SamplingParams) -> ChatResult:
        self.in_flight += 1
        self.arrivals.append((messages, self.in_flight))
        try:
            return await super()._chat(messages, params)
        finally:
            self.in_flight -= 1


def make(method_name: str, responder, task_type: str = "math", seed: int = 0, engine_cls=ScriptedEngine,
         **config):
    """A method on a scripted engine whose default temperature is 0.7 (so overrides are visible)."""
    cls = get_method_class(method_name)
    engine = engine_cls(responder, defaults=SamplingParams(temperature=0.7, max_tokens=64))
    return cls(engine, cls.Config(**config), task_type=task_type, seed=seed), engine


async def solve_metered(method, sample=QUESTION):
    usage = track_usage()
    solution = await method.solve(sample)
    return solution, usage


def assert_usage_matches(solution, usage):
    turns = solution.trajectory
    assert usage.num_llm_calls == len(turns)
    assert usage.prompt_tokens == sum(t.prompt_tokens for t in turns) > 0
    assert usage.completion_tokens == sum(t.completion_tokens for t in turns) > 0
    for turn in turns:
        assert TURN_FIELDS <= set(turn.to_dict())
        assert turn.finish_reason in ("stop", "length")


# ---------------------------------------------------------------- cot

async def test_cot_extracts_boxed_answer_in_one_solver_turn():
    method, engine = make("cot", lambda m, p: "2 + 3 = 5, so the answer is \\boxed{5}.")
    solution, usage = await solve_metered(method)
    assert solution.answer == "5"
    assert solution.response.endswith("\\boxed{5}.")
    [turn] = solution.trajectory
    assert (turn.agent, turn.role, turn.round, turn.answer) == (0, "solver", 0, "5")
    assert turn.messages == [{"role": "user", "content": task_prompt(QUESTION, "math")}]
    assert engine.calls[0][1].temperature == 0.7  # engine default when the config sets none
    assert_usage_matches(solution, usage)


async def test_cot_system_prompt_and_temperature_come_from_config():
    method, engine = make("cot", lambda m, p: "\\boxed{5}", system_prompt="careful_solver", temperature=0.0)
    solution = await method.solve(QUESTION)
    messages, params = engine.calls[0]
    assert messages[0]["role"] == "system" and "careful problem solver" in messages[0]["content"]
    assert params.temperature == 0.0  # an explicit 0.0 is kept, not replaced by the default
    assert solution.answer == "5"


async def test_cot_multiple_choice_reads_letters_beyond_d():
    sample = Sample(id="mc", query="Which is prime?", gt="E", source="test",
                    choices=["4", "6", "8", "9", "11"])
    method, _ = make("cot", lambda m, p: "Only 11 is prime. The answer is (E)", task_type="multiple_choice")
    solution = await method.solve(sample)
    assert solution.answer == "E"
    assert "(E) 11" in solution.trajectory[0].messages[0]["content"]


def test_cot_unknown_system_prompt_is_a_config_error():
    with pytest.raises(ConfigError, match="system_prompt.*'friendly'"):
        get_method_class("cot").Config(system_prompt="friendly")


# ---------------------------------------------------------------- self_consistency

def by_seed(texts: list[str], base_seed: int = 0):
    """A responder that answers by the call's seed: one scripted text per parallel agent."""
    return lambda messages, params: texts[params.seed - base_seed]


async def test_self_consistency_majority_vote_over_parallel_samples():
    texts = ["\\boxed{3}", "so \\boxed{5}", "\\boxed{5.0}", "\\boxed{3}", "\\boxed{5}"]
    method, engine = make("self_consistency", by_seed(texts), engine_cls=InFlightEngine, parallel_num=5)
    solution, usage = await solve_metered(method)
    assert solution.answer == "5"
    assert solution.response == "so \\boxed{5}"  # the first sample that gave the winning answer
    assert solution.info["vote_counts"] == {"3": 2, "5": 3}
    assert solution.info["answers"] == ["3", "5", "5.0", "3", "5"]
    assert solution.info["answer_source"] == "vote"
    turns = solution.trajectory
    assert [(t.agent, t.role, t.round) for t in turns] == [(i, "solver", 0) for i in range(5)]
    assert len({params.seed for _, params in engine.calls}) == 5  # distinct seeds: no cloned samples
    assert max(depth for _, depth in engine.arrivals) == 5  # all samples were in flight together
    assert_usage_matches(solution, usage)


@pytest.mark.parametrize("answers,expected", [(["7", "3", "3", "7"], "7"), (["3", "7", "7", "3"], "3"),
                                              ([None, "8", "9", None], "8")])
async def test_self_consistency_ties_go_to_the_first_answer_seen(answers, expected):
    texts = [f"\\boxed{{{a}}}" if a else "no idea" for a in answers]
    method, _ = make("self_consistency", by_seed(texts, base_seed=11), seed=11, parallel_num=4)
    solution = await method.solve(QUESTION)
    assert solution.answer == expected


async def test_self_consistency_temperature_override_reaches_every_sample():
    method, engine = make("self_consistency", lambda m, p: "\\boxed{1}", parallel_num=3, temperature=1.1)
    await method.solve(QUESTION)
    assert [params.temperature for _, params in engine.calls] == [1.1, 1.1, 1.1]


async def test_self_consistency_aggregator_turn_decides_the_answer():
    texts = ["I get \\boxed{3}", "I get \\boxed{5}", "I get \\boxed{5}"]

    def responder(messages, params):
        if "### Solution 1" in messages[-1]["content"]:
            return "Solution 1 is right: \\boxed{3}"
        return texts[params.seed]

    method, _ = make("self_consistency", responder, parallel_num=3, use_aggregator=True)
    solution, usage = await solve_metered(method)
    *solvers, aggregator = solution.trajectory
    assert [turn.answer for turn in solvers] == ["3", "5", "5"]
    assert (aggregator.agent, aggregator.role, aggregator.round) == (3, "aggregator", 1)
    prompt = aggregator.messages[-1]["content"]
    assert all(text in prompt for text in texts) and QUESTION.query in prompt
    assert solution.answer == "3" and solution.response == "Solution 1 is right: \\boxed{3}"
    assert solution.info["vote_answer"] == "5" and solution.info["answer_source"] == "aggregator"
    assert_usage_matches(solution, usage)


async def test_self_consistency_keeps_the_vote_when_the_aggregator_gives_no_answer():
    def responder(messages, params):
        return "I cannot decide." if "### Solution 1" in messages[-1]["content"] else "\\boxed{4}"

    method, _ = make("self_consistency", responder, parallel_num=2, use_aggregator=True)
    solution = await method.solve(QUESTION)
    assert len(solution.trajectory) == 3
    assert solution.trajectory[-1].answer is None
    assert solution.answer == "4" and solution.info["answer_source"] == "vote"


SHORT = Sample(id="s1", query="What did the committee decide about the budget vote?",
               gt="It was delayed until March", source="test")
# Three paraphrases of one answer and an outlier, the outlier first (a first-seen tie break picks it).
PARAPHRASES_AFTER_OUTLIER = ["Answer: The marketing team wants a new logo",
                             "Answer: The budget vote was delayed until March",
                             "Answer: They delayed the budget vote until March",
                             "Answer: Budget vote delayed until March"]


async def test_self_consistency_short_answers_take_the_medoid_not_agent_0():
    method, _ = make("self_consistency", by_seed(PARAPHRASES_AFTER_OUTLIER), task_type="short_answer",
                     parallel_num=4, use_aggregator=False)
    solution = await method.solve(SHORT)
    assert solution.info["answer_source"] == "medoid" and solution.info["vote_rule"] == "medoid"
    assert solution.info["vote_index"] in (1, 2, 3)
    assert "budget vote" in solution.answer.lower() and solution.response == PARAPHRASES_AFTER_OUTLIER[
        solution.info["vote_index"]]
    assert len(solution.trajectory) == 4  # aggregator explicitly off


async def test_self_consistency_aggregates_short_answers_by_default_but_not_math():
    def responder(messages, params):
        if "### Solution 1" in messages[-1]["content"]:
            return "Combining them. Answer: the vote moved to March"
        return PARAPHRASES_AFTER_OUTLIER[params.seed]

    method, _ = make("self_consistency", responder, task_type="short_answer", parallel_num=4)
    assert method.config.use_aggregator is None  # the task-aware default
    solution = await method.solve(SHORT)
    assert [t.role for t in solution.trajectory] == ["solver"] * 4 + ["aggregator"]
    assert solution.answer == "the vote moved to March" and solution.info["answer_source"] == "aggregator"
    assert solution.info["vote_index"] in (1, 2, 3)  # the consensus is still recorded beside it

    method, _ = make("self_consistency", lambda m, p: "\\boxed{5}", parallel_num=3)
    solution = await method.solve(QUESTION)
    assert [t.role for t in solution.trajectory] == ["solver"] * 3 and solution.info["answer_source"] == "vote"


async def test_an_aggregator_answer_without_words_keeps_the_consensus():
    def responder(messages, params):
        return "Answer: :" if "### Solution 1" in messages[-1]["content"] else PARAPHRASES_AFTER_OUTLIER[params.seed]

    method, _ = make("self_consistency", responder, task_type="short_answer", parallel_num=4)
    solution = await method.solve(SHORT)
    assert solution.trajectory[-1].role == "aggregator" and solution.trajectory[-1].answer == ":"
    assert solution.info["answer_source"] == "medoid" and "budget vote" in solution.answer.lower()


def test_self_consistency_rejects_zero_samples():
    with pytest.raises(ConfigError, match="parallel_num"):
        get_method_class("self_consistency").Config(parallel_num=0)


# ---------------------------------------------------------------- llm_debate

def debate_responder(script: dict[tuple[int, int], str]):
    """Answers script[(round, agent)]; the round is read from the conversation length, the agent from the seed."""
    def respond(messages, params):
        round_index = (len(messages) - 1) // 2
        return script[(round_index, params.seed)]
    return respond


DEBATE_SCRIPT = {
    (0, 0): "Agent zero thinks \\boxed{5}", (0, 1): "Agent one thinks \\boxed{5}",
    (0, 2): "Agent two thinks \\boxed{7}",
    (1, 0): "After reading the others: \\boxed{7}", (1, 1): "Convinced, \\boxed{7}",
    (1, 2): "Still \\boxed{5}",
}


async def test_debate_runs_agents_by_rounds_and_votes_on_the_last_round():
    method, engine = make("llm_debate", debate_responder(DEBATE_SCRIPT), engine_cls=InFlightEngine,
                          num_agents=3, num_rounds=2)
    solution, usage = await solve_metered(method)
    turns = solution.trajectory
    assert len(turns) == 3 * 2
    assert [(t.round, t.agent, t.role) for t in turns] == [(r, a, "debater") for r in range(2) for a in range(3)]
    assert [t.answer for t in turns] == ["5", "5", "7", "7", "7", "5"]
    # Round 0 would vote 5; the final answer is the vote of the last round.
    assert solution.answer == "7" and solution.response == "After reading the others: \\boxed{7}"
    assert solution.info["round_answers"] == [["5", "5", "7"], ["7", "7", "5"]]
    assert solution.info["vote_counts"] == {"7": 2, "5": 1}
    for round_index in range(2):
        depths = [depth for messages, depth in engine.arrivals if (len(messages) - 1) // 2 == round_index]
        assert max(depths) == 3  # every agent of the round was in flight at once
    assert_usage_matches(solution, usage)


async def test_debate_later_rounds_show_peers_full_responses_and_keep_own_history():
    method, _ = make("llm_debate", debate_responder(DEBATE_SCRIPT), num_agents=3, num_rounds=2)
    solution = await method.solve(QUESTION)
    round0 = solution.trajectory[:3]
    for turn in solution.trajectory[3:]:
        first_prompt, own_previous, update = turn.messages
        assert first_prompt == {"role": "user", "content": task_prompt(QUESTION, "math")}
        assert own_previous == {"role": "assistant", "content": round0[turn.agent].text}
        assert update["role"] == "user"
        for peer in round0:
            assert (peer.text in update["content"]) == (peer.agent != turn.agent)


async def test_debate_third_round_shows_the_second_rounds_responses():
    script = {(r, a): f"round {r} agent {a} says \\boxed{{{r}}}" for r in range(3) for a in range(2)}
    method, _ = make("llm_debate", debate_responder(script), num_agents=2, num_rounds=3)
    solution = await method.solve(QUESTION)
    assert len(solution.trajectory) == 6
    last = solution.trajectory[-1]  # agent 1, round 2
    assert len(last.messages) == 5
    assert script[(1, 0)] in last.messages[-1]["content"]
    assert script[(0, 0)] not in last.messages[-1]["content"]  # only the previous round is shown
    assert solution.answer == "2"


async def test_debate_unparseable_answers_give_none_without_crashing():
    method, _ = make("llm_debate", lambda m, p: "I am not sure about this one.", num_agents=3, num_rounds=2)
    solution = await method.solve(QUESTION)
    assert solution.answer is None
    assert solution.response == "I am not sure about this one."
    assert solution.info["vote_counts"] == {}
    assert all(turn.answer is None for turn in solution.trajectory)


async def test_debate_aggregator_is_a_final_turn_after_the_last_round():
    def responder(messages, params):
        if "Several agents debated" in messages[-1]["content"]:
            return "Weighing them: \\boxed{6}"
        return debate_responder(DEBATE_SCRIPT)(messages, params)

    method, _ = make("llm_debate", responder, num_agents=3, num_rounds=2, use_aggregator=True)
    solution, usage = await solve_metered(method)
    assert len(solution.trajectory) == 3 * 2 + 1
    aggregator = solution.trajectory[-1]
    assert (aggregator.agent, aggregator.role, aggregator.round) == (3, "aggregator", 2)
    for final in solution.trajectory[3:6]:
        assert final.text in aggregator.messages[-1]["content"]
    assert solution.answer == "6" and solution.info["answer_source"] == "aggregator"
    assert solution.info["vote_answer"] == "7"
    assert_usage_matches(solution, usage)


async def test_debate_short_answers_take_the_medoid_or_the_default_aggregator():
    def responder(messages, params):
        if "Several agents debated" in messages[-1]["content"]:
            return "Answer: the budget vote waits until March"
        return PARAPHRASES_AFTER_OUTLIER[params.seed]

    method, _ = make("llm_debate", responder, task_type="short_answer", num_agents=4, num_rounds=2,
                     use_aggregator=False)
    solution = await method.solve(SHORT)
    assert solution.info["answer_source"] == "medoid" and solution.info["vote_index"] in (1, 2, 3)
    assert "budget vote" in solution.answer.lower()

    method, _ = make("llm_debate", responder, task_type="short_answer", num_agents=4, num_rounds=2)
    solution = await method.solve(SHORT)
    assert solution.trajectory[-1].role == "aggregator" and len(solution.trajectory) == 4 * 2 + 1
    assert solution.info["answer_source"] == "aggregator"
    assert solution.answer == "the budget vote waits until March"


async def test_single_agent_debate_reviews_its_own_answer():
    script = {(0, 0): "\\boxed{4}", (1, 0): "On review, \\boxed{5}"}
    method, _ = make("llm_debate", debate_responder(script), num_agents=1, num_rounds=2)
    solution = await method.solve(QUESTION)
    assert [t.answer for t in solution.trajectory] == ["4", "5"]
    assert "Review your previous solution" in solution.trajectory[1].messages[-1]["content"]
    assert solution.answer == "5"


def test_debate_rejects_zero_rounds():
    with pytest.raises(ConfigError, match="num_rounds"):
        get_method_class("llm_debate").Config(num_rounds=0)


# ---------------------------------------------------------------- real engine

async def test_cot_and_debate_run_on_the_tiny_hf_model(tiny_model_path):
    from engine.hf_backend import HFEngine

    engine = HFEngine(tiny_model_path, EngineArgs(model_max_tokens=16))
    await engine.start()
    try:
        cot = get_method_class("cot")(engine, task_type="math")
        solution, usage = await solve_metered(cot)
        assert len(solution.trajectory) == 1 and solution.response == solution.trajectory[0].text
        assert 0 < solution.trajectory[0].completion_tokens <= 16
        assert_usage_matches(solution, usage)

        debate_cls = get_method_class("llm_debate")
        debate = debate_cls(engine, debate_cls.Config(num_agents=2, num_rounds=2), task_type="math")
        solution, usage = await solve_metered(debate)
        turns = solution.trajectory
        assert [(t.round, t.agent) for t in turns] == [(0, 0), (0, 1), (1, 0), (1, 1)]
        assert all(0 < t.completion_tokens <= 16 for t in turns)
        # A turn cut off by max_tokens says so; one that ended sooner stopped by itself.
        assert all(t.completion_tokens == 16 if t.finish_reason == "length" else t.finish_reason == "stop"
                   for t in turns)
        assert turns[2].messages[1] == {"role": "assistant", "content": turns[0].text}  # its own answer
        assert turns[1].text.strip() in turns[2].messages[-1]["content"]  # its peer's answer
        assert turns[2].prompt_tokens > turns[0].prompt_tokens  # the conversation grew
        assert_usage_matches(solution, usage)
    finally:
        await engine.close()
