"""AgentVerse logic on a scripted backend: [Agree] by the critic's own answer, the rolling discussion,
Correctness and recruiting advice, recruiting fallback, per-turn round counter."""
from __future__ import annotations

import re

import pytest

from data.schema import Sample
from engine.scripted_backend import ScriptedEngine
from methods.agentverse.agentverse import (
    CRITIC_HISTORY,
    SOLVER_HISTORY,
    AgentVerse,
    AgentVerseConfig,
    agrees,
    parse_evaluation,
    parse_experts,
    recruit_with_fallback,
)
from methods.agentverse.prompts import GENERIC_EXPERTS
from methods.base import ConfigError

SAMPLE = Sample(id="q1", query="What is 2 + 3?", gt="5", source="test")
EXPERTS = "1. an algebra expert\n2. a careful arithmetic checker\n3. a logician"


def kind(messages) -> str:
    """Which step a call is, from its prompt."""
    prompt = messages[-1]["content"]
    if prompt.startswith("You lead a group of experts"):
        return "recruiter"
    if "Judge whether the solution is correct" in prompt:
        return "evaluator"
    if prompt.startswith("You are in a discussion group"):
        return "critic"
    return "solver"


def latest_solution(prompt: str) -> str:
    """The solution a critic is asked to review (its prompt also quotes earlier discussion)."""
    return re.search(r'The latest solution proposed by the solver:\n"""\n(.*?)\n"""', prompt, re.S).group(1)


REVISING = "The latest messages of your group's discussion"  # what a solver prompt with history says


def scripted(recruiter="1. an algebra expert\n2. a careful arithmetic checker",
             solver=lambda prompt: "2 + 3 = 5, so \\boxed{5}",
             critic=lambda prompt: "Correct. [Agree]",
             evaluator=lambda prompt: "Correctness: 1\nResponse: none needed"):
    def responder(messages, params):
        step, prompt = kind(messages), messages[-1]["content"]
        if step == "recruiter":
            return recruiter
        return {"solver": solver, "critic": critic, "evaluator": evaluator}[step](prompt)
    return responder


def make_method(responder, **config) -> tuple[AgentVerse, ScriptedEngine]:
    engine = ScriptedEngine(responder)
    return AgentVerse(engine, AgentVerseConfig(**config), task_type="math"), engine


async def test_agree_and_correctness_stop_after_one_turn():
    method, _ = make_method(scripted())
    solution = await method.solve(SAMPLE)
    turns = solution.trajectory
    assert [t.role for t in turns] == ["role_assigner", "solver", "critic", "evaluator"]
    assert [t.agent for t in turns] == [2, 0, 1, 3]
    assert all(t.round == 0 for t in turns)
    assert turns[1].messages[0]["content"] == "You are an algebra expert."
    assert turns[2].messages[0]["content"] == "You are a careful arithmetic checker."
    assert turns[2].extra["agree"] is True and turns[3].extra["correctness"] == 1
    assert solution.answer == "5" and solution.response == turns[1].text
    assert solution.info["stopped_on"] == "correctness" and solution.info["turns_run"] == 1
    assert solution.info["turns"][0]["critic_rounds"] == 1 and solution.info["recruit_fallbacks"] == 0


async def test_solver_revises_until_critics_agree():
    responder = scripted(
        recruiter=EXPERTS,
        solver=lambda prompt: "\\boxed{5}" if REVISING in prompt else "\\boxed{6}",
        critic=lambda prompt: ("[Agree]" if "boxed{5}" in latest_solution(prompt)
                               else "You added wrong: 2 + 3 is not 6."))
    method, _ = make_method(responder, cnt_agents=3)
    solution = await method.solve(SAMPLE)
    roles = [t.role for t in solution.trajectory]
    assert roles == ["role_assigner", "solver", "critic", "critic", "solver", "critic", "critic", "evaluator"]
    revision = solution.trajectory[4]
    assert "2 + 3 is not 6" in revision.messages[-1]["content"] and revision.extra["critic_round"] == 1
    assert solution.answer == "5"
    assert solution.info["turns"][0]["critic_rounds"] == 2 and solution.info["turns"][0]["critics_agreed"]


async def test_only_disagreeing_critiques_reach_the_solver():
    def responder(messages, params):
        step, prompt = kind(messages), messages[-1]["content"]
        if step == "recruiter":
            return EXPERTS
        if step == "solver":
            return "\\boxed{5}" if REVISING in prompt else "\\boxed{6}"
        if step == "critic":  # only the logician objects, and only to the first solution
            objects = "logician" in messages[0]["content"] and "boxed{6}" in latest_solution(prompt)
            return "Wrong sum." if objects else "Fine. [Agree]"
        return "Correctness: 1"

    method, _ = make_method(responder, cnt_agents=3)
    solution = await method.solve(SAMPLE)
    revision = [t for t in solution.trajectory if t.role == "solver"][1]
    assert '[Reviewer (a logician)]:\n"""\nWrong sum.' in revision.messages[-1]["content"]
    assert "arithmetic checker" not in revision.messages[-1]["content"]
    assert [t.extra["agree"] for t in solution.trajectory if t.role == "critic"] == [True, False, True, True]


async def test_round_counter_resets_every_turn_and_advice_starts_the_next():
    responder = scripted(critic=lambda prompt: "Not convinced.",
                         evaluator=lambda prompt: "Correctness: 0\nResponse: recheck the addition (ADVICE)")
    method, engine = make_method(responder, max_turn=2, max_criticizing_rounds=2)
    solution = await method.solve(SAMPLE)
    for turn_index in (0, 1):
        critics = [t for t in solution.trajectory if t.round == turn_index and t.role == "critic"]
        assert [t.extra["critic_round"] for t in critics] == [0, 1]  # a full budget in the second turn too
    assert len(engine.calls) == 2 * (1 + 1 + 2 * 2 + 1)
    second_turn = [t for t in solution.trajectory if t.round == 1]
    assert "recheck the addition (ADVICE)" in second_turn[0].messages[-1]["content"]  # recruiter
    assert "recheck the addition (ADVICE)" in second_turn[1].messages[-1]["content"]  # solver
    assert solution.info["stopped_on"] == "max_turn" and solution.info["turns_run"] == 2
    assert [t["correctness"] for t in solution.info["turns"]] == [0, 0]


@pytest.mark.parametrize("text,expected", [
    ("Correct. [Agree]", True), ("The answer is 5.\n[agree]", True), ("No errors found. [Agree]", True),
    ("I cannot [Agree] with this solution.", False), ("So I do not [Agree].", False),
    ("I can't [Agree]: the sum is 6.", False), ("I would not write [Agree] here.", False),
    ("Wrong sum, see above.", False), ("[Disagree]", False),
])
def test_agrees_reads_negated_agreement_as_disagreement(text, expected):
    assert agrees(text) is expected


async def test_agree_with_a_different_own_answer_is_disagreement():
    """AgentVerse's rule: [Agree] only when the critic's own final answer equals the solver's."""
    responder = scripted(
        solver=lambda prompt: "\\boxed{5}" if REVISING in prompt else "\\boxed{6}",
        critic=lambda prompt: "My own solution gives \\boxed{5}. [Agree]")
    method, _ = make_method(responder)
    solution = await method.solve(SAMPLE)
    critics = [t for t in solution.trajectory if t.role == "critic"]
    assert [t.answer for t in critics] == ["5", "5"]
    assert [(t.extra["agree_token"], t.extra["answer_matches"], t.extra["agree"]) for t in critics] == \
        [(True, False, False), (True, True, True)]  # against \boxed{6}, then against the revised \boxed{5}
    assert [t.role for t in solution.trajectory].count("solver") == 2 and solution.answer == "5"


async def test_critic_solves_from_the_recent_discussion():
    responder = scripted(recruiter=EXPERTS,
                         solver=lambda prompt: f"attempt {prompt.count('[Solver')} gives \\boxed{{6}}",
                         critic=lambda prompt: "I get \\boxed{5}, not 6.")
    method, _ = make_method(responder, cnt_agents=3, max_turn=1, max_criticizing_rounds=2)
    solution = await method.solve(SAMPLE)
    first, second = [t for t in solution.trajectory if t.role == "critic"][::2]
    prompt = first.messages[-1]["content"]
    assert "solve the problem yourself" in prompt and "\\boxed{}" in prompt  # its own answer, in the task format
    assert "same as the final answer of the latest solution" in prompt
    assert "Earlier in the discussion" not in prompt  # nothing before the first solution
    later = second.messages[-1]["content"]
    # The critic's window is the last CRITIC_HISTORY messages: the two round-0 critiques and the revision.
    assert CRITIC_HISTORY == 3 and "attempt 0" not in later and "attempt 1" in latest_solution(later)
    assert later.count("I get \\boxed{5}, not 6.") == 2


async def test_solver_sees_a_rolling_history_of_the_discussion():
    responder = scripted(recruiter=EXPERTS,
                         solver=lambda prompt: f"solution number {prompt.count('[Solver')} \\boxed{{6}}",
                         critic=lambda prompt: f"critique of {latest_solution(prompt).split(' ')[2]}")
    method, _ = make_method(responder, cnt_agents=3, max_turn=1, max_criticizing_rounds=2)
    solution = await method.solve(SAMPLE)
    solvers = [t for t in solution.trajectory if t.role == "solver"]
    assert [t.text.split(" ")[2] for t in solvers] == ["0", "1", "1"]  # the window drops the first solution
    second, third = solvers[1].messages[-1]["content"], solvers[2].messages[-1]["content"]
    assert "solution number 0" in second and second.count("critique of 0") == 2
    # Third call: the last SOLVER_HISTORY = 5 messages are the round-0 critiques, solution 1 and its critiques.
    assert SOLVER_HISTORY == 5 and "solution number 0" not in third
    assert third.count("critique of 0") == 2 and third.count("critique of 1") == 2 and "solution number 1" in third


async def test_evaluator_advises_whom_to_recruit_and_the_next_turn_hears_it():
    responder = scripted(
        critic=lambda prompt: "[Agree]",
        evaluator=lambda prompt: "Correctness: 0\nResponse: recheck the sum; recruit a number theorist (ADVICE)")
    method, _ = make_method(responder, max_turn=2)
    solution = await method.solve(SAMPLE)
    evaluator = next(t for t in solution.trajectory if t.role == "evaluator")
    assert "which experts the group should recruit" in evaluator.messages[-1]["content"]
    recruiter, solver = [t for t in solution.trajectory if t.round == 1][:2]
    assert recruiter.role == "role_assigner"
    assert "recruit a number theorist (ADVICE)" in recruiter.messages[-1]["content"]
    # The second turn's solver sees the first turn's solution and the evaluator's advice in the discussion.
    assert '[Evaluator]:\n"""\nrecheck the sum' in solver.messages[-1]["content"]
    assert "2 + 3 = 5, so \\boxed{5}" in solver.messages[-1]["content"]


async def test_malformed_recruiting_list_falls_back_and_is_recorded():
    method, _ = make_method(scripted(recruiter="We should get some clever people on this."), cnt_agents=3)
    solution = await method.solve(SAMPLE)
    recruit = solution.trajectory[0]
    assert recruit.extra["recruit_fallback"] is True
    assert recruit.extra["experts"] == list(GENERIC_EXPERTS[:3])
    assert solution.trajectory[1].messages[0]["content"] == f"You are {GENERIC_EXPERTS[0]}."
    assert solution.info["recruit_fallbacks"] == 1 and solution.info["turns"][0]["recruit_fallback"] is True


async def test_unparseable_verdict_counts_as_incorrect_and_is_recorded():
    method, _ = make_method(scripted(evaluator=lambda prompt: "Looks good to me!"), max_turn=2)
    solution = await method.solve(SAMPLE)
    evaluations = [t for t in solution.trajectory if t.role == "evaluator"]
    assert [t.extra["evaluation_parsed"] for t in evaluations] == [False, False]
    assert solution.info["unparsed_evaluations"] == 2 and solution.info["stopped_on"] == "max_turn"
    assert solution.answer == "5"


async def test_single_expert_has_no_reviewers():
    method, _ = make_method(scripted(recruiter="1. a solver"), cnt_agents=1, max_turn=1)
    solution = await method.solve(SAMPLE)
    assert [t.role for t in solution.trajectory] == ["role_assigner", "solver", "evaluator"]


def test_parsers():
    assert parse_experts("Sure!\n1. **a chemist**\n2) a physicist.\n3: a chemist", 3) == ["a chemist", "a physicist"]
    assert parse_experts("- a\n- b\n- c", 2) == ["a", "b"]
    experts, fallback = recruit_with_fallback("1. a biologist", 3)
    assert fallback and experts == ["a biologist", GENERIC_EXPERTS[0], GENERIC_EXPERTS[1]]
    assert len(recruit_with_fallback("", 6)[0]) == 6
    assert parse_evaluation("Correctness: **1**\nResponse: ok") == (1, "ok")
    assert parse_evaluation("correctness = 0. Response: add the carry") == (0, "add the carry")
    assert parse_evaluation("Correctness: 10") == (None, "Correctness: 10")
    assert parse_evaluation("no idea")[0] is None


def test_repo_config_loads():
    config = AgentVerse.load_config("config_main")
    assert (config.cnt_agents, config.max_turn, config.max_criticizing_rounds) == (2, 3, 3)


@pytest.mark.parametrize("values, message", [
    ({"max_turns": 3}, "unknown key(s) max_turns"),
    ({"cnt_agents": 0}, "cnt_agents must be at least 1"),
    ({"max_turn": 2.5}, "max_turn must be int"),
])
def test_bad_config_is_one_line_error(values, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        AgentVerseConfig.from_dict(values, source="agentverse.yaml")
    assert "\n" not in str(err.value)
