"""AgentVerse: recruit experts, solve, critique until the critics agree, evaluate; repeat with the advice.

Each turn (at most `max_turn`): a role assigner recruits `cnt_agents` expert descriptions; the first
expert writes a solution and the others review it, ending with [Agree] when they concur; after each
review round in which someone disagrees the solver revises, for at most `max_criticizing_rounds` review
rounds (counted afresh every turn). An evaluator then answers `Correctness: 0|1` with advice: 1 ends the
run, 0 hands the advice and the solution to the next turn. The answer is the last solution's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from data.schema import Sample
from data.task_prompts import format_question, task_prompt
from methods.agentverse.prompts import (
    AGREE_TOKEN,
    GENERIC_EXPERTS,
    critic_prompt,
    evaluator_prompt,
    expert_system,
    recruiter_prompt,
    revision_prompt,
    solver_prompt,
)
from methods.base import ConfigError, Method, MethodConfig, Solution, Trajectory, Turn

_LIST_ITEM = re.compile(r"^\s*(?:\d+\s*[.):]|[-*\u2022])\s*(.+?)\s*$", re.M)
_CORRECTNESS = re.compile(r"correctness\W{0,4}([01])(?!\d)", re.I)
_ADVICE = re.compile(r"response\s*:\s*(.*)", re.I | re.S)


@dataclass
class AgentVerseConfig(MethodConfig):
    cnt_agents: int = 2  # experts recruited per turn: the first solves, the others review (1: no reviewers)
    max_turn: int = 3  # recruit-solve-evaluate turns; an evaluator verdict of 1 ends the run early
    max_criticizing_rounds: int = 3  # review rounds per turn; the count restarts every turn

    def __post_init__(self) -> None:
        for key, minimum in (("cnt_agents", 1), ("max_turn", 1), ("max_criticizing_rounds", 0)):
            if getattr(self, key) < minimum:
                raise ConfigError(f"key {key} must be at least {minimum}, "
                                  f"got {getattr(self, key)}")


def parse_experts(text: str, count: int) -> list[str]:
    """Up to `count` distinct expert descriptions from a numbered or bulleted list (maybe fewer)."""
    experts: list[str] = []
    for item in _LIST_ITEM.findall(text):
        description = item.strip().strip("*_`\"'").strip().rstrip(".")
        if description and description.lower() not in (e.lower() for e in experts):
            experts.append(description)
    return experts[:count]


def recruit_with_fallback(text: str, count: int) -> tuple[list[str], bool]:
    """The recruited experts, completed from generic ones when the list is short or unreadable."""
    experts = parse_experts(text, count)
    fallback = len(experts) < count
    generic = [g for g in GENERIC_EXPERTS if g not in experts]
    generic += [f"a careful expert (number {i + 1})" for i in range(count)]
    return experts + generic[: count - len(experts)], fallback


def parse_evaluation(text: str) -> tuple[int | None, str]:
    """(correctness 0/1 or None when absent, advice). Advice is the Response part, else the whole reply."""
    found = _CORRECTNESS.search(text)
    advice_match = _ADVICE.search(text)
    advice = advice_match.group(1).strip() if advice_match else _CORRECTNESS.sub("", text).strip()
    return (int(found.group(1)) if found else None), advice


def agrees(text: str) -> bool:
    return AGREE_TOKEN.lower() in text.lower()


class AgentVerse(Method):
    """Recruited experts solve and review in a loop; an evaluator decides whether another turn is needed."""

    name = "agentverse"
    Config = AgentVerseConfig
    config: AgentVerseConfig

    async def solve(self, sample: Sample) -> Solution:
        cfg = self.config
        traj = self.trajectory(sample)
        advice: str | None = None
        solution: Turn | None = None
        turns_info: list[dict[str, Any]] = []
        stopped_on = "max_turn"
        for turn_index in range(cfg.max_turn):
            experts, recruit_fallback = await self._recruit(traj, sample, turn_index, advice, solution)
            solution, critic_rounds, agreed = await self._solve_and_review(traj, sample, turn_index, experts,
                                                                           advice, solution)
            evaluation = await traj.chat([{"role": "user", "content": evaluator_prompt(format_question(sample),
                                                                                      solution.text)}],
                                         agent=cfg.cnt_agents + 1, role="evaluator", round=turn_index,
                                         extract=False)
            correctness, advice = parse_evaluation(evaluation.text)
            # An unreadable verdict counts as "not correct": another turn costs calls, a wrong stop costs the answer.
            evaluation.extra.update(correctness=correctness, evaluation_parsed=correctness is not None,
                                    advice=advice)
            turns_info.append({"turn": turn_index, "experts": experts, "recruit_fallback": recruit_fallback,
                               "critic_rounds": critic_rounds, "critics_agreed": agreed,
                               "correctness": correctness, "evaluation_parsed": correctness is not None})
            if correctness == 1:
                stopped_on = "correctness"
                break
        assert solution is not None  # max_turn >= 1
        info = {"stopped_on": stopped_on, "turns_run": len(turns_info), "turns": turns_info,
                "recruit_fallbacks": sum(t["recruit_fallback"] for t in turns_info),
                "unparsed_evaluations": sum(not t["evaluation_parsed"] for t in turns_info)}
        return Solution(response=solution.text, answer=solution.answer, trajectory=traj.turns, info=info)

    async def _recruit(self, traj: Trajectory, sample: Sample, turn_index: int, advice: str | None,
                       previous: Turn | None) -> tuple[list[str], bool]:
        count = self.config.cnt_agents
        prompt = recruiter_prompt(format_question(sample), count, advice, previous.text if previous else None)
        turn = await traj.chat([{"role": "user", "content": prompt}], agent=count, role="role_assigner",
                               round=turn_index, extract=False)
        experts, fallback = recruit_with_fallback(turn.text, count)
        turn.extra.update(experts=experts, recruit_fallback=fallback)
        return experts, fallback

    async def _solve_and_review(self, traj: Trajectory, sample: Sample, turn_index: int, experts: list[str],
                                advice: str | None, previous: Turn | None) -> tuple[Turn, int, bool]:
        """The solver's solution after review; returns (final solution turn, review rounds run, all agreed)."""
        question = format_question(sample)
        question_with_instruction = task_prompt(sample, self.task_type)
        solver_system = {"role": "system", "content": expert_system(experts[0])}
        user = solver_prompt(question_with_instruction, advice, previous.text if previous else None)
        solution = await traj.chat([solver_system, {"role": "user", "content": user}], agent=0, role="solver",
                                   round=turn_index)
        solution.extra["critic_round"] = 0
        reviewers = experts[1:]
        if not reviewers:
            return solution, 0, True
        for critic_round in range(self.config.max_criticizing_rounds):
            conversations = [[{"role": "system", "content": expert_system(description)},
                              {"role": "user", "content": critic_prompt(question, solution.text)}]
                             for description in reviewers]
            reviews = await traj.chat_many(conversations, agents=range(1, len(experts)), role="critic",
                                           round=turn_index, extract=False)
            for review in reviews:
                review.extra.update(critic_round=critic_round, agree=agrees(review.text))
            if all(review.extra["agree"] for review in reviews):
                return solution, critic_round + 1, True
            critiques = [(description, review.text) for description, review in zip(reviewers, reviews)
                         if not review.extra["agree"]]
            user = revision_prompt(question_with_instruction, solution.text, critiques)
            solution = await traj.chat([solver_system, {"role": "user", "content": user}], agent=0,
                                       role="solver", round=turn_index)
            solution.extra["critic_round"] = critic_round + 1
        return solution, self.config.max_criticizing_rounds, False
