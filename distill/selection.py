"""Which correct solutions become targets: R-SFT's one best per question, DA's distinct few.

Without a PRM, R-SFT prefers what the multi-agent system itself answered: the aggregator's solution, else a
solution agreeing with the majority of the agents' final answers. With a PRM, the correct solution whose
weakest step scores highest. DA keeps solutions in the same order of preference, dropping near-duplicates
(ROUGE-L F1 at or above a threshold against one already kept) and stopping at a cap.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from distill.labeled import LabeledQuestion, LabeledSolution
from eval.grading import answer_key, majority_vote

PICKED_BY_PRM = "prm"
PICKED_BY_AGGREGATOR = "aggregator"
PICKED_BY_MAJORITY = "majority"
# The agents' majority was wrong (or tied away from the reference) but some agent was right.
PICKED_BY_MINORITY = "minority"

NEAR_DUPLICATE = "near_duplicate"
OVER_CAP = "over_max_per_question"

PRM_AGGREGATES: dict[str, Callable[[list[float]], float]] = {
    "min": min,  # a solution is as sound as its weakest step
    "mean": lambda scores: sum(scores) / len(scores),
    "last": lambda scores: scores[-1],
    "prod": math.prod,
}


def preference_key(solution: LabeledSolution) -> tuple[Any, ...]:
    """Sorts the system's own answer first: the aggregator, then later rounds (after more debate), then agent."""
    return (solution.role != "aggregator", -solution.round, solution.agent, solution.position)


def final_answers(question: LabeledQuestion) -> list[str | None]:
    """Each agent's last answer in the record (one vote per method, agent and role; aggregators excluded)."""
    last: dict[tuple[str, int, str], LabeledSolution] = {}
    for solution in question.solutions:
        if solution.role == "aggregator":
            continue
        if solution.chain not in last or solution.round >= last[solution.chain].round:
            last[solution.chain] = solution
    return [solution.answer for solution in last.values()]


def pick_rsft(question: LabeledQuestion, eligible: Sequence[LabeledSolution], answers: dict[int, str | None],
              scores: dict[int, float] | None = None) -> tuple[LabeledSolution, str]:
    """The one target of a question and how it was chosen; `answers` and `scores` are keyed by position."""
    ordered = sorted(eligible, key=preference_key)
    if scores is not None:
        best = max(ordered, key=lambda s: scores[s.position])  # max keeps the first of ties: the preferred one
        return best, PICKED_BY_PRM
    if ordered[0].role == "aggregator":
        return ordered[0], PICKED_BY_AGGREGATOR
    majority = answer_key(majority_vote(final_answers(question), question.task_type), question.task_type)
    for solution in ordered:
        if majority is not None and answer_key(answers[solution.position], question.task_type) == majority:
            return solution, PICKED_BY_MAJORITY
    return ordered[0], PICKED_BY_MINORITY


def aggregate_step_scores(step_scores: Sequence[float], how: str = "min") -> float:
    """One score per solution from its steps' scores; steps the PRM could not read (NaN) are ignored."""
    readable = [float(s) for s in step_scores if not math.isnan(float(s))]
    return PRM_AGGREGATES[how](readable) if readable else float("-inf")


@cache
def _rouge_l() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"])


def dedup_and_cap(texts: Sequence[str], threshold: float, cap: int) -> tuple[list[int], dict[int, str]]:
    """Indexes of `texts` to keep, in order, and the reason each other one was dropped."""
    scorer = _rouge_l()
    kept: list[int] = []
    dropped: dict[int, str] = {}
    for index, text in enumerate(texts):
        if any(scorer.score(texts[k], text)["rougeL"].fmeasure >= threshold for k in kept):
            dropped[index] = NEAR_DUPLICATE
        elif len(kept) >= cap:
            dropped[index] = OVER_CAP
        else:
            kept.append(index)
    return kept, dropped


__all__ = ["NEAR_DUPLICATE", "OVER_CAP", "PICKED_BY_AGGREGATOR", "PICKED_BY_MAJORITY", "PICKED_BY_MINORITY",
           "PICKED_BY_PRM", "PRM_AGGREGATES", "aggregate_step_scores", "dedup_and_cap", "final_answers",
           "pick_rsft", "preference_key"]
