"""One table and two plots for every run under a results folder.

    python -m eval.report --results_dir results --out reports/

Scans `<results_dir>/<dataset>/<model...>/<method>_infer.jsonl`, grades each run with the grader of its
dataset's task type, and writes `report.md`, `report.csv`, `accuracy_vs_tokens.png` (the cost/quality
frontier: score against tokens per question, one point per method and model) and `accuracy_by_method.png`.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from data.errors import DataError
from eval.common import (
    EvalError,
    InferenceRecord,
    cost_summary,
    finite_or_none,
    read_inference_records,
    run_cli,
    truncation_summary,
)
from eval.metrics import bootstrap_ci

# Summaries are judged by overlap, extractive answers by token F1 (what each dataset's papers report).
SHORT_ANSWER_METRIC = {"QMSum": "rougeL"}
DEFAULT_SHORT_ANSWER_METRIC = "f1"
METRIC_LABELS = {"accuracy": "accuracy", "f1": "token F1", "rougeL": "ROUGE-L"}


@dataclass
class RunSummary:
    """One row of the report: a (dataset, method, model) run, its score and its cost per question."""

    dataset: str
    method: str
    model: str
    task_type: str
    num_samples: int
    metric: str
    score: float
    ci_low: float
    ci_high: float
    llm_calls_per_question: float
    prompt_tokens_per_question: float
    completion_tokens_per_question: float
    latency_s_per_question: float
    num_failed: int
    file: str
    # Answers cut off by --model_max_tokens, over the `truncation_known` records that carry finish reasons
    # (None when no record does: files written before turns recorded `finish_reason`).
    num_truncated_answers: int | None = None
    num_records_with_truncated_turns: int | None = None
    truncation_known: int = 0

    @property
    def tokens_per_question(self) -> float:
        return self.prompt_tokens_per_question + self.completion_tokens_per_question


def find_runs(results_dir: Path) -> list[Path]:
    """Every merged inference file under `results_dir` (shard files are merged first, by merge_shards)."""
    return sorted(p for p in results_dir.rglob("*_infer.jsonl") if p.is_file())


def score_rows(records: Sequence[InferenceRecord], dataset: str, task_type: str, timeout_s: float,
                num_workers: int | None) -> tuple[str, list[float]]:
    if task_type == "math":
        from eval.math_eval import score_math_records

        rows = score_math_records(records, timeout_s=timeout_s, num_workers=num_workers)
        return "accuracy", [float(r["correct"]) for r in rows]
    if task_type == "multiple_choice":
        from eval.medmcqa_eval import score_choice_records

        return "accuracy", [float(r["correct"]) for r in score_choice_records(records)]
    from eval.short_answer_eval import score_short_answer_records

    metric = SHORT_ANSWER_METRIC.get(dataset, DEFAULT_SHORT_ANSWER_METRIC)
    return metric, [float(r[metric]) for r in score_short_answer_records(records)]


def summarize_run(path: Path, results_dir: Path, timeout_s: float = 5.0, num_workers: int | None = None) -> RunSummary:
    """Grade one inference file and measure its cost; the dataset is the first folder under results_dir."""
    rel = path.relative_to(results_dir)
    if len(rel.parts) < 3:
        raise EvalError(f"{path}: expected <results_dir>/<dataset>/<model>/<method>_infer.jsonl")
    summary, _ = grade_run(path, rel.parts[0], timeout_s, num_workers, default_method=rel.name.removesuffix(
        "_infer.jsonl"), default_model="/".join(rel.parts[1:-1]))
    return summary


def grade_run(path: Path, dataset: str, timeout_s: float = 5.0, num_workers: int | None = None,
              default_method: str = "", default_model: str = "") -> tuple[RunSummary, dict[str, float]]:
    """One run's summary and its per-question scores by sample id (for paired comparisons of runs)."""
    from data.registry import get_dataset_spec

    spec = get_dataset_spec(dataset)
    records = read_inference_records(path)
    first = records[0].data
    method = str(first.get("method") or default_method)
    model = str(first.get("model") or default_model)
    metric, values = score_rows(records, spec.name, spec.task_type, timeout_s, num_workers)
    estimate = bootstrap_ci(values)
    cost = cost_summary(records)
    summary = RunSummary(dataset=spec.name, method=method, model=model, task_type=spec.task_type,
                         num_samples=len(records), metric=metric, score=estimate.mean, ci_low=estimate.ci_low,
                         ci_high=estimate.ci_high, num_failed=sum(1 for r in records if r.failed), file=str(path),
                         **cost, **truncation_summary(records))
    return summary, {str(r.data.get("id")): v for r, v in zip(records, values, strict=True)}


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}"


def _num(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _truncated(run: RunSummary) -> str:
    """Truncated final answers: "3", "3 of 8" when only 8 records carry finish reasons, "n/a" when none does."""
    if run.num_truncated_answers is None or not run.truncation_known:
        return "n/a"
    if run.truncation_known < run.num_samples:
        return f"{run.num_truncated_answers} of {run.truncation_known}"
    return str(run.num_truncated_answers)


def markdown_table(runs: Sequence[RunSummary]) -> str:
    """The report table: score (%) with its 95% bootstrap CI, cost per question, failed and truncated answers."""
    header = ["Dataset", "Method", "Model", "N", "Metric", "Score % [95% CI]", "LLM calls/q", "Prompt tok/q",
              "Completion tok/q", "Latency s/q", "Failed", "Truncated"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] + ["---"] + ["---:"] * 7) + "|"]
    for r in runs:
        cells = [r.dataset, r.method, r.model, str(r.num_samples), METRIC_LABELS.get(r.metric, r.metric),
                 f"{_pct(r.score)} [{_pct(r.ci_low)}, {_pct(r.ci_high)}]", _num(r.llm_calls_per_question),
                 _num(r.prompt_tokens_per_question, 0), _num(r.completion_tokens_per_question, 0),
                 _num(r.latency_s_per_question, 2), str(r.num_failed), _truncated(r)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def write_csv(runs: Sequence[RunSummary], path: Path) -> None:
    """One row per run; a missing figure (no latency, unknown truncation) is an empty cell, never `nan`."""
    import csv

    fields = list(asdict(runs[0]).keys()) + ["tokens_per_question"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for run in runs:
            writer.writerow(finite_or_none({**asdict(run), "tokens_per_question": run.tokens_per_question}))


def _styles(runs: Sequence[RunSummary]) -> tuple[dict[str, Any], dict[str, str]]:
    import matplotlib

    methods = sorted({r.method for r in runs})
    models = sorted({r.model for r in runs})
    palette = matplotlib.colormaps["tab10"]
    colors = {m: palette(i % 10) for i, m in enumerate(methods)}
    marker_cycle = ["o", "s", "^", "D", "v", "P", "X", "*"]
    markers = {m: marker_cycle[i % len(marker_cycle)] for i, m in enumerate(models)}
    return colors, markers


def _grid(count: int) -> tuple[int, int]:
    cols = min(3, count)
    return math.ceil(count / cols), cols


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both cost (lower) and score (higher), by increasing cost."""
    frontier, best = [], -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            frontier.append((x, y))
            best = y
    return frontier


def _short_model(model: str) -> str:
    return model.rstrip("/").split("/")[-1]


def plot_accuracy_vs_tokens(runs: Sequence[RunSummary], path: Path) -> None:
    """Score against tokens per question, one panel per dataset, the Pareto frontier dashed."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    colors, markers = _styles(runs)
    datasets = sorted({r.dataset for r in runs})
    rows, cols = _grid(len(datasets))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols + 2.4, 4.0 * rows), squeeze=False)
    for ax, dataset in zip(axes.flat, datasets):
        mine = [r for r in runs if r.dataset == dataset and r.tokens_per_question > 0]
        for r in mine:
            y, low, high = 100 * r.score, 100 * r.ci_low, 100 * r.ci_high
            ax.errorbar(r.tokens_per_question, y, yerr=[[max(0.0, y - low)], [max(0.0, high - y)]],
                        fmt=markers[r.model], color=colors[r.method], markersize=8, capsize=3, elinewidth=1)
        frontier = _pareto([(r.tokens_per_question, 100 * r.score) for r in mine])
        if len(frontier) > 1:
            ax.plot(*zip(*frontier), linestyle="--", color="grey", linewidth=1, zorder=0)
        ax.set_xscale("log")
        # 1-2-5 ticks written out in full: matplotlib's default minor labels (3x10^2 ...) collide.
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(dataset)
        ax.set_xlabel("tokens per question (prompt + completion, log scale)")
        metric = METRIC_LABELS.get(mine[0].metric, mine[0].metric) if mine else "score"
        ax.set_ylabel(f"{metric} (%)")
        ax.set_ylim(-5, 105)
        ax.grid(True, which="major", alpha=0.3)
    for ax in list(axes.flat)[len(datasets):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colors[m], marker="o", linestyle="", markersize=8, label=m) for m in colors]
    if len(markers) > 1:
        handles += [Line2D([], [], color="black", marker=mk, linestyle="", markersize=8, label=_short_model(m))
                    for m, mk in markers.items()]
    handles.append(Line2D([], [], color="grey", linestyle="--", label="Pareto frontier"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               title="method" + (" / model" if len(markers) > 1 else ""))
    fig.suptitle("Score vs cost per question (error bars: 95% bootstrap CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def plot_accuracy_by_method(runs: Sequence[RunSummary], path: Path) -> None:
    """Grouped bars: one group per dataset, one bar per method (and model), with 95% CI whiskers."""
    import matplotlib.pyplot as plt
    import numpy as np

    colors, _ = _styles(runs)
    datasets = sorted({r.dataset for r in runs})
    several_models = len({r.model for r in runs}) > 1
    series = sorted({(r.method, r.model) for r in runs})
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 + len(datasets) * (0.5 + 0.35 * len(series))), 4.6))
    hatches = ["", "//", "..", "xx", "\\\\", "oo"]
    models = sorted({r.model for r in runs})
    for k, (method, model) in enumerate(series):
        xs, ys, errs = [], [], [[], []]
        for i, dataset in enumerate(datasets):
            run = next((r for r in runs if (r.dataset, r.method, r.model) == (dataset, method, model)), None)
            if run is None:
                continue
            xs.append(i - 0.4 + width * (k + 0.5))
            ys.append(100 * run.score)
            errs[0].append(max(0.0, 100 * (run.score - run.ci_low)))
            errs[1].append(max(0.0, 100 * (run.ci_high - run.score)))
        label = f"{method} ({_short_model(model)})" if several_models else method
        ax.bar(xs, ys, width=width * 0.95, yerr=errs, capsize=3, color=colors[method], label=label,
               hatch=hatches[models.index(model) % len(hatches)] if several_models else "", edgecolor="white")
    metric_of = {d: next(r.metric for r in runs if r.dataset == d) for d in datasets}
    ax.set_xticks(np.arange(len(datasets)))
    ax.set_xticklabels([f"{d}\n({METRIC_LABELS.get(metric_of[d], metric_of[d])})" for d in datasets])
    ax.set_ylabel("score (%)")
    ax.set_xlabel("dataset (metric)")
    ax.set_ylim(0, 105)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("Score per method and dataset (whiskers: 95% bootstrap CI)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
              title="method (model)" if several_models else "method")
    fig.tight_layout()
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def build_report(results_dir: Path, out_dir: Path, timeout_s: float = 5.0,
                 num_workers: int | None = None) -> tuple[list[RunSummary], list[str]]:
    """Grade every run, write the table (Markdown, CSV) and both plots; returns (runs, skipped-file notes)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    # No limit would let one stuck sympy check hang the whole report, so 0 is not "off" but an error.
    if not 0 < timeout_s < math.inf:
        raise EvalError(f"--timeout must be a finite number of seconds > 0, got {timeout_s}")
    if num_workers is not None and num_workers < 1:
        raise EvalError(f"--num_workers must be >= 1, got {num_workers}")
    if not results_dir.is_dir():
        raise EvalError(f"--results_dir {results_dir}: no such folder")
    runs, skipped = [], []
    for path in find_runs(results_dir):
        try:
            runs.append(summarize_run(path, results_dir, timeout_s, num_workers))
        except (EvalError, DataError) as error:
            # One bad or foreign file must not hide every other run: it is named and left out.
            skipped.append(str(error))
            print(f"skipped: {error}", file=sys.stderr)
    if not runs:
        raise EvalError(f"--results_dir {results_dir}: no gradable <dataset>/<model>/<method>_infer.jsonl files")
    runs.sort(key=lambda r: (r.dataset, r.model, -r.score, r.method))
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_accuracy_vs_tokens(runs, out_dir / "accuracy_vs_tokens.png")
    plot_accuracy_by_method(runs, out_dir / "accuracy_by_method.png")
    write_csv(runs, out_dir / "report.csv")
    intro = (f"Runs found under `{results_dir}`. Scores are percentages with 95% bootstrap confidence "
             "intervals; costs are means per question over all LLM calls of the method.")
    parts = ["# AgentArk results", "", intro, "", markdown_table(runs), "",
             "![score vs tokens per question](accuracy_vs_tokens.png)", "",
             "![score per method and dataset](accuracy_by_method.png)", ""]
    if skipped:
        parts += ["## Skipped files", "", *[f"- {s}" for s in skipped], ""]
    (out_dir / "report.md").write_text("\n".join(parts), encoding="utf-8")
    return runs, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results_dir", default="results",
                        help="folder of <dataset>/<model>/<method>_infer.jsonl runs")
    parser.add_argument("--out", default="reports", help="folder for report.md, report.csv and the PNG plots")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds allowed for one symbolic math check (> 0; an overrun scores the item wrong)")
    parser.add_argument("--num_workers", type=int, default=None, help="processes for symbolic math checks")
    args = parser.parse_args(argv)
    runs, _ = build_report(Path(args.results_dir), Path(args.out), args.timeout, args.num_workers)
    print(markdown_table(runs))
    for run in runs:
        if run.num_truncated_answers:
            print(f"{run.dataset} {run.method} ({run.model}): {run.num_truncated_answers} of {run.truncation_known} "
                  "final answers were cut off at the token limit (raise --model_max_tokens)")
    print(f"\nwrote {Path(args.out) / 'report.md'}, report.csv, accuracy_vs_tokens.png, accuracy_by_method.png")
    return 0


if __name__ == "__main__":
    run_cli(main)
