"""How a method turns several agents' answers into one, for every task type.

Math and multiple-choice answers are votes: two answers agree when they have the same `answer_key`
(equivalent numbers, the same letter), and the most common one wins. Free-form short answers (QMSum,
QASPER, HotpotQA) almost never repeat word for word, so a vote over normalised text falls back to the
first agent. For them the consensus is the medoid, as in universal self-consistency: the answer with the
highest mean similarity to the other answers, where similarity is eval's SQuAD token F1 (symmetric, and
the measure the short-answer grader reports). Two short answers "agree" when their token F1 reaches
`SIMILARITY_THRESHOLD`, the same bar label.py's rule judge sets for a correct short answer.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eval.grading import answer_key, majority_vote, token_f1

FREE_FORM_TASKS = frozenset({"short_answer"})
SIMILARITY_THRESHOLD = 0.5  # label.py's --f1_threshold default: the bar for "the same short answer"


def is_free_form(task_type: str) -> bool:
    """Whether answers of `task_type` are free text (compared by similarity, not by a canonical key)."""
    return task_type in FREE_FORM_TASKS


def uses_aggregator(setting: bool | None, task_type: str) -> bool:
    """A method's `use_aggregator`: an explicit true/false, or null for the task-aware default.

    The paper's repository ends self_consistency and llm_debate with an aggregator turn; on free-form
    tasks, where no two agents give the same text, that turn is the default. Math and multiple choice
    keep the vote, whose answers can be counted.
    """
    return is_free_form(task_type) if setting is None else setting


def answer_similarity(first: str | None, second: str | None) -> float:
    """Token F1 of two short answers (0 when either is missing); symmetric."""
    if first is None or second is None:
        return 0.0
    return token_f1(first, second)


def same_answer(first: str | None, second: str | None, task_type: str,
                threshold: float = SIMILARITY_THRESHOLD) -> bool:
    """Whether two answers agree: equal `answer_key`, or for free text a token F1 of at least `threshold`."""
    if first is None or second is None:
        return False
    if is_free_form(task_type):
        return answer_similarity(first, second) >= threshold
    key = answer_key(first, task_type)
    return key is not None and key == answer_key(second, task_type)


def mean_similarities(answers: Sequence[str | None],
                      pool: Sequence[str | None] | None = None) -> list[float | None]:
    """Each answer's mean token F1 to the other answers of `pool` (default: `answers` themselves).

    A missing or wordless answer scores None; answers compared against a separate pool skip identical positions only
    when the pool is the answers list itself (an answer is not its own evidence).
    """
    # An answer without a word or digit (a small model's "Answer: :") is no answer: it would score 0 against
    # everything and only dilute the others' means.
    answers = [a if a is not None and answer_key(a, "short_answer") else None for a in answers]
    own_pool = pool is None
    others = [a if a is not None and answer_key(a, "short_answer") else None
              for a in (answers if own_pool else pool)]
    scores: list[float | None] = []
    for index, answer in enumerate(answers):
        if answer is None:
            scores.append(None)
            continue
        values = [answer_similarity(answer, other) for j, other in enumerate(others)
                  if other is not None and not (own_pool and j == index)]
        scores.append(sum(values) / len(values) if values else 0.0)
    return scores


def medoid_index(answers: Sequence[str | None], pool: Sequence[str | None] | None = None) -> int | None:
    """The position of the answer most similar on average to the others (first on ties); None if none."""
    scores = mean_similarities(answers, pool)
    best: int | None = None
    for index, score in enumerate(scores):
        if score is not None and (best is None or score > scores[best]):
            best = index
    return best


@dataclass
class Vote:
    """The consensus of several answers: the winner, whose answer it is, and by which rule."""

    answer: str | None
    index: int | None  # position of the winning answer in the list voted on; None when nobody answered
    rule: str  # "majority" (math, choices) or "medoid" (free text)
    similarities: list[float | None] | None = None  # medoid rule: each answer's mean token F1 to the others

    @property
    def source(self) -> str:
        """What `info["answer_source"]` calls this consensus: "vote" (majority) or "medoid" (free text)."""
        return "medoid" if self.rule == "medoid" else "vote"

    def response(self, texts: Sequence[str]) -> str:
        """The winning agent's text (the first text when nobody stated an answer)."""
        return texts[self.index] if self.index is not None else texts[0]

    def info(self) -> dict:
        out: dict = {"vote_rule": self.rule, "vote_index": self.index}
        if self.similarities is not None:
            out["vote_similarities"] = [None if s is None else round(s, 4) for s in self.similarities]
        return out


def consensus_vote(answers: Sequence[str | None], task_type: str) -> Vote:
    """Majority vote (ties: first seen) for math and choices; the medoid for free-form answers."""
    if is_free_form(task_type):
        scores = mean_similarities(answers)
        index = medoid_index(answers)
        return Vote(answers[index] if index is not None else None, index, "medoid", scores)
    voted = majority_vote(answers, task_type)
    winner = answer_key(voted, task_type)
    index = next((i for i, a in enumerate(answers) if winner is not None and answer_key(a, task_type) == winner),
                 None)
    return Vote(voted, index, "majority")


def agreement_count(answers: Sequence[str | None], candidate: str | None, task_type: str) -> int:
    """How many of `answers` agree with `candidate` (see `same_answer`)."""
    return sum(same_answer(answer, candidate, task_type) for answer in answers)


__all__ = ["FREE_FORM_TASKS", "SIMILARITY_THRESHOLD", "Vote", "agreement_count", "answer_similarity",
           "consensus_vote", "is_free_form", "mean_similarities", "medoid_index", "same_answer",
           "uses_aggregator"]
