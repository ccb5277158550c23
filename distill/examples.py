"""The two sides of an SFT example: the prompt the student sees under `cot`, and a checked completion.

The prompt is built by the same pieces `methods.cot` uses (its config's system prompt, `task_prompt`), so a
student trains on exactly what `inference.py --method_name cot` will send it. A completion enters only when
its final answer, read by eval's extractor, is the answer its solution recorded and (for math and multiple
choice) grades correct against the reference again.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from distill.labeled import BuildDataError, LabeledQuestion
from eval.grading import answer_key, extract_answer

RULE_GRADED_TASKS = ("math", "multiple_choice")  # short answers keep the judge's verdict (often an LLM's)

# Why a solution or a rendered completion did not become an example; the stats count each.
NO_VERDICT = "no_verdict"
INCORRECT = "incorrect"
TRUNCATED = "truncated"
EMPTY_TEXT = "empty_text"
NO_FINAL_ANSWER = "no_final_answer"
ANSWER_MISMATCH = "answer_mismatch"
REGRADE_INCORRECT = "regrade_incorrect"


def cot_system_prompt(cot_config_name: str = "config_main") -> str | None:
    """The system message of the cot config `inference.py --method_config_name` would load (None: none)."""
    from methods.base import ConfigError
    from methods.cot.cot import cot_system_message

    try:
        return cot_system_message(cot_config_name)
    except ConfigError as error:
        raise BuildDataError(f"--cot_config: {error}") from None


def cot_messages(question: LabeledQuestion, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The messages `cot` sends for this question."""
    from methods.cot.cot import cot_messages as messages_of

    return messages_of(question.sample(), question.task_type, system_prompt)


def verdict_reason(is_correct: bool | None, truncated: bool) -> str | None:
    """Why a judged solution cannot be a target at all (None: it was judged correct and is whole)."""
    if truncated:
        return TRUNCATED
    if is_correct is None:
        return NO_VERDICT
    if not is_correct:
        return INCORRECT
    return None


@dataclass(frozen=True)
class CompletionCheck:
    """One completion text to check against its question's reference and its solution's recorded answer."""

    question: LabeledQuestion
    text: str
    recorded_answer: str | None


def _extract(check: CompletionCheck) -> str | None:
    return extract_answer(check.text, check.question.task_type, choices=check.question.record.get("choices"))


def check_completions(checks: Sequence[CompletionCheck], judge: Any) -> list[str | None]:
    """For each completion, None when it may be a target, else the reason it may not.

    `judge` is a `labeling.rule_judge.RuleJudge`: math pairs are graded together (and once per distinct pair).
    """
    from labeling.judge import JudgeItem

    reasons: list[str | None] = [None] * len(checks)
    to_grade: list[int] = []
    items = []
    for index, check in enumerate(checks):
        task_type = check.question.task_type
        extracted = _extract(check) if check.text.strip() else None
        if not check.text.strip():
            reasons[index] = EMPTY_TEXT
        elif extracted is None or not str(extracted).strip():
            reasons[index] = NO_FINAL_ANSWER
        elif check.recorded_answer is not None and \
                answer_key(extracted, task_type) != answer_key(check.recorded_answer, task_type):
            reasons[index] = ANSWER_MISMATCH
        elif task_type in RULE_GRADED_TASKS:
            record = check.question.record
            to_grade.append(index)
            items.append(JudgeItem(query=record["query"], gt=record["gt"], candidate=check.text, answer=extracted,
                                   task_type=task_type, choices=record.get("choices")))
    if items:
        for index, verdict in zip(to_grade, judge.judge_many_sync(items)):
            if not verdict.is_correct:
                reasons[index] = REGRADE_INCORRECT
    return reasons


def example_row(example_id: str, prompt: list[dict[str, str]], completion: str, meta: dict[str, Any]) -> dict[str, Any]:
    """One row in TRL's conversational prompt-completion format (loss on the completion only)."""
    return {"id": example_id, "prompt": prompt, "completion": [{"role": "assistant", "content": completion}],
            "meta": meta}


__all__ = ["ANSWER_MISMATCH", "EMPTY_TEXT", "INCORRECT", "NO_FINAL_ANSWER", "NO_VERDICT", "REGRADE_INCORRECT",
           "RULE_GRADED_TASKS", "TRUNCATED", "CompletionCheck", "check_completions", "cot_messages",
           "cot_system_prompt", "example_row", "verdict_reason"]
