"""Multiple-choice letter extraction and grading (eval.choice)."""
import time

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


# Each of these failed before the stated final choice won over letters mentioned while reasoning (issue 7).
@pytest.mark.parametrize("text, num_choices, expected", [
    # the letter wrapped in quotes or markup
    ('Answer: "C"', 4, "C"),
    ("Answer: $B$", 4, "B"),
    ("Answer: \\(B\\)", 4, "B"),
    ("Answer: $\\text{D}$", 4, "D"),
    ("Answer: 'C'", 4, "C"),
    ("**Réponse : C**", 4, "C"),
    # the last statement wins over an earlier one, and over letters rejected around it
    ("The answer is (C) at first glance.\n**Answer: B**", 4, "B"),
    ("The answer is for sure D, it can't be A or B", 4, "D"),
    ("(A) cannot be right ... That leaves (D).", 4, "D"),
    ("Option A is wrong, option B is wrong and option C is wrong, so D.", 4, "D"),
    ("I choose B over A.", 4, "B"),
    ("(A) is not correct. (C) fits.", 4, "C"),
    ("The answer is (b) not (c)", 4, "B"),
    ("réponse est C non A", 4, "C"),
    ("答案是 C，而不是 A。", 4, "C"),
    ("B不是 A", 4, "B"),
    # "I" the pronoun is not option I; "option" as the answer word
    ("Answer: I think it's (D).", 10, "D"),
    ("The correct option is J: 1.2 x 10^5 Pa.", 10, "J"),
    # other languages' answer phrasings (OpenCompass, lighteval)
    ("正解はBです。", 4, "B"),
    ("这道题考查细胞呼吸。故选C。", 4, "C"),
    ("分析可知A错误，B错误，C是正确的。", 4, "C"),
    # a reasoning model's reply after its thinking
    ("<think>It is not A.</think>\n<answer>B</answer>", 4, "B"),
    # a letter only examined, in a response cut off before it answers
    ("Let's think step by step. First, consider option A. It describes", 4, None),
    # a unit after a number is not an option letter
    ("The calculation gives 42 J, but none of the listed values match.", 10, None),
])
def test_choice_letter_stated_final_choice_wins(text, num_choices, expected):
    assert extract_choice_letter(text, num_choices) == expected


def test_choice_option_text_ignores_rejected_and_questioned_options():
    organelles = ["mitochondria", "ribosome", "nucleus", "Golgi apparatus"]
    assert extract_choice_letter("Proteins are synthesized on the ribosome, not in the nucleus.",
                                 choices=organelles) == "B"
    pressure = ["increase", "decrease", "remain the same", "cannot be determined"]
    assert extract_choice_letter("Does the pressure decrease? No: the pressure will increase.",
                                 choices=pressure) == "A"


def test_choice_letter_is_fast_on_long_runs_of_spaces_and_markup():
    # Adjacent optional runs in the answer pattern once made this take minutes (regex backtracking);
    # linear matching takes milliseconds, so the bound is loose enough for a loaded 2-core machine.
    start = time.perf_counter()
    for text in ("Answer:" + " " * 20000 + "!", "Answer:" + "$" * 5000 + "*" * 5000, "I choose" + " " * 20000):
        assert extract_choice_letter(text, 10) is None
    assert time.perf_counter() - start < 30


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
