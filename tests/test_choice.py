"""Multiple-choice letter extraction and grading (eval.choice)."""
import pytest

from eval.choice import extract_choice_letter, grade_choice
from eval.grading import extract_answer

# ---- multiple choice ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("The answer is (B).", "B"),
    ("the answer is c.", "C"),
    ("Answer: D", "D"),
    ("**Answer:** A", "A"),
    ("The correct answer is: (c) Vitamin C", "C"),
    ("I think option B is the best fit.", "B"),
    ("After reviewing, choice (d) is right.", "D"),
    ("Therefore, \\boxed{C}", "C"),
    ("\\boxed{\\text{B}}", "B"),
    ("B) Paracetamol", "B"),
    ("Let's check (A) and (B). The answer is (D).", "D"),
    ("C is the correct option here", "C"),
    ("So, B.", "B"),
    ("A", "A"),
    ("First I thought A. But the answer is B because of the liver.", "B"),
])
def test_extract_choice_letter(text, expected):
    assert extract_choice_letter(text) == expected


def test_choice_letter_does_not_read_articles_as_answers():
    assert extract_choice_letter("the answer is a vitamin deficiency") is None
    assert extract_choice_letter("A patient presents with fever and a rash.") is None


def test_choice_letter_from_option_text_when_choices_given():
    choices = ["Aspirin", "Paracetamol", "Ibuprofen", "Morphine"]
    assert extract_choice_letter("The answer is Paracetamol.", choices=choices) == "B"
    assert extract_choice_letter("The answer is Paracetamol.") is None


def test_choice_letter_respects_number_of_choices():
    assert extract_choice_letter("The answer is (E).", num_choices=4) is None
    assert extract_choice_letter("The answer is (E).", num_choices=5) == "E"
    assert extract_answer("Answer: (b)", "multiple_choice") == "B"


def test_grade_choice():
    assert grade_choice("b", "B").correct
    assert not grade_choice("A", "B").correct and grade_choice("A", "B").reason == "not_equal"
    assert grade_choice(None, "B").reason == "no_answer"
