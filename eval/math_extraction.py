"""The final answer a math response states, read the way a grader of the response should read it.

Rules, in order:
1. Explicit statements of an answer: `\\boxed{}` / `\\fbox{}`, "(final) answer is / : X", "#### X". The one
   the response makes last wins, so a closing "The final answer is $10,455$" beats an earlier
   intermediate `\\boxed{255}`, and a box after a retracted "the answer is 5" beats it.
2. Several boxes stated together at the end ("x = \\boxed{2} or x = \\boxed{-3}", "\\boxed{2}, \\boxed{3}")
   are one answer, joined with ", ".
3. A response with no explicit statement ends with its answer: the rightmost LaTeX span or number
   ("Therefore $x \\geq 5$ is the solution.").
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from data.answer_format import balanced_group_end

# A number as people write it: thousands separators, decimals, simple fractions, a leading $ sign.
NUMBER = r"-?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|-?\.\d+"

_BOX = re.compile(r"\\(?:boxed|fbox)\s*(\{|\s+(?=[^\s{]))")
# "answer is", "Answer:", "**Final Answer:**", "answer =" -- but not "to answer this" or "answers".
_ANSWER_LEAD = re.compile(r"\banswer\b(?:\s*\*\*)?\s*(?:is\b\s*:?|:|=)(?:\s*\*\*)?\s*", re.IGNORECASE)
_HASHES = re.compile(r"^\s*####\s*(.+?)\s*$", re.MULTILINE)
# Math delimiters, display before inline so `$$x$$` is not read as an empty `$` span.
_SPANS = (
    re.compile(r"(?<!\\)\$\$(.+?)(?<!\\)\$\$", re.DOTALL),
    re.compile(r"(?<![\\$])\$(?!\$)((?:\\\$|[^$\n])+?)(?<!\\)\$"),
    re.compile(r"\\\((.+?)\\\)", re.DOTALL),
    re.compile(r"\\\[(.+?)\\\]", re.DOTALL),
)
# What may stand between boxes that together state one answer: delimiters, commas, "and"/"or",
# spacing commands and a variable's name ("x = \boxed{2} or x = \boxed{-3}").
_BOX_JOINER = re.compile(
    r"(?:\s|[,;$]|\\[()\[\]]|\\q?quad\b|\\text\s*\{\s*(?:and|or)?\s*\}|\band\b|\bor\b|&"
    r"|[A-Za-z](?:_\{?\w+\}?)?\s*=)*"
)
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")


@dataclass(frozen=True)
class _Statement:
    start: int
    end: int
    value: str
    boxed: bool


def _boxes(text: str) -> list[_Statement]:
    found = []
    for match in _BOX.finditer(text):
        if match.group(1) != "{":
            bare = re.match(r"[^\s$]+", text[match.end():])
            if bare:
                found.append(_Statement(match.start(), match.end() + bare.end(), bare.group(0), True))
            continue
        close = balanced_group_end(text, match.end())
        if close is None:
            continue  # cut off inside the box: no answer was stated there
        value = text[match.end():close].strip()
        if value:
            found.append(_Statement(match.start(), close + 1, value, True))
    return found


def _span_at(text: str, pos: int) -> tuple[str, int] | None:
    """The content and end of a math span that starts exactly at `pos`."""
    for pattern in _SPANS:
        match = pattern.match(text, pos)
        if match:
            return match.group(1).strip(), match.end()
    return None


def _stated_value(text: str, pos: int) -> tuple[str, int] | None:
    """What follows an "answer is" at `pos`: a math span, or words up to the end of the sentence."""
    if text.startswith(("\\boxed", "\\fbox"), pos):
        return None  # the box itself is a statement, found by _boxes
    span = _span_at(text, pos)
    if span:
        return span
    match = re.compile(r"(.+?)(?=\.\s|\.?\s*$|\n)", re.MULTILINE).match(text, pos)
    if not match:
        return None
    value = _main_value(match.group(1).strip().strip("*").strip())
    return (value, match.end()) if value else None


def _word_count(value: str) -> int:
    return len(_WORD.findall(re.sub(r"\$[^$]*\$|\\\(.*?\\\)", " ", value)))


def _main_value(value: str) -> str | None:
    """A short answer ("5 apples", "Monday", "x = 3") as written; a sentence holding math ("there are
    12 students in total") reduced to its math; prose with no math at all is no answer."""
    value = re.split(r",\s+(?=which|because|since|so|as|and|but)\b|\s+(?:because|since|which)\b", value)[0].strip()
    if _word_count(value) < 3:
        return value
    if not re.search(r"\d|\$|\\\(", value):
        return None
    return _rightmost_math(value)


def _answer_statements(text: str) -> list[_Statement]:
    found = []
    for match in _ANSWER_LEAD.finditer(text):
        stated = _stated_value(text, match.end())
        if stated:
            found.append(_Statement(match.start(), stated[1], stated[0], False))
    for match in _HASHES.finditer(text):
        found.append(_Statement(match.start(), match.end(), match.group(1), False))
    return found


def _last_equation_side(latex: str) -> str:
    """`3^2 = 9` -> `9`; a single variable's value (`x = 5`) is kept for the normaliser to unwrap."""
    if re.search(r"\\begin\{|,|;", latex):
        return latex
    sides = re.split(r"(?<![<>!\\])=(?!=)", latex)
    if len(sides) < 2:
        return latex
    if len(sides) == 2 and re.fullmatch(r"\s*\\?[A-Za-z]+(?:_\{?\w+\}?)?\s*", sides[0]):
        return latex
    return sides[-1].strip()


def _rightmost_math(text: str) -> str | None:
    """The math span or number that ends last in `text` (a span wins over a number inside it)."""
    candidates: list[tuple[int, int, str]] = []
    for pattern in _SPANS:
        for match in pattern.finditer(text):
            content = match.group(1).strip()
            if content:
                candidates.append((match.end(), match.end() - match.start(), _last_equation_side(content)))
    for match in re.finditer(NUMBER, text):
        candidates.append((match.end(), match.end() - match.start(), match.group(0).replace("$", "")))
    if not candidates:
        return None
    return max(candidates, key=lambda c: (c[0], c[1]))[2]


def _join_final_boxes(boxes: list[_Statement], text: str) -> str:
    """The last box, with the boxes before it that are only separated from it by joiners."""
    group = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        between = text[box.end:group[0].start]
        if not _BOX_JOINER.fullmatch(between) or "\n\n" in between:
            break
        group.insert(0, box)
    return ", ".join(b.value for b in group)


def extract_math_answer(text: str | None) -> str | None:
    """The final answer a math response states (see the module docstring for the rules)."""
    if not text:
        return None
    boxes = _boxes(text)
    statements = boxes + _answer_statements(text)
    if statements:
        last = max(statements, key=lambda s: (s.start, s.boxed))
        if last.boxed:
            return _join_final_boxes([b for b in boxes if b.start <= last.start], text)
        inner_boxes = [b for b in boxes if last.start <= b.start < last.end]
        return inner_boxes[-1].value if inner_boxes else last.value
    return _rightmost_math(text)
