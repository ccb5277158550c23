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
# A mixed number ("1 1/2") is one number, not 1 followed by 1/2.
NUMBER = r"-?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?: \d+/\d+(?![\d.])|(?:\.\d+)?(?:/\d+)?)|-?\.\d+"

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
_EMPTY_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{\s*\}")
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
    while text.startswith(('\\"', '"', "'", "`"), pos):
        pos += 2 if text.startswith('\\"', pos) else 1
    span = _span_at(text, pos)
    if span:
        return _joined_spans(text, span)
    match = re.compile(r"(.+?)(?=\.\s|\.?\s*$|\n)", re.MULTILINE).match(text, pos)
    if not match:
        return None
    value = _main_value(match.group(1).strip().strip("*").strip())
    if value and _EMPTY_BOX.search(value):
        return None  # "The answer is within \\boxed{}.": the prompt's instruction echoed, not an answer
    return (value, match.end()) if value else None


def _word_count(value: str) -> int:
    return len(_WORD.findall(re.sub(r"\$[^$]*\$|\\\(.*?\\\)", " ", value)))


def _joined_spans(text: str, first: tuple[str, int]) -> tuple[str, int]:
    """"$12$ and $13$", "$x=1$, $x=2$": spans joined by and/or/commas state one answer together."""
    values, end = [first[0]], first[1]
    while True:
        joiner = re.compile(r"\s*(?:,|,?\s*and|,?\s*or)\s*").match(text, end)
        following = _span_at(text, joiner.end()) if joiner else None
        if not following:
            return ", ".join(values), end
        values.append(following[0])
        end = following[1]


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
    """`2 + 3 = 5 = 5` -> `5`: of a chain of equalities the last side is the result; a single equation
    (`x = 5`, `x^2/16 + y^2/12 = 1/4`) may itself be the answer and is kept."""
    sides, depth, start = [], 0, 0
    for i, ch in enumerate(latex):
        depth += {"{": 1, "}": -1, "(": 1, ")": -1}.get(ch, 0)
        if ch == "=" and depth == 0 and latex[i - 1:i] not in ("<", ">", "!", "\\") and latex[i + 1:i + 2] != "=":
            sides.append(latex[start:i])
            start = i + 1
    sides.append(latex[start:])
    if len(sides) < 2 or re.search(r"\\begin\{|[,;]", latex):
        return latex
    # "x = 5" and "x^2/16 + y^2/12 = 1/4" may be answers as written; "1/2 = 10/9"-like chains with no
    # variable on the left, or three or more sides, state their result last.
    if len(sides) == 2 and re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", sides[0])):
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
    for match in re.finditer(rf"(?<![A-Za-z_])(?:{NUMBER})", text):  # not the 2 of "AZYUK2A"
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
    if _is_bare_expression(text):
        return _last_equation_side(_strip_delimiters(text))
    return _rightmost_math(text)


def _is_bare_expression(text: str) -> bool:
    """A response that is only an answer ("\\frac{10}{9}", "4 4/9", "(x-2)(x+2)", "28%"), not prose
    ("Special matrix: $...$") and not a run of separate numbers ("4 4/9 2", where the last one is meant)."""
    text = text.strip()
    if len(text) > 200 or re.search(r"[.!?]\s+\w", text) or ("\n" in text and "\\begin{" not in text):
        return False
    words = {w.lower() for w in _WORD.findall(re.sub(r"\\(?:begin|end)\{[^{}]*\}|\\[A-Za-z]+", " ", text))}
    if words - {"and", "or", "percent"}:
        return False
    return not (re.fullmatch(r"[\d/.\s]+", text) and len(text.split()) > 2)


def _strip_delimiters(text: str) -> str:
    text = text.strip().rstrip(".").strip()
    span = _span_at(text, 0)
    return span[0] if span and span[1] == len(text) else text
