"""One home for answer extraction and answer comparison, reused by methods, labelling and rewards."""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Iterable, Sequence

_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?|-?\.\d+"


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), nested braces included."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    if not starts:
        return None
    start = starts[-1]
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i].strip()
    return None  # unbalanced: the model was cut off inside the box


def extract_math_answer(text: str) -> str | None:
    """Final math answer: last \\boxed{}, else "answer is X", else "#### X", else the last number."""
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed:
        return boxed
    m = re.findall(r"answer\s*(?:is|:)\s*[:\s]*\$?([^\n$]+?)\$?\s*(?:\.\s|\.?$|\n)", text, flags=re.I)
    if m:
        return m[-1].strip().rstrip(".").strip()
    m = re.findall(r"####\s*([^\n]+)", text)
    if m:
        return m[-1].strip()
    numbers = re.findall(_NUMBER, text)
    return numbers[-1].replace("$", "").rstrip(".") if numbers else None


def extract_choice_letter(text: str, num_choices: int = 4) -> str | None:
    """Multiple-choice letter from phrasings like "Answer: (B)", "the answer is c", "\\boxed{D}", "B."."""
    if not text:
        return None
    letters = string.ascii_uppercase[:num_choices]
    cls = f"[{letters}{letters.lower()}]"
    patterns = [
        rf"\\boxed\{{\s*\(?({cls})\)?\s*\}}",
        rf"answer\s*(?:is|:)?\s*(?:option\s*)?[:\s]*\(?({cls})\)?(?![a-zA-Z])",
        rf"(?:option|choice)\s*\(?({cls})\)?(?![a-zA-Z])",
        rf"^\s*\(?({cls})[\).:](?:\s|$)",
        rf"\(({cls})\)",
    ]
    for pattern in patterns:
        found = re.findall(pattern, text, flags=re.I | re.M)
        if found:
            return found[-1].upper()
    bare = re.findall(rf"(?<![A-Za-z])([{letters}])(?![A-Za-z])", text)
    return bare[-1] if bare else None


def extract_short_answer(text: str) -> str | None:
    """Short text answer: "Answer: ..." / "answer is ..." when given, else the whole response."""
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed:
        return boxed
    m = re.findall(r"(?:final answer|answer)\s*(?:is|:)\s*(.+)", text, flags=re.I)
    if m:
        return m[-1].strip()
    return text.strip()


def extract_answer(text: str, task_type: str, num_choices: int = 4) -> str | None:
    if task_type == "math":
        return extract_math_answer(text)
    if task_type == "multiple_choice":
        return extract_choice_letter(text, num_choices)
    if task_type == "short_answer":
        return extract_short_answer(text)
    raise ValueError(f"unknown task type {task_type!r}")


def normalize_math(answer: str) -> str:
    """A canonical string for voting: LaTeX wrappers, spacing, thousands separators, trailing zeros."""
    s = answer.strip().strip("$").strip()
    s = re.sub(r"\\text\{\s*([^}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:left|right|!|,|;|:)", "", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("^\\circ", "").replace("°", "")
    s = re.sub(r"^[a-zA-Z]\s*=\s*", "", s)  # "x = 3" -> "3"
    s = s.replace(" ", "").rstrip(".")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    if re.fullmatch(r"-?\d+\.\d+", s):
        s = s.rstrip("0").rstrip(".")
    return s


def normalize_text(answer: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation, no articles, single spaces."""
    s = answer.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def answer_key(answer: str | None, task_type: str) -> str | None:
    """The form under which answers are counted as the same vote."""
    if answer is None or not str(answer).strip():
        return None
    if task_type == "math":
        return normalize_math(str(answer))
    if task_type == "multiple_choice":
        return str(answer).strip().upper()
    return normalize_text(str(answer))


def majority_vote(answers: Sequence[str | None], task_type: str) -> str | None:
    """Most common answer by `answer_key`; ties go to the answer seen first; None if no answer at all.

    Returns the first original answer string of the winning group, so what is reported is what an
    agent wrote.
    """
    keyed = [(answer_key(a, task_type), a) for a in answers]
    keyed = [(k, a) for k, a in keyed if k is not None]
    if not keyed:
        return None
    counts = Counter(k for k, _ in keyed)
    best = max(counts.values())
    for key, original in keyed:  # first-seen order breaks ties deterministically
        if counts[key] == best:
            return original
    return None


def vote_counts(answers: Iterable[str | None], task_type: str) -> dict[str, int]:
    return dict(Counter(k for k in (answer_key(a, task_type) for a in answers) if k is not None))
