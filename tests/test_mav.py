"""MAV logic on a scripted backend (approval scores, ties, seeded verifiers, temperature 0) and a smoke run."""
from __future__ import annotations

import re

import pytest

from data.schema import Sample
from engine.base import SamplingParams
from engine.scripted_backend import ScriptedEngine
from methods.base import ConfigError
from methods.mav.mav import MAV, MAVConfig, parse_verdict
from methods.mav.prompts import VERDICT_PROMPT, VERIFIERS

SAMPLE = Sample(id="q1", query="What is 2 + 3?", gt="5", source="test")


def scripted(answers: list[str], approve, verdict_text=None):
    """Solver i (told apart by its sampling seed) answers answers[i]; a verdict approves when approve(solution)."""
    def responder(messages, params):
        if messages[-1]["content"] == VERDICT_PROMPT:
            solution = re.search(r'"""\n(.*?)\n"""', messages[1]["content"], re.S).group(1)
            if verdict_text is not None:
                return verdict_text
            return f"Checked.\nFINAL VERIFICATION ANSWER: {approve(solution)}"
        if messages[0]["role"] == "system":
            return "Analysis: the steps look as follows."
        return f"Adding up gives \\boxed{{{answers[params.seed]}}}"
    return responder


def make_method(responder, temperature: float = 0.7, run_seed: int = 0, **config) -> tuple[MAV, ScriptedEngine]:
    engine = ScriptedEngine(responder, defaults=SamplingParams(temperature=temperature))
    values = dict(n_solutions=4, n_max_verifiers=3, verifier_temperature=0.0, seed=0)
    values.update(config)
    return MAV(engine, MAVConfig(**values), task_type="math", seed=run_seed), engine


async def test_picks_the_solution_the_verifiers_approve_over_the_majority():
    method, engine = make_method(scripted(["4", "5", "4", "6"], approve=lambda s: "boxed{5}" in s))
    solution = await method.solve(SAMPLE)
    assert solution.answer == "5" and "boxed{5}" in solution.response
    assert solution.info["approvals"] == [0, 3, 0, 0] and solution.info["scores"] == [0.0, 1.0, 0.0, 0.0]
    assert solution.info["selected_solution"] == 1 and solution.info["tie_break_by_majority"] is False
    assert len(engine.calls) == 4 + 2 * 3 * 4
    verdicts = [t for t in solution.trajectory if t.round == 2]
    assert all(t.role == "verifier" and t.extra["verdict_parsed"] for t in verdicts)
    assert {(t.extra["verifier"], t.extra["solution"]) for t in verdicts} == \
        {(name, s) for name in solution.info["verifiers"] for s in range(4)}
    # The verdict turn continues the verifier's own analysis conversation.
    analysis = next(t for t in solution.trajectory if t.round == 1)
    assert verdicts[0].messages[:2] == analysis.messages
    assert verdicts[0].messages[2] == {"role": "assistant", "content": analysis.text}


async def test_ties_go_to_the_majority_answer_of_the_tied_solutions():
    method, _ = make_method(scripted(["4", "6", "5", "5"], approve=lambda s: "boxed{4}" not in s))
    solution = await method.solve(SAMPLE)
    assert solution.info["scores"] == [0.0, 1.0, 1.0, 1.0]
    assert solution.answer == "5" and solution.info["selected_solution"] == 2
    assert solution.info["tie_break_by_majority"] is True


async def test_short_answer_ties_go_to_the_medoid_not_the_first_candidate():
    answers = ["The marketing team wants a new logo", "The budget vote was delayed until March",
               "They delayed the budget vote until March", "Budget vote delayed until March"]

    def responder(messages, params):
        if messages[-1]["content"] == VERDICT_PROMPT:
            return "FINAL VERIFICATION ANSWER: True"  # every candidate approved: a four-way tie
        if messages[0]["role"] == "system":
            return "Analysis."
        return f"Answer: {answers[params.seed]}"

    engine = ScriptedEngine(responder, defaults=SamplingParams(temperature=0.7))
    method = MAV(engine, MAVConfig(n_solutions=4, n_max_verifiers=2), task_type="short_answer")
    sample = Sample(id="s1", query="What did the committee decide?", gt="a delay", source="test")
    solution = await method.solve(sample)
    assert solution.info["scores"] == [1.0] * 4 and solution.info["tie_break_by_majority"] is True
    assert solution.info["selected_solution"] in (1, 2, 3)
    assert solution.answer == answers[solution.info["selected_solution"]]


async def test_unparseable_verdicts_are_no_approval_and_are_recorded():
    method, _ = make_method(scripted(["4", "5", "5", "6"], approve=None, verdict_text="Seems fine overall."))
    solution = await method.solve(SAMPLE)
    assert solution.info["unparsed_verdicts"] == 12 and solution.info["scores"] == [0.0] * 4
    assert solution.answer == "5"  # all tied at 0: the majority
    assert all(t.extra["verdict"] is None for t in solution.trajectory if t.round == 2)


async def test_verifier_temperature_zero_is_sent_as_zero():
    method, engine = make_method(scripted(["5"] * 4, approve=lambda s: True), temperature=0.7)
    await method.solve(SAMPLE)
    solver_params = [p for m, p in engine.calls if m[0]["role"] == "user"]
    verifier_params = [p for m, p in engine.calls if m[0]["role"] == "system"]
    assert {p.temperature for p in solver_params} == {0.7}
    assert {p.temperature for p in verifier_params} == {0.0}
    assert [p.seed for p in solver_params] == [0, 1, 2, 3]  # distinct seeds for identical prompts
    default_method, default_engine = make_method(scripted(["5"] * 4, approve=lambda s: True),
                                                 temperature=0.7, verifier_temperature=None)
    await default_method.solve(SAMPLE)
    assert {p.temperature for m, p in default_engine.calls if m[0]["role"] == "system"} == {0.7}


async def test_verifier_choice_is_seeded():
    responder = scripted(["5"] * 4, approve=lambda s: True)
    samples = [Sample(id=f"q{i}", query="What is 2 + 3?", gt="5", source="test") for i in range(12)]
    first, engine = make_method(responder)
    second, _ = make_method(responder)
    draws = [first.draw_verifiers(s) for s in samples]
    assert draws == [second.draw_verifiers(s) for s in samples]  # same seeds, same verifiers
    assert len({tuple(d) for d in draws}) > 1  # and they vary across samples
    other_config, _ = make_method(responder, seed=1)
    other_run, _ = make_method(responder, run_seed=7)
    assert [other_config.draw_verifiers(s) for s in samples] != draws
    assert [other_run.draw_verifiers(s) for s in samples] != draws
    solution = await first.solve(samples[0])
    used = {m[0]["content"] for m, _ in engine.calls if m[0]["role"] == "system"}
    assert used == {VERIFIERS[name].system for name in draws[0]}
    assert solution.info["verifiers"] == draws[0] and len(draws[0]) == 3


def test_pool_smaller_than_max_uses_every_verifier():
    method, _ = make_method(lambda m, p: "", n_max_verifiers=10, verifiers=["math_steps", "general_direct"])
    assert method.draw_verifiers(SAMPLE) == ["math_steps", "general_direct"]


def test_parse_verdict():
    assert parse_verdict("FINAL VERIFICATION ANSWER: True") is True
    assert parse_verdict("**FINAL VERIFICATION ANSWER:** false.") is False
    assert parse_verdict("FINAL VERIFICATION ANSWER: False\n...\nFINAL VERIFICATION ANSWER: True") is True
    assert parse_verdict("final verification answer - TRUE") is True
    assert parse_verdict("The answer is true.") is None


@pytest.mark.parametrize("config_name", ["config_main", "config_math", "config_mmlu"])
def test_repo_configs_load(config_name):
    config = MAV.load_config(config_name)
    assert isinstance(config, MAVConfig) and config.verifier_temperature == 0.0
    assert set(config.verifiers) <= set(VERIFIERS)


@pytest.mark.parametrize("values, message", [
    ({"n_verifiers": 3}, "unknown key(s) n_verifiers"),
    ({"verifiers": ["math_steps", "astrology"]}, "unknown or no names (astrology)"),
    ({"verifier_temperature": -1}, "verifier_temperature must be >= 0"),
    ({"n_solutions": 0}, "n_solutions must be at least 1"),
    ({"verifier_temperature": "zero"}, "verifier_temperature must be float"),
])
def test_bad_config_is_one_line_error(values, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        MAVConfig.from_dict(values, source="mav.yaml")
    assert "\n" not in str(err.value)


def test_yaml_integer_temperature_and_null_are_read():
    assert MAVConfig.from_dict({"verifier_temperature": 0}).verifier_temperature == 0.0
    assert MAVConfig.from_dict({"verifier_temperature": None}).verifier_temperature is None
