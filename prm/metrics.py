"""AUROC by ranks (no scikit-learn needed) and a bootstrap over questions for its interval."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=float)
    # Boundaries of runs of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return ranks


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve: the chance a random positive outscores a random negative (ties half).

    NaN scores are left out; NaN when only one class remains.
    """
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=int)
    keep = ~np.isnan(s)
    s, y = s[keep], y[keep]
    num_pos = int(y.sum())
    num_neg = len(y) - num_pos
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    ranks = _average_ranks(s)
    return float((ranks[y == 1].sum() - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg))


def cluster_bootstrap(groups: Sequence[tuple[np.ndarray, np.ndarray]],
                      statistic: Callable[[np.ndarray, np.ndarray], float], confidence: float = 0.95,
                      num_resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of `statistic(scores, labels)` resampling whole groups (questions).

    Steps of one solution, and solutions of one question, are not independent; resampling questions
    keeps that correlation in the interval instead of pretending every step is a fresh sample.
    """
    if not groups:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_resamples):
        picks = rng.integers(0, len(groups), size=len(groups))
        scores = np.concatenate([groups[i][0] for i in picks])
        labels = np.concatenate([groups[i][1] for i in picks])
        value = statistic(scores, labels)
        if not np.isnan(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


__all__ = ["auroc", "cluster_bootstrap"]
