"""The rule judge: eval's graders decide whether a solution's final answer matches the reference.

Math: equivalence (cheap normalised and numeric checks here, math-verify in a process pool for the rest).
Multiple choice: the extracted letter against the reference letter. Short answer: SQuAD token F1 against
the best reference, correct at or above `f1_threshold`. No model is loaded.
"""
from __future__ import annotations

from collections.abc import Sequence

from eval.choice import grade_choice
from eval.grading import REASON_NO_REFERENCE, Grade, extract_answer, grade_math_many, token_f1
from labeling.judge import JudgeItem, Verdict

# F1 >= 0.5: most of the reference's words are in the answer and most of the answer's words are in the
# reference. Exact and reworded answers pass; a wrong entity or a long answer that buries the reference
# (both typically F1 < 0.3) fails. Long-form references (QMSum) are the LLM judge's job.
DEFAULT_F1_THRESHOLD = 0.5
MAX_CACHED_GRADES = 500_000  # distinct (answer, reference) math pairs remembered across batches


def _references(gt: str | Sequence[str]) -> list[str]:
    return [gt] if isinstance(gt, str) else [str(g) for g in gt]


def _detail(grade: Grade) -> str:
    return f"{grade.reason}: {grade.detail}" if grade.detail else grade.reason


class RuleJudge:
    """Judges with eval's graders; `judge_many_sync` is the same without an event loop."""

    name = "rule"

    def __init__(self, f1_threshold: float = DEFAULT_F1_THRESHOLD, timeout_s: float = 5.0,
                 num_workers: int | None = None):
        if not 0.0 <= f1_threshold <= 1.0:
            raise ValueError(f"--f1_threshold must be in [0, 1], got {f1_threshold}")
        self.f1_threshold = f1_threshold
        self.timeout_s = timeout_s
        self.num_workers = num_workers
        self._math_cache: dict[tuple[str | None, str], Grade] = {}

    async def judge_many(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        return self.judge_many_sync(items)

    def judge_many_sync(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(items)
        math_owners: dict[tuple[str | None, str], list[int]] = {}  # each distinct pair is graded once
        for index, item in enumerate(items):
            answer = item.answer
            if answer is None:
                answer = extract_answer(item.candidate, item.task_type, choices=item.choices)
            refs = _references(item.gt)
            if not refs:
                verdicts[index] = Verdict(False, self.name, REASON_NO_REFERENCE)
            elif item.task_type == "math":
                for ref in refs:
                    math_owners.setdefault((answer, ref), []).append(index)
            elif item.task_type == "multiple_choice":
                grades = [grade_choice(answer, ref) for ref in refs]
                grade = next((g for g in grades if g.correct), grades[0])
                verdicts[index] = Verdict(grade.correct, self.name, _detail(grade))
            elif item.task_type == "short_answer":
                f1 = token_f1(answer, refs)
                verdicts[index] = Verdict(f1 >= self.f1_threshold, self.name, f"token_f1={f1:.3f}")
            else:
                raise ValueError(f"unknown task type {item.task_type!r}")
        for pair, grade in zip(math_owners, self._grade_math(list(math_owners))):
            for index in math_owners[pair]:
                previous = verdicts[index]  # several references: correct against any one
                if previous is None or (grade.correct and not previous.is_correct):
                    verdicts[index] = Verdict(grade.correct, self.name, _detail(grade))
        return [v for v in verdicts if v is not None]

    def _grade_math(self, pairs: list[tuple[str | None, str]]) -> list[Grade]:
        """Grades of distinct pairs; a pair graded before in this run is not graded again (debate agents
        often repeat an answer across rounds, and symbolic checks cost ~0.1 s each)."""
        todo = [pair for pair in pairs if pair not in self._math_cache]
        if todo:
            if len(self._math_cache) + len(todo) > MAX_CACHED_GRADES:
                self._math_cache.clear()
            self._math_cache.update(zip(todo, grade_math_many(todo, timeout_s=self.timeout_s,
                                                               num_workers=self.num_workers)))
        return [self._math_cache[pair] for pair in pairs]


__all__ = ["DEFAULT_F1_THRESHOLD", "RuleJudge"]
