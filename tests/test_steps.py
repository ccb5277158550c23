"""data/steps.py: split_steps, the one step splitter of label.py, PRM training and the PAD reward."""
from __future__ import annotations

import random
import re

import pytest

from data.steps import split_steps


def _visible(text: str) -> str:
    return re.sub(r"\s+", "", text)


# ---------------------------------------------------------------- blank-line paragraphs (the paper's rule)

def test_blank_lines_split_paragraphs():
    text = "First we add 2 and 3.\n\nThat gives 5.\n\nThe answer is \\boxed{5}."
    assert split_steps(text) == ["First we add 2 and 3.", "That gives 5.", "The answer is \\boxed{5}."]


def test_runs_of_blank_and_whitespace_only_lines_are_one_break():
    assert split_steps("a\n\n\n\nb\n  \t \nc\n\n") == ["a", "b", "c"]


def test_windows_and_old_mac_newlines():
    assert split_steps("a\r\n\r\nb\r\rc") == ["a", "b", "c"]


def test_a_paragraph_keeps_its_single_newlines():
    assert split_steps("x = 2\ny = 3\n\nso x + y = 5") == ["x = 2\ny = 3", "so x + y = 5"]


def test_paragraphs_win_over_numbered_steps():
    text = "1. add 2 and 3\n2. that is 5\n\nThe answer is 5."
    assert split_steps(text) == ["1. add 2 and 3\n2. that is 5", "The answer is 5."]


def test_steps_are_stripped_but_keep_inner_indentation():
    assert split_steps("  a\n    indented\n\n  b  ") == ["a\n    indented", "b"]


# ---------------------------------------------------------------- numbered steps (one paragraph)

@pytest.mark.parametrize("markers", [
    ["1.", "2.", "3."],
    ["1)", "2)", "3)"],
    ["(1)", "(2)", "(3)"],
    ["Step 1:", "Step 2:", "Step 3:"],
    ["step 1.", "step 2.", "step 3."],
    ["**Step 1:**", "**Step 2:**", "**Step 3:**"],
    ["### Step 1", "### Step 2", "### Step 3"],
    ["Step 1 -", "Step 2 -", "Step 3 -"],
])
def test_numbered_markers_split_one_paragraph(markers):
    text = "\n".join(f"{m} part {i}\nmore of part {i}" for i, m in enumerate(markers))
    assert split_steps(text) == [f"{m} part {i}\nmore of part {i}" for i, m in enumerate(markers)]


def test_text_before_the_first_numbered_step_is_its_own_step():
    text = "Let us solve it.\n1. Tom has 2 apples.\n2. He buys 3.\nSo he has 5."
    assert split_steps(text) == ["Let us solve it.", "1. Tom has 2 apples.", "2. He buys 3.\nSo he has 5."]


def test_decimals_at_line_start_are_not_step_markers():
    # No markers: single newlines split (each line a step), never "1." out of "1.5".
    assert split_steps("1.5 kg of flour\n2.25 kg of sugar\n3.14 is pi") == [
        "1.5 kg of flour", "2.25 kg of sugar", "3.14 is pi"]


def test_one_numbered_marker_is_not_a_list():
    assert split_steps("Note:\n1. only one item\nthen text") == ["Note:", "1. only one item", "then text"]


def test_inline_step_markers_split_a_single_line():
    text = "Step 1: 2 + 3 = 5. Step 2: 5 * 2 = 10. Step 3: the answer is 10."
    assert split_steps(text) == ["Step 1: 2 + 3 = 5.", "Step 2: 5 * 2 = 10.", "Step 3: the answer is 10."]


def test_the_word_step_without_a_number_does_not_split():
    assert split_steps("Each step matters. The next step is easy.") == ["Each step matters. The next step is easy."]


# ---------------------------------------------------------------- single newlines, no break, nothing

def test_single_newlines_are_the_last_fallback():
    assert split_steps("2 + 3 = 5\n5 * 2 = 10\nanswer: 10") == ["2 + 3 = 5", "5 * 2 = 10", "answer: 10"]


def test_text_with_no_break_is_one_step():
    assert split_steps("  The answer is 42.  ") == ["The answer is 42."]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\n", " \t\r\n ", None])
def test_empty_text_has_no_steps(text):
    assert split_steps(text) == []


# ---------------------------------------------------------------- code fences stay whole

def test_blank_lines_inside_a_code_fence_do_not_split():
    text = "We compute it:\n\n```python\nx = 2\n\ny = 3\nprint(x + y)\n```\n\nThe answer is 5."
    assert split_steps(text) == ["We compute it:", "```python\nx = 2\n\ny = 3\nprint(x + y)\n```", "The answer is 5."]


def test_numbered_lines_inside_a_fence_are_not_markers():
    text = "Code:\n```\n1. not a step\n2. not a step\n```\ndone"
    assert split_steps(text) == ["Code:", "```\n1. not a step\n2. not a step\n```", "done"]


def test_an_unclosed_fence_runs_to_the_end():
    assert split_steps("a\n\n```\nb\n\nc") == ["a", "```\nb\n\nc"]


# ---------------------------------------------------------------- properties over generated texts

_PIECES = ["2 + 3 = 5", "so x = 7.5", "1.", "2)", "Step 3:", "step", "```", "~~~", "\\boxed{5}", "\n", "\n\n",
           "\n \n", "  ", "\t", "\r\n", "(4)", "**Step 5:**", "###", "word", "-", "3.14"]


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice(_PIECES) + rng.choice(["", " ", "\n"]) for _ in range(rng.randint(0, 30)))


def test_properties_on_random_texts():
    rng = random.Random(0)
    for _ in range(3000):
        text = _random_text(rng)
        steps = split_steps(text)
        assert all(step and step == step.strip() for step in steps), (text, steps)  # never an empty step
        # Nothing lost, nothing repeated, order kept (only whitespace at the cuts may change).
        assert "".join(_visible(s) for s in steps) == _visible(text), (text, steps)
        assert (steps == []) == (not text.strip())
        # Stable: the steps joined by blank lines split back into the same steps.
        assert split_steps("\n\n".join(steps)) == steps, (text, steps)


def test_deterministic():
    text = "1. a\n2. b\n3. c"
    assert split_steps(text) == split_steps(text)
