"""AgentVerse: recruit experts, solve, critique until the critics agree, evaluate; repeat with the advice.

Follows AgentVerse's task-solving loop (Chen et al., 2023; its `vertical-solver-first` decision maker). Each
turn (at most `max_turn`): a role assigner recruits `cnt_agents` expert descriptions; the first expert writes
a solution and the others review it. A reviewer (critic) solves the problem itself from the recent discussion
and ends with [Agree] only when its own final answer equals the solver's; the run counts it as agreeing only
when its [Agree] is not negated and the final answers it states really match. After each review round in
which someone disagrees, the disagreeing critiques join the discussion and the solver revises, for at most
`max_criticizing_rounds` review rounds (counted afresh every turn). One discussion runs through the whole
sample: the solver sees its last `SOLVER_HISTORY` messages and a critic its last `CRITIC_HISTORY`, as
AgentVerse's agents do. An evaluator then answers `Correctness: 0|1` with advice on the solution and on
whom to recruit: 1 ends the run, 0 hands the advice to the next turn's recruiter and to the discussion.
The answer is the last solution's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from data.schema import Sample
from data.task_prompts import answer_instruction, format_question, task_prompt
from methods.agentverse.prompts import (
    AGREE_TOKEN,
    GENERIC_EXPERTS,
    critic_prompt,
    evaluator_prompt,
    expert_system,
    recruiter_prompt,
    solver_prompt,
)
from methods.base import ConfigError, Method, MethodConfig, Solution, Trajectory, Turn
from methods.consensus import is_free_form, same_answer

_LIST_ITEM = re.compile(r"^\s*(?:\d+\s*[.):]|[-*\u2022])\s*(.+?)\s*$", re.M)
_CORRECTNESS = re.compile(r"correctness\W{0,4}([01])(?!\d)", re.I)
_ADVICE = re.compile(r"response\s*:\s*(.*)", re.I | re.S)
# A negation shortly before [Agree] in the same sentence ("I cannot [Agree]", "so I do not write [Agree]").
_NEGATED = re.compile(r"\b(?:not|cannot|can't|won't|don't|doesn't|didn't|wouldn't|shouldn't|never|unable to)"
                      r"(?:\W+\w+){0,3}\W*$", re.I)
_AGREE = re.compile(re.escape(AGREE_TOKEN), re.I)

# How many of the latest discussion messages each participant sees (AgentVerse's SolverAgent and
# CriticAgent `max_history`).
SOLVER_HISTORY = 5
CRITIC_HISTORY = 3
EVALUATOR_SPEAKER = "Evaluator"


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
    """Whether a critic's reply ends in agreement: its last [Agree] is not negated within its sentence."""
    found = list(_AGREE.finditer(text))
    if not found:
        return False
    before = text[:found[-1].start()]
    sentence = re.split(r"[.!?\n]", before)[-1]
    return _NEGATED.search(sentence) is None


def without_agree_token(text: str) -> str:
    """The reply with [Agree] removed, so the token is never read as part of a stated answer."""
    return _AGREE.sub("", text)


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
        # (speaker, text) in order: solutions, disagreeing critiques, the evaluator's advice. AgentVerse
        # keeps its agents (and their memories) across turns, so the discussion runs through the whole sample.
        discussion: list[tuple[str, str]] = []
        turns_info: list[dict[str, Any]] = []
        stopped_on = "max_turn"
        for turn_index in range(cfg.max_turn):
            experts, recruit_fallback = await self._recruit(traj, sample, turn_index, advice, solution)
            solution, critic_rounds, agreed = await self._solve_and_review(traj, sample, turn_index, experts,
                                                                           discussion)
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
            if advice:
                discussion.append((EVALUATOR_SPEAKER, advice))
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
                                discussion: list[tuple[str, str]]) -> tuple[Turn, int, bool]:
        """The solver's solution after review; returns (final solution turn, review rounds run, all agreed).

        Appends the turn's solutions and disagreeing critiques to `discussion`.
        """
        question = format_question(sample)
        question_with_instruction = task_prompt(sample, self.task_type)
        solver_system = {"role": "system", "content": expert_system(experts[0])}
        solver_name = f"Solver ({experts[0]})"

        async def write_solution(critic_round: int) -> Turn:
            user = solver_prompt(question_with_instruction, discussion[-SOLVER_HISTORY:])
            turn = await traj.chat([solver_system, {"role": "user", "content": user}], agent=0, role="solver",
                                   round=turn_index)
            turn.extra["critic_round"] = critic_round
            discussion.append((solver_name, turn.text))
            return turn

        solution = await write_solution(0)
        reviewers = experts[1:]
        if not reviewers:
            return solution, 0, True
        instruction = answer_instruction(self.task_type)
        for critic_round in range(self.config.max_criticizing_rounds):
            # The window ends with the solution under review, which the prompt shows on its own.
            earlier = discussion[-CRITIC_HISTORY:-1]
            conversations = [[{"role": "system", "content": expert_system(description)},
                              {"role": "user", "content": critic_prompt(question, earlier, solution.text,
                                                                        instruction)}]
                             for description in reviewers]
            reviews = await traj.chat_many(conversations, agents=range(1, len(experts)), role="critic",
                                           round=turn_index, extract=False)
            for review in reviews:
                self._judge_review(traj, review, solution, critic_round)
            if all(review.extra["agree"] for review in reviews):
                return solution, critic_round + 1, True
            discussion.extend((f"Reviewer ({description})", review.text)
                              for description, review in zip(reviewers, reviews) if not review.extra["agree"])
            solution = await write_solution(critic_round + 1)
        return solution, self.config.max_criticizing_rounds, False

    def _judge_review(self, traj: Trajectory, review: Turn, solution: Turn, critic_round: int) -> None:
        """Record the critic's own answer and whether it agrees with the solution under review.

        Agreement needs an un-negated [Agree] and, when both state a final answer, the same answer (for free
        text, token F1 at the similarity threshold): AgentVerse's rule, checked rather than taken on trust.
        """
        reply = without_agree_token(review.text)
        review.answer = traj.extract(reply)
        if is_free_form(self.task_type) and review.answer == reply.strip():
            review.answer = None  # the short-answer reader fell back to the whole reply: no answer was stated
        token = agrees(review.text)
        checkable = review.answer is not None and solution.answer is not None
        matches = same_answer(review.answer, solution.answer, self.task_type) if checkable else None
        review.extra.update(critic_round=critic_round, agree_token=token, answer_matches=matches,
                            agree=token and matches is not False)
