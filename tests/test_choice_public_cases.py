"""Multiple-choice extraction against public cases (issue 7, part 2).

tests/data/choice_cases.jsonl holds responses in the answer formats of public suites, each naming its source:
lighteval (tests/metrics/test_extractive_match.py, IndicesExtractionConfig formats), lm-evaluation-harness
(GPQA / MMLU / BBH CoT "The answer is (X)", MMLU-Pro's `answer is \\(?([A-J])\\)?`, MultiChoiceRegexFilter),
OpenAI simple-evals (ANSWER_PATTERN_MULTICHOICE, MULTILINGUAL_ANSWER_REGEXES), MMLU-Pro's own extraction,
GPQA's baseline prompt, OpenCompass' option postprocessors, Meta's Llama evals ("The best answer is X"), and
responses that state no answer (expected null). About 30% are marked `heldout`: written down with the rest
before the extractor was changed and not looked at while changing it. The same figure through the CLI:
`python scripts/bench_choice_cases.py --root .`.
"""
import json
import string
from pathlib import Path

import pytest

from eval.choice import extract_choice_letter
from eval.common import InferenceRecord
from eval.medmcqa_eval import predicted_letter

CASES_FILE = Path(__file__).parent / "data" / "choice_cases.jsonl"
CASES = [json.loads(line) for line in CASES_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]


def _predict(case: dict) -> str | None:
    """The letter eval.medmcqa_eval scores for this case's response (as scripts/bench_choice_cases.py does)."""
    num_choices = case["num_choices"]
    choices = case["choices"] or [f"(text of option {letter} not shown)"
                                  for letter in string.ascii_uppercase[:num_choices]]
    data = {"id": case["id"], "gt": case["expected"] or "A", "choices": choices, "response": case["response"],
            "answer": None}
    return predicted_letter(InferenceRecord(data, CASES_FILE, 0), num_choices)


def test_case_file_is_well_formed():
    assert 150 <= len(CASES) <= 300
    assert len({case["id"] for case in CASES}) == len(CASES)
    for case in CASES:
        assert case["source"] and case["split"] in ("dev", "heldout")
        assert case["expected"] is None or case["expected"] in string.ascii_uppercase[:case["num_choices"]]
        assert case["choices"] is None or len(case["choices"]) == case["num_choices"]
    heldout = sum(case["split"] == "heldout" for case in CASES) / len(CASES)
    assert 0.25 <= heldout <= 0.35


def test_agreement_with_public_cases():
    misses = [(case["id"], case["expected"], prediction, case["response"][:80])
              for case in CASES if (prediction := _predict(case)) != case["expected"]]
    agreement = 1 - len(misses) / len(CASES)
    assert agreement >= 0.97, f"agreement {agreement:.3f}; misses: {misses}"


# The five examples issue 7 names as missed, each on its own.
@pytest.mark.parametrize("response, expected", [
    ('Answer: "C"', "C"),
    ("Answer: $B$", "B"),
    ("**Answer: B**", "B"),
    ("The answer is for sure D, it can't be A or B", "D"),
    ("(A) cannot be right ... That leaves (D).", "D"),
])
def test_issue_examples(response, expected):
    assert extract_choice_letter(response, 4) == expected
    assert any(case["response"] == response and case["expected"] == expected for case in CASES)
