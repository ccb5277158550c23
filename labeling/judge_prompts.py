"""The LLM judge's prompt: does a candidate's final answer match the reference? One word back, true or false.

The context comes first, so every solution of one record shares the longest prompt prefix (vLLM computes
it once); the question, its options, the reference and the candidate follow, always whole.
"""
from __future__ import annotations

import string

from labeling.judge import JudgeItem

VERDICT_OPTIONS = ("true", "false")

SYSTEM_PROMPT = (
    "You are a strict grader. You decide whether the final answer of a candidate solution matches the "
    "reference answer to a question. You reply with exactly one word: true or false."
)

# What counts as a match, per task type (data.schema.TASK_TYPES).
MATCH_RULES = {
    "math": "Judge the final answer only, not the reasoning. Mathematically equivalent forms of the same value "
            "match (for example 1/2, 0.5 and \\frac{1}{2}); a different value does not.",
    "multiple_choice": "The final answer matches when it picks the same option as the reference, by its letter "
                       "or by the option's text.",
    "short_answer": "The final answer matches when it states the same information as the reference; the wording "
                    "may differ, but a missing, extra or different key fact does not match.",
}
SEVERAL_REFERENCES = "Several reference answers are given: matching any one of them is enough."
NO_FINAL_ANSWER = "(not marked: take the answer the solution ends with; if it states none, it does not match)"
QUESTION_PROMPT = "Does the candidate's final answer match the reference answer? Reply with one word: true or false."


def cut_marker(omitted: int, unit: str) -> str:
    """What stands in the context where its middle was cut out."""
    return f"\n\n[... {omitted} {unit} of the context omitted here ...]\n\n"


def format_options(choices: list[str]) -> str:
    """Lettered options, as agents saw them (data.task_prompts.format_question)."""
    return "\n".join(f"({string.ascii_uppercase[i]}) {choice}" for i, choice in enumerate(choices))


def judge_user_prompt(item: JudgeItem, context: str | None) -> str:
    """The user message for one item; `context` is the item's context as it fits the judge (cut or whole)."""
    parts = []
    if item.context:
        parts.append(f"Context:\n{context or ''}")
    parts.append(f"Question:\n{item.query}")
    if item.choices:
        parts.append(f"Options:\n{format_options(item.choices)}")
    references = [item.gt] if isinstance(item.gt, str) else list(item.gt)
    if len(references) == 1:
        parts.append(f"Reference answer:\n{references[0]}")
    else:
        parts.append("Reference answers:\n" + "\n".join(f"- {reference}" for reference in references))
    parts.append(f"Candidate solution:\n{item.candidate}")
    answer = item.answer if item.answer is not None and item.answer.strip() else NO_FINAL_ANSWER
    parts.append(f"Candidate's final answer:\n{answer}")
    rules = [MATCH_RULES.get(item.task_type, MATCH_RULES["short_answer"])]
    if len(references) > 1:
        rules.append(SEVERAL_REFERENCES)
    parts.append(" ".join(rules) + "\n" + QUESTION_PROMPT)
    return "\n\n".join(parts)


def judge_messages(item: JudgeItem, context: str | None) -> list[dict[str, str]]:
    """The chat the judge model answers (its chat template is applied by the engine)."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": judge_user_prompt(item, context)}]
