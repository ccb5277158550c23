"""DyLAN logic on a scripted backend (consensus, listwise pruning, importance scores) and a tiny-model smoke run."""
from __future__ import annotations

import re

import pytest

from data.schema import Sample
from engine.scripted_backend import ScriptedEngine
from labeling.solutions import non_solution_roles
from methods.base import ConfigError
from methods.dylan.dylan import DyLAN, DyLANConfig, parse_ranking, parse_scores, strip_scores
from methods.dylan.prompts import ROLE_SYSTEM_PROMPTS

SAMPLE = Sample(id="q1", query="What is 2 + 3?", gt="5", source="test")
ROLES = ["MathSolver", "Mathematician", "Programmer", "Assistant"]


def agent_of(messages) -> int:
    """Which agent a call belongs to, from its system prompt (each test agent has its own role)."""
    return ROLES.index(next(r for r, p in ROLE_SYSTEM_PROMPTS.items() if p == messages[0]["content"]))


def shown_agents(prompt: str) -> list[int]:
    """The agents whose solutions a prompt shows, in display order (their texts say "I am agent k")."""
    return [int(k) for k in re.findall(r"I am agent (\d)", prompt)]


def round_of(messages) -> int:
    """Round 0 prompts show no solutions; a later round's prompt shows solutions of the round before."""
    prompt = messages[-1]["content"]
    return 0 if "Solution 1:" not in prompt else int(re.search(r"round (\d)", prompt).group(1)) + 1


def make_method(responder, **config) -> tuple[DyLAN, ScriptedEngine]:
    engine = ScriptedEngine(responder)
    values = dict(num_agents=4, num_rounds=3, activation="listwise", roles=ROLES, random_seed=0)
    values.update(config)
    return DyLAN(engine, DyLANConfig(**values), task_type="math", seed=0), engine


def agent_text(agent: int, round_index: int, answer: str, scores: list[int] | None = None) -> str:
    text = f"I am agent {agent} in round {round_index}. The result is \\boxed{{{answer}}}."
    if scores is not None:
        text += f"\nScores: [{', '.join(map(str, scores))}]"
    return text


async def test_consensus_stops_early_and_answers_it():
    def responder(messages, params):
        agent, rnd = agent_of(messages), round_of(messages)
        if rnd == 0:
            return agent_text(agent, 0, str(agent + 1))  # four different answers: no consensus
        count = len(shown_agents(messages[-1]["content"]))
        # three of four agree in round 1: 3 > 2/3 * 4
        return agent_text(agent, 1, "5" if agent < 3 else "6", [3] * count)

    method, engine = make_method(responder)
    solution = await method.solve(SAMPLE)
    assert solution.info["early_stop_round"] == 1
    assert solution.info["consensus"] is True
    assert solution.answer == "5"
    assert len(engine.calls) == 8  # rounds 0 and 1 only, no ranker
    assert [t.round for t in solution.trajectory] == [0] * 4 + [1] * 4
    assert "Scores:" not in solution.response and "\\boxed{5}" in solution.response


async def test_two_of_four_is_not_consensus():
    def responder(messages, params):
        agent = agent_of(messages)
        count = len(shown_agents(messages[-1]["content"]))
        return agent_text(agent, round_of(messages), "5" if agent < 2 else str(agent), [3] * count or None)

    method, engine = make_method(responder, activation="none")
    solution = await method.solve(SAMPLE)
    assert solution.info["early_stop_round"] is None
    assert len(engine.calls) == 12  # 4 agents x 3 rounds, nobody pruned with activation none
    assert solution.answer == "5"  # the majority of the last round


async def test_listwise_ranking_prunes_to_two_and_importance_flows_backwards():
    def responder(messages, params):
        prompt = messages[-1]["content"]
        if messages[0]["role"] == "user":  # the ranker has no system prompt
            shown = shown_agents(prompt)
            return f"Agent 2 and agent 0 are best.\nBest: [{shown.index(2) + 1}, {shown.index(0) + 1}]"
        agent, rnd = agent_of(messages), round_of(messages)
        shown = shown_agents(prompt)
        if rnd == 0:
            return agent_text(agent, 0, str(10 + agent))
        if rnd == 1:  # everyone rates agent 1's round-0 solution 5, the others 1
            return agent_text(agent, 1, str(20 + agent), [5 if a == 1 else 1 for a in shown])
        return agent_text(agent, 2, str(30 + agent), [4 if a == 2 else 1 for a in shown])

    method, engine = make_method(responder)
    solution = await method.solve(SAMPLE)
    turns = solution.trajectory
    ranker = [t for t in turns if t.role == "ranker"]
    assert len(ranker) == 1 and ranker[0].round == 2 and ranker[0].agent == 4
    assert ranker[0].extra["kept_agents"] == [2, 0] and ranker[0].extra["ranking_parsed"] is True
    last = [t for t in turns if t.round == 2 and t.role != "ranker"]
    assert [t.agent for t in last] == [2, 0]
    assert sorted(shown_agents(last[0].messages[-1]["content"])) == [0, 2]  # only the kept solutions shown
    assert solution.info["active_agents"] == [[0, 1, 2, 3], [0, 1, 2, 3], [2, 0]]
    assert len(engine.calls) == 4 + 4 + 1 + 2
    # No consensus among the last two: majority vote, tie to the first (the best-ranked agent 2).
    assert solution.answer == "32"
    # Round 2: only agent 2 gave the final answer, so it gets 1 and agent 0 nothing (DyLAN credits only the
    # agents that match the final answer). Agent 2 gives agent 2's round-1 solution 4/5 of its weight
    # -> round 1: agent 2 0.8, agent 0 0.2, agents 1, 3 nothing. Round-1 agents give agent 1's round-0
    # solution 5/8 -> round 0: agent 1 0.625, the others 0.125. Summed per agent:
    assert solution.info["importance_scores"] == pytest.approx([0.325, 0.625, 1.925, 0.125])
    by_node = {(t.round, t.agent): t.extra["importance"] for t in turns if t.role != "ranker"}
    assert by_node[(2, 2)] == 1.0 and by_node[(2, 0)] == 0.0
    assert by_node[(1, 2)] == pytest.approx(0.8) and by_node[(1, 3)] == 0.0
    assert by_node[(0, 1)] == pytest.approx(0.625)


async def test_importance_goes_only_to_last_round_agents_matching_the_final_answer():
    def responder(messages, params):
        agent, rnd = agent_of(messages), round_of(messages)
        count = len(shown_agents(messages[-1]["content"]))
        if rnd == 0:
            return agent_text(agent, 0, str(agent))
        # Last round: agents 0 and 1 say 5, agents 2 and 3 differ; all rate everything equally.
        return agent_text(agent, 1, "5" if agent < 2 else str(7 + agent), [3] * count)

    method, _ = make_method(responder, num_rounds=2, activation="none")
    solution = await method.solve(SAMPLE)
    assert solution.answer == "5" and solution.info["consensus"] is False
    last = {t.agent: t.extra["importance"] for t in solution.trajectory if t.round == 1}
    assert last == {0: 0.5, 1: 0.5, 2: 0.0, 3: 0.0}  # not 1/4 each: non-matching agents get nothing
    # Round 0 gets what agents 0 and 1 pass back through their equal ratings: 1/4 each.
    assert solution.info["importance_scores"] == pytest.approx([0.75, 0.75, 0.25, 0.25])


async def test_listwise_ranker_needs_more_than_three_active_agents():
    three = ROLES[:3]

    def responder(messages, params):
        if messages[0]["role"] == "user":
            return "Best: [1, 2]"
        agent, rnd = agent_of(messages), round_of(messages)
        count = len(shown_agents(messages[-1]["content"]))
        return agent_text(agent, rnd, str(10 * rnd + agent), [3] * count or None)

    method, engine = make_method(responder, num_agents=3, roles=three)
    solution = await method.solve(SAMPLE)
    assert not [t for t in solution.trajectory if t.role == "ranker"]
    assert len(engine.calls) == 3 * 3 and solution.info["rankings"] == []
    assert solution.info["active_agents"] == [[0, 1, 2]] * 3


async def test_agent_turns_have_the_fixed_role_and_keep_the_persona():
    def responder(messages, params):
        count = len(shown_agents(messages[-1]["content"]))
        return agent_text(agent_of(messages), round_of(messages), "5", [3] * count or None)

    method, _ = make_method(responder)
    solution = await method.solve(SAMPLE)
    assert {t.role for t in solution.trajectory} == {"debater"}
    assert [t.to_dict()["persona"] for t in solution.trajectory] == ROLES
    assert non_solution_roles("dylan").isdisjoint({"debater"})  # label.py keeps them as solutions


SHORT = Sample(id="s1", query="What did the committee decide about the budget vote?",
               gt="It was delayed until March", source="test")
# Agent 0 is the outlier; agents 1-3 give paraphrases of one answer (token F1 >= 0.5 with each other).
SHORT_ANSWERS = ["The marketing team wants a new logo", "The budget vote was delayed until March",
                 "They delayed the budget vote until March", "Budget vote delayed until March"]


async def test_short_answer_paraphrases_reach_consensus_by_similarity():
    def responder(messages, params):
        agent = agent_of(messages)
        count = len(shown_agents(messages[-1]["content"]))
        text = f"I am agent {agent} in round {round_of(messages)}.\nAnswer: {SHORT_ANSWERS[agent]}"
        return text + (f"\nScores: [{', '.join(['3'] * count)}]" if count else "")

    engine = ScriptedEngine(responder)
    method = DyLAN(engine, DyLANConfig(num_agents=4, num_rounds=3, roles=ROLES), task_type="short_answer")
    solution = await method.solve(SHORT)
    assert solution.info["early_stop_round"] == 0 and solution.info["consensus"] is True
    assert len(engine.calls) == 4
    assert solution.answer in SHORT_ANSWERS[1:] and solution.info["vote_rule"] == "medoid"
    assert solution.response.endswith(solution.answer)
    importance = solution.info["importance_scores"]
    assert importance[0] == 0.0 and importance[1:] == pytest.approx([1 / 3] * 3)


async def test_unparseable_scores_and_ranking_fall_back_and_are_recorded():
    def responder(messages, params):
        if messages[0]["role"] == "user":
            return "They all look fine to me."
        agent, rnd = agent_of(messages), round_of(messages)
        if rnd == 1:  # agents 1 and 3 agree; no ratings given
            return agent_text(agent, 1, "9" if agent in (1, 3) else str(agent))
        return agent_text(agent, rnd, str(agent + 40 * rnd))

    method, _ = make_method(responder)
    solution = await method.solve(SAMPLE)
    ranker = next(t for t in solution.trajectory if t.role == "ranker")
    assert ranker.extra["ranking_parsed"] is False
    assert ranker.extra["kept_agents"] == [1, 3]  # fallback: the most-voted answer's agents
    assert solution.info["rankings"] == [{"round": 2, "kept_agents": [1, 3], "parsed": False}]
    round1 = [t for t in solution.trajectory if t.round == 1]
    assert all(t.extra["scores_parsed"] is False and t.extra["scores"] == [3, 3, 3, 3] for t in round1)
    assert solution.info["unparsed_scores"] == 4 + 2
    assert sum(solution.info["importance_scores"]) == pytest.approx(3.0)  # one unit per round run


async def test_seeds_order_and_temperature_are_deterministic():
    def responder(messages, params):
        count = len(shown_agents(messages[-1]["content"]))
        return agent_text(agent_of(messages), round_of(messages), str(agent_of(messages)), [2] * count or None)

    first, engine1 = make_method(responder, activation="none", num_rounds=2)
    second, _ = make_method(responder, activation="none", num_rounds=2)
    one, two = await first.solve(SAMPLE), await second.solve(SAMPLE)
    assert [t.messages for t in one.trajectory] == [t.messages for t in two.trajectory]
    seeds = [params.seed for _, params in engine1.calls]
    assert len(set(seeds)) == len(seeds)  # same-role agents must not share a sampling seed
    other, _ = make_method(responder, activation="none", num_rounds=2, random_seed=1)
    orders = {tuple(t.extra["shown_agents"]) for t in (await other.solve(SAMPLE)).trajectory if t.round == 1}
    first_orders = {tuple(t.extra["shown_agents"]) for t in one.trajectory if t.round == 1}
    assert orders != first_orders  # random_seed changes the display order


def test_parsers():
    assert parse_scores("text\nScores: [1, 5, 3]", 3) == [1, 5, 3]
    assert parse_scores("[[4, 2]]", 2) == [4, 2]
    assert parse_scores("Scores: [1, 9]", 2) is None  # out of range
    assert parse_scores("Scores: [1, 2, 3]", 2) is None  # wrong count
    assert parse_ranking("I pick [3, 1]", 4, 2) == [2, 0]
    assert parse_ranking("Best: [3, 3, 9, 2]", 4, 2) == [2, 1]
    assert parse_ranking("Best: [7]", 4, 2) is None
    assert strip_scores("\\boxed{4}\nScores: [1, 2]") == "\\boxed{4}"


@pytest.mark.parametrize("config_name", ["config_main", "config_math", "config_mmlu"])
def test_repo_configs_load(config_name):
    config = DyLAN.load_config(config_name)
    assert isinstance(config, DyLANConfig) and len(config.roles) == config.num_agents


@pytest.mark.parametrize("values, message", [
    ({"num_agents": 4, "bogus": 1}, "unknown key"),
    ({"num_agents": 3}, "roles lists 4 roles but num_agents is 3"),
    ({"roles": ["Assistant", "Assistant", "Assistant", "Wizard"]}, "unknown role(s) Wizard"),
    ({"activation": "pairwise"}, "activation must be one of"),
    ({"num_rounds": "3"}, "num_rounds must be int"),
])
def test_bad_config_is_one_line_error(values, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        DyLANConfig.from_dict(values, source="dylan.yaml")
    assert "\n" not in str(err.value)
