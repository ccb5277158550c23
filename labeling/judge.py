"""The judge contract: a verdict on whether a candidate solution's final answer matches the reference.

label.py builds one `JudgeItem` per solution and asks a `Judge` for all of them at once, so an LLM judge
can have every call in flight together (the engine batches them) and a rule judge can grade in a pool.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class JudgeItem:
    """One solution to judge, with what its question and reference say."""

    query: str
    gt: str | list[str]  # the reference answer (several references for some short-answer sets)
    candidate: str  # the solution's full text
    answer: str | None  # the final answer extracted from it (the turn's `answer`), if any
    task_type: str  # "math", "multiple_choice" or "short_answer" (data.schema.TASK_TYPES)
    choices: list[str] | None = None
    context: str | None = None


@dataclass(frozen=True)
class Verdict:
    """`is_correct` is None when the judge's verdict could not be read (never silently False)."""

    is_correct: bool | None
    judge: str  # "rule" or "llm"
    detail: str = ""  # the rule's grade reason, or the LLM judge's raw reply


class Judge(Protocol):
    """Judges many items at once and returns one verdict per item, in order."""

    name: str

    async def judge_many(self, items: Sequence[JudgeItem]) -> list[Verdict]: ...
