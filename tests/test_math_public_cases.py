"""Math answer equivalence on public cases: the grader must agree with the suites' labels (issue 7).

tests/data/math_cases.jsonl holds one case a line: `gt` (the reference answer as a dataset stores it),
`response` (the model text the suite feeds in, or the suite's bare prediction stated the way models state
answers; `source` says when it was wrapped), `expected` (the suite's label) and `source`, the public suite
and test it comes from: huggingface/Math-Verify (tests/test_all.py, test_yujianll.py,
test_mixed_number_extraction.py, test_failed_latex_span.py), MARIO-Math-Reasoning/MARIO_EVAL
(math_evaluation/tests/test_is_equiv.py), NVIDIA/NeMo-Skills (tests/test_math_equal.py, both argument
orders), EleutherAI/lm-evaluation-harness (minerva_math few-shot solutions and normalize_final_answer rules)
and hendrycks/math (modeling/math_equivalence_test.py and the _strip_string rules), plus the failure classes
listed in issue 7 (source "issue 7 (<class>)").

Left out on purpose: suite cases whose label depends on a library setting rather than on the mathematics
(math-verify's inline-LaTeX line-break rule, its reading of "11 6/6" as no number, decimal commas such as
"1,22" = 1.22, a tab escape in test_symbols, golds that are no answer such as "1 = \\zzz = x = 0"), cases
where two suites disagree (hendrycks/math treats "10, 4, -2" and "4, 10, -2" as different, MARIO_EVAL treats
reordered lists as equal; MARIO's is kept) and MARIO's [1,+inf) = [2^(1/2^1000), inf), exact values that are
not equal.

The cases are graded in-process by the path `python -m eval.math_eval` uses (`score_math_records` on
InferenceRecord objects). `python scripts/bench_math_cases.py` prints the same figure through the CLI.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from eval.common import InferenceRecord
from eval.math_eval import score_math_records

CASES_PATH = Path(__file__).resolve().parent / "data" / "math_cases.jsonl"
TARGET = 0.97
SOURCES = ("huggingface/Math-Verify", "MARIO-Math-Reasoning/MARIO_EVAL", "NVIDIA/NeMo-Skills",
           "EleutherAI/lm-evaluation-harness", "hendrycks/math", "issue 7")


def _load_cases() -> list[dict]:
    with CASES_PATH.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


CASES = _load_cases()
ISSUE_CASES = [c for c in CASES if c["source"].startswith("issue 7")]


@functools.lru_cache(maxsize=1)
def _graded() -> dict[str, dict]:
    """{case id: scores row}, graded once for the whole module (2 worker processes)."""
    records = [InferenceRecord(data={"id": c["id"], "query": "", "gt": c["gt"], "response": c["response"],
                                     "answer": None, "trajectory": [], "token_stats": {}},
                               path=CASES_PATH, line=n) for n, c in enumerate(CASES, start=1)]
    # A generous limit: a loaded CI machine must not turn slow symbolic checks into timeouts.
    rows = score_math_records(records, timeout_s=30.0, num_workers=2)
    return {row["id"]: row for row in rows}


def _describe(case: dict, row: dict) -> str:
    response = " ".join(case["response"].split())
    if len(response) > 140:
        response = "..." + response[-137:]
    return (f"{case['id']} [{case['source']}] expected={case['expected']} gt={case['gt']!r} "
            f"prediction={row.get('prediction')!r} reason={row.get('reason')}\n    response: {response}")


def test_cases_file_is_well_formed():
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert 400 <= len(CASES) <= 800
    for case in CASES:
        assert set(case) >= {"id", "source", "gt", "response", "expected"}, case
        assert isinstance(case["expected"], bool) and case["gt"].strip() and case["response"].strip(), case
        assert case["source"].startswith(SOURCES), case["source"]
    for source in SOURCES:
        assert any(c["source"].startswith(source) for c in CASES), f"no case from {source}"
    assert any(not c["expected"] for c in CASES), "the negative cases catch false positives"


def test_agreement_with_public_suites():
    rows = _graded()
    disagreements = [_describe(c, rows[c["id"]]) for c in CASES if rows[c["id"]]["correct"] != c["expected"]]
    agreement = 1 - len(disagreements) / len(CASES)
    assert agreement >= TARGET, (f"agreement {agreement:.3f} < {TARGET} on {len(CASES)} public cases; "
                                 f"{len(disagreements)} disagree:\n" + "\n".join(disagreements))


@pytest.mark.parametrize("case", ISSUE_CASES, ids=[c["id"] for c in ISSUE_CASES])
def test_issue_7_case(case):
    row = _graded()[case["id"]]
    assert row["correct"] == case["expected"], _describe(case, row)
