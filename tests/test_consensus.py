"""The consensus rule of methods.consensus: majority vote for math and choices, the medoid for free text."""
from __future__ import annotations

import pytest

from eval.grading import majority_vote
from methods.consensus import (
    SIMILARITY_THRESHOLD,
    agreement_count,
    consensus_vote,
    mean_similarities,
    medoid_index,
    same_answer,
    uses_aggregator,
)

# Three paraphrases of one answer, the outlier first: a first-seen tie break would pick the outlier.
OUTLIER_FIRST = [
    "The marketing team wants a new logo",
    "The budget vote was delayed until March",
    "They delayed the budget vote until March",
    "Budget vote delayed until March",
]


def test_three_paraphrases_and_an_outlier_a_paraphrase_wins():
    vote = consensus_vote(OUTLIER_FIRST, "short_answer")
    assert vote.rule == "medoid" and vote.source == "medoid"
    assert vote.index in (1, 2, 3) and vote.answer == OUTLIER_FIRST[vote.index]
    assert vote.similarities[0] == 0.0  # the outlier shares no word with the others
    assert min(vote.similarities[1:]) > 0.5
    # What the methods did before: normalised-text majority, all distinct, first seen wins.
    assert majority_vote(OUTLIER_FIRST, "short_answer") == OUTLIER_FIRST[0]


def test_the_medoid_is_the_answer_closest_to_all_others():
    answers = ["Paris", "Paris, France", "It is Paris, the capital of France", "Lyon"]
    scores = mean_similarities(answers)
    assert medoid_index(answers) == max(range(4), key=lambda i: scores[i])
    assert consensus_vote(answers, "short_answer").answer == "Paris, France"


def test_missing_answers_are_skipped_and_ties_go_to_the_first():
    assert consensus_vote([None, "blue sky", None], "short_answer").index == 1
    assert consensus_vote([None, None], "short_answer").answer is None
    assert consensus_vote([None, None], "short_answer").response(["first text", "second"]) == "first text"
    two = consensus_vote(["the red car", "a blue boat"], "short_answer")  # equal scores: first seen
    assert two.index == 0
    assert mean_similarities(["alone", None]) == [0.0, None]
    assert mean_similarities([":", "Paris", "Paris"]) == [None, 1.0, 1.0]  # no words: no answer
    assert consensus_vote([":", "Your answer is", "Paris"], "short_answer").index == 1


def test_math_and_choices_keep_the_majority_vote():
    vote = consensus_vote(["3", "5", "5.0", None, "6"], "math")
    assert (vote.answer, vote.index, vote.rule, vote.source) == ("5", 1, "majority", "vote")
    assert vote.info() == {"vote_rule": "majority", "vote_index": 1}
    assert consensus_vote(["b", "A", "B"], "multiple_choice").answer == "b"
    assert consensus_vote([None], "math").index is None


def test_same_answer_by_key_or_by_similarity():
    assert same_answer("0.5", "\\frac{1}{2}", "math")
    assert not same_answer("2", "3", "math") and not same_answer(None, "3", "math")
    assert same_answer("Paris", "paris.", "short_answer")
    assert same_answer("budget vote delayed until March", "The budget vote was delayed until March",
                       "short_answer")
    assert not same_answer("Paris", "Lyon", "short_answer")
    assert SIMILARITY_THRESHOLD == 0.5  # the rule judge's --f1_threshold default, kept in step
    assert agreement_count(OUTLIER_FIRST, OUTLIER_FIRST[2], "short_answer") == 3
    assert agreement_count(["5", "5.0", "6", None], "5", "math") == 2


@pytest.mark.parametrize("setting,task_type,expected", [
    (None, "short_answer", True), (None, "math", False), (None, "multiple_choice", False),
    (True, "math", True), (False, "short_answer", False),
])
def test_aggregator_default_is_task_aware(setting, task_type, expected):
    assert uses_aggregator(setting, task_type) is expected
