"""Split a solution into reasoning steps: one splitter for label.py, PRM training and the PAD reward.

The paper's repository splits on blank lines. A solution written as one paragraph falls back to its
numbered steps ("1.", "2)", "Step 3:"), then to its lines. A fenced code block is never cut, a step is
never empty, and every non-blank character of the text lands in exactly one step, in order.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = re.compile(r"^\s*(?:```|~~~)")
# A line that opens a numbered step: "1.", "2)", "(3)", "Step 4:", "**Step 5.**", "### Step 6", "- Step 7 -".
# "1.5 kg" and "3.14" are not markers: the number must be followed by "." or ")" and then a space or the end.
_NUMBERED_LINE = re.compile(
    r"^[ \t#>*_\-]*(?:step[ \t]*\d+(?=[\s:.)\-\u2013\u2014*]|$)|\(?\d{1,3}[.)](?=\s|$))",
    re.IGNORECASE,
)
# "... so x = 2. Step 2: ..." inside a line: mid-line, only the word "Step" with a number marks a step.
_INLINE_STEP = re.compile(r"(?<=\S)[ \t]+(?=(?:\*\*)?step[ \t]*\d+[ \t]*[:.)])", re.IGNORECASE)


@dataclass
class _Unit:
    text: str  # one line, or a whole fenced code block
    fenced: bool


def _units(text: str) -> list[_Unit]:
    """The text as lines, with each fenced code block (fences included) kept as one unit."""
    units: list[_Unit] = []
    block: list[str] | None = None
    for line in text.split("\n"):
        if block is not None:
            block.append(line)
            if _FENCE.match(line):
                units.append(_Unit("\n".join(block), True))
                block = None
        elif _FENCE.match(line):
            block = [line]
        else:
            units.append(_Unit(line, False))
    if block is not None:  # an unclosed fence runs to the end
        units.append(_Unit("\n".join(block), True))
    return units


def _join(chunks: list[list[_Unit]]) -> list[str]:
    steps = ("\n".join(unit.text for unit in chunk).strip() for chunk in chunks)
    return [step for step in steps if step]


def _paragraphs(units: list[_Unit]) -> list[str]:
    chunks: list[list[_Unit]] = [[]]
    for unit in units:
        if not unit.fenced and not unit.text.strip():
            chunks.append([])
        else:
            chunks[-1].append(unit)
    return _join(chunks)


def _numbered(units: list[_Unit]) -> list[str]:
    chunks: list[list[_Unit]] = [[]]
    markers = 0
    for unit in units:
        if not unit.fenced and _NUMBERED_LINE.match(unit.text):
            markers += 1
            chunks.append([])
        chunks[-1].append(unit)
    return _join(chunks) if markers >= 2 else []


def _inline_numbered(units: list[_Unit]) -> list[str]:
    chunks: list[list[_Unit]] = [[]]
    for unit in units:
        parts = [unit.text] if unit.fenced else _INLINE_STEP.split(unit.text)
        chunks[-1].append(_Unit(parts[0], unit.fenced))
        for part in parts[1:]:
            chunks.append([_Unit(part, False)])
    return _join(chunks) if len(chunks) >= 2 else []


def _lines(units: list[_Unit]) -> list[str]:
    return _join([[unit] for unit in units])


def split_steps(text: str | None) -> list[str]:
    """The reasoning steps of `text`: blank-line paragraphs, else numbered steps, else lines; each stripped.

    A text with no break is one step; an empty or blank text has none.
    """
    if not text or not text.strip():
        return []
    units = _units(text.replace("\r\n", "\n").replace("\r", "\n"))
    for split in (_paragraphs, _numbered, _inline_numbered, _lines):
        steps = split(units)
        if len(steps) >= 2:
            return steps
    return [text.strip()]


__all__ = ["split_steps"]
