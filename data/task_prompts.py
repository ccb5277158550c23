"""How a question is shown to an agent and how it is asked to state its answer, per task type.

Every method and the eval CLIs' model mode build prompts on these functions, so answer extraction
(eval.grading) and the instructions agents receive always agree. It lives in `data/` because it is
about how a task is posed, below both methods and evaluation.
"""
from __future__ import annotations

import string

from data.schema import Sample

ANSWER_INSTRUCTIONS = {
    "math": "Reason step by step, and put your final answer within \\boxed{}.",
    "multiple_choice": "Reason step by step, then give the letter of the correct option as "
                       "\"The answer is (X)\".",
    "short_answer": "Answer concisely, and end with a line \"Answer: <your answer>\".",
}


def answer_instruction(task_type: str) -> str:
    try:
        return ANSWER_INSTRUCTIONS[task_type]
    except KeyError:
        raise ValueError(f"unknown task type {task_type!r}") from None


def format_question(sample: Sample) -> str:
    """The question text an agent sees: context (if any), the query, lettered options (if any)."""
    parts = []
    if sample.context:
        parts.append(f"Context:\n{sample.context}")
    parts.append(sample.query if not sample.context else f"Question: {sample.query}")
    if sample.choices:
        letters = string.ascii_uppercase
        parts.append("\n".join(f"({letters[i]}) {choice}" for i, choice in enumerate(sample.choices)))
    return "\n\n".join(parts)


def task_prompt(sample: Sample, task_type: str) -> str:
    """Question plus the answer-format instruction: the usual first user message of an agent."""
    return f"{format_question(sample)}\n\n{answer_instruction(task_type)}"
