"""Multiple-choice answers: the option letter a response finally chooses, and its grade."""
from __future__ import annotations

import re
import string
from collections.abc import Sequence

from eval.grading import (
    REASON_NO_ANSWER,
    REASON_NO_REFERENCE,
    REASON_NOT_EQUAL,
    REASON_STRING_MATCH,
    Grade,
    normalize_text,
)


def _choice_patterns(letters: str) -> list[str]:
    # Ordered from the most explicit statement of an answer to the loosest; the last match of the
    # first pattern that matches wins, since models restate options before concluding.
    # A lower-case letter counts only where it cannot be an English word ("a" is an article).
    any_case = f"[{letters}{letters.lower()}]"
    upper = f"[{letters}]"
    lead = r"(?i:answer)\s*(?i:is|:|=)?\s*(?:\*\*)?\s*:?\s*(?i:option|choice)?\s*"
    not_word = r"(?![A-Za-z0-9'])"
    return [
        rf"\\boxed\{{\s*(?:\\text(?:bf)?\{{)?\s*\(?({any_case})\)?\s*\}}?\s*\}}",
        rf"{lead}\(({any_case})\)",
        rf"{lead}({upper}){not_word}",
        rf"{lead}({any_case})(?=\s*(?:[.):,*]|$))",
        rf"(?i:option|choice)\s*\(?({upper})\)?{not_word}",
        rf"(?i:option|choice)\s*\(?({any_case})\)?(?=\s*(?:[.):,]|$|\s+is\b))",
        rf"\b({upper})\)?\s+(?i:is\s+(?:the\s+)?(?:correct|right|best))",
        rf"^\s*\**\(?({upper})[\).:]",
        rf"\(({any_case})\)",
    ]


def extract_choice_letter(text: str, num_choices: int = 4, *, choices: Sequence[str] | None = None) -> str | None:
    """Multiple-choice letter from phrasings like "Answer: (B)", "the answer is c.", "\\boxed{D}", "B) ...".

    When `choices` (the option texts) are given and no letter is found, an answer stated as the text of
    exactly one option ("The answer is Paracetamol") maps to that option's letter.
    """
    if not text:
        return None
    letters = string.ascii_uppercase[:num_choices]
    for pattern in _choice_patterns(letters):
        found = re.findall(pattern, text, flags=re.MULTILINE)
        if found:
            return found[-1].upper()
    if choices:
        letter = _letter_from_option_text(text, choices[:num_choices])
        if letter:
            return letter
    # A bare capital letter standing alone at the end of a clause ("So, B." / "B").
    bare = re.findall(rf"(?<![A-Za-z0-9'])([{letters}])(?=\s*(?:[.)\]!,]|$))", text.strip(), flags=re.MULTILINE)
    return bare[-1] if bare else None


def _letter_from_option_text(text: str, choices: Sequence[str]) -> str | None:
    stated = re.findall(r"answer\s*(?:is|:)\s*(.+)", text, flags=re.IGNORECASE)
    target = normalize_text(stated[-1] if stated else text)
    hits = [i for i, c in enumerate(choices) if normalize_text(str(c)) and
            re.search(rf"\b{re.escape(normalize_text(str(c)))}\b", target)]
    if len(hits) == 1:
        return string.ascii_uppercase[hits[0]]
    return None


def grade_choice(pred: str | None, gt: str | None) -> Grade:
    """A multiple-choice letter against the reference letter (both already extracted)."""
    if gt is None or not str(gt).strip():
        return Grade(False, REASON_NO_REFERENCE)
    if pred is None or not str(pred).strip():
        return Grade(False, REASON_NO_ANSWER)
    correct = str(pred).strip().upper() == str(gt).strip().upper()
    return Grade(correct, REASON_STRING_MATCH if correct else REASON_NOT_EQUAL)
