"""How answers are written in model output and reference solutions: the parsers every layer shares.

It sits in `data/` because dataset loaders read reference answers with it (MATH's `\\boxed{}`) and
evaluation reads predictions with it; neither should import the other for that.
"""
from __future__ import annotations

import re


def balanced_group_end(text: str, start: int) -> int | None:
    """Index of the `}` closing the group whose content starts at `start` (after its `{`)."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), nested braces included; `\\boxed 5` too."""
    matches = list(re.finditer(r"\\(?:boxed|fbox)\s*(\{|\s+(?=[^\s{]))", text))
    if not matches:
        return None
    last = matches[-1]
    if last.group(1) != "{":
        bare = re.match(r"[^\s$]+", text[last.end():])
        return bare.group(0) if bare else None
    end = balanced_group_end(text, last.end())
    if end is None:
        return None  # unbalanced: the model was cut off inside the box
    return text[last.end():end].strip()
