"""The pipeline's report: per dataset, the base student, the single agent, each teacher method and each
distilled student on the same test questions, with cost per question and the share of the teacher's lift
each student keeps. Markdown + CSV + one PNG, beside the stage timings."""
from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.common import finite_or_none
from eval.metrics import bootstrap_ci
from eval.report import METRIC_LABELS, RunSummary, grade_run
from pipeline.stages import EvalRow

ROLE_LABELS = {"base": "base student", "single_agent": "single agent (teacher model)", "teacher": "teacher",
               "student": "distilled student"}
STRATEGY_LABELS = {"rsft": "R-SFT", "da": "DA", "pad": "PAD"}


@dataclass
class Compared:
    row: EvalRow
    run: RunSummary
    lift: float = math.nan  # score minus the base student's, on the questions both answered
    lift_low: float = math.nan
    lift_high: float = math.nan
    kept: float = math.nan  # lift / the best teacher method's lift (students only)

    @property
    def label(self) -> str:
        if self.row.role == "teacher":
            return f"teacher: {self.row.method}"
        if self.row.role == "student":
            strategy = self.row.row.removeprefix("student-")
            return f"student: {STRATEGY_LABELS.get(strategy, strategy)}"
        return ROLE_LABELS[self.row.role]


def _paired_lift(values: dict[str, float], base: dict[str, float]) -> tuple[float, float, float]:
    shared = sorted(set(values) & set(base))
    estimate = bootstrap_ci([values[i] - base[i] for i in shared])
    return estimate.mean, estimate.ci_low, estimate.ci_high


def compare(rows: Sequence[EvalRow], timeout_s: float = 5.0) -> list[Compared]:
    """Grade every row of one dataset; lifts are paired over question ids against the base student."""
    graded = [(row, *grade_run(row.path, row.dataset, timeout_s)) for row in rows]
    base_values = next(values for row, _, values in graded if row.role == "base")
    out = []
    for row, run, values in graded:
        item = Compared(row, run)
        if row.role != "base":
            item.lift, item.lift_low, item.lift_high = _paired_lift(values, base_values)
        out.append(item)
    teachers = [c for c in out if c.row.role == "teacher"]
    if teachers:
        best = max(teachers, key=lambda c: c.run.score)
        for c in out:
            if c.row.role == "student" and best.lift > 0:
                c.kept = c.lift / best.lift
    return out


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}"


def _signed(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:+.1f}"


def markdown(dataset: str, items: Sequence[Compared]) -> str:
    metric = METRIC_LABELS.get(items[0].run.metric, items[0].run.metric)
    teachers = [c for c in items if c.row.role == "teacher"]
    best = max(teachers, key=lambda c: c.run.score).label if teachers else None
    header = ["who", "method", "model", "N", f"{metric} % [95% CI]", "vs base (pts) [95% CI]",
              "share of teacher lift kept", "LLM calls/q", "tokens/q", "cut off"]
    lines = [f"### {dataset}", "", "| " + " | ".join(header) + " |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in items:
        r = c.run
        kept = ""
        if c.row.role == "student":
            kept = "n/a (no teacher lift)" if math.isnan(c.kept) else f"{100 * c.kept:.0f}%"
        lift = "" if c.row.role == "base" else f"{_signed(c.lift)} [{_signed(c.lift_low)}, {_signed(c.lift_high)}]"
        cut = "n/a" if r.num_truncated_answers is None else str(r.num_truncated_answers)
        cells = [c.label, r.method, Path(c.row.model).name if Path(c.row.model).is_absolute() else c.row.model,
                 str(r.num_samples), f"{_pct(r.score)} [{_pct(r.ci_low)}, {_pct(r.ci_high)}]", lift, kept,
                 f"{r.llm_calls_per_question:.1f}", f"{r.tokens_per_question:,.0f}", cut]
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    if best:
        lines += ["", f"Share kept = student's lift / the lift of the best teacher method ({best}), both over the base "
                  "student on the same questions; lifts are paired bootstrap intervals over questions."]
    return "\n".join(lines)


def plot(per_dataset: dict[str, list[Compared]], path: Path) -> None:
    """Per dataset: score of each row as a bar with its interval, and score against tokens per question."""
    import math as _math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"base": "#555555", "single_agent": "#8c564b", "teacher": "#1f77b4", "student": "#d62728"}
    markers = {"base": "o", "single_agent": "D", "teacher": "s", "student": "^"}
    fig, axes = plt.subplots(len(per_dataset), 2, figsize=(12.5, 4.6 * len(per_dataset)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1.15]})
    for (bars, scatter), (dataset, items) in zip(axes, per_dataset.items()):
        metric = METRIC_LABELS.get(items[0].run.metric, items[0].run.metric)
        base = next(c for c in items if c.row.role == "base")
        ys = range(len(items))[::-1]
        for y, c in zip(ys, items):
            score = 100 * c.run.score
            bars.barh(y, score, color=colors[c.row.role], alpha=0.85,
                      xerr=[[max(0.0, score - 100 * c.run.ci_low)], [max(0.0, 100 * c.run.ci_high - score)]],
                      capsize=3)
            bars.text(1, y, f"{score:.1f}", va="center", ha="left", color="white", fontsize=9, fontweight="bold")
        bars.set_yticks(list(ys))
        bars.set_yticklabels([c.label for c in items])
        bars.axvline(100 * base.run.score, color=colors["base"], linestyle=":", linewidth=1)
        bars.set_xlabel(f"{metric} (%), 95% bootstrap CI")
        bars.set_title(f"{dataset}: {items[0].run.num_samples} test questions")
        bars.grid(True, axis="x", alpha=0.3)
        placed: list[tuple[float, float]] = []
        for c in items:
            x, y = max(c.run.tokens_per_question, 1.0), 100 * c.run.score
            scatter.errorbar(x, y, yerr=[[max(0.0, y - 100 * c.run.ci_low)], [max(0.0, 100 * c.run.ci_high - y)]],
                             fmt=markers[c.row.role], color=colors[c.row.role], markersize=8, capsize=3)
            # Labels of points that sit on top of each other are stacked instead of printed over each other.
            near = sum(1 for px, py in placed if abs(_math.log10(px) - _math.log10(x)) < 0.08 and abs(py - y) < 4)
            placed.append((x, y))
            scatter.annotate(c.label, (x, y), textcoords="offset points", xytext=(8, 4 - 12 * near), fontsize=8)
        scatter.axhline(100 * base.run.score, color=colors["base"], linestyle=":", linewidth=1)
        scatter.set_xscale("log")
        scatter.set_xlabel("tokens per question (prompt + completion, log scale)")
        scatter.set_ylabel(f"{metric} (%)")
        scatter.set_title("quality against cost")
        scatter.grid(True, alpha=0.3)
        scatter.margins(x=0.3, y=0.15)
    fig.suptitle("Teacher methods vs distilled single agents (dotted: the base student)")
    fig.tight_layout()
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def _timings(records: Sequence[dict[str, Any]]) -> str:
    lines = ["| stage | seconds |", "|---|---:|"]
    total = 0.0
    for record in records:
        seconds = float(record.get("seconds") or 0.0)
        total += seconds
        lines.append(f"| {record['name']} | {seconds:,.1f} |")
    lines.append(f"| **total** | **{total:,.1f}** |")
    return "\n".join(lines)


def write_report(out_dir: Path, per_dataset: dict[str, list[Compared]], stage_records: Sequence[dict[str, Any]],
                 title: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    plot(per_dataset, out_dir / "comparison.png")
    with (out_dir / "report.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "who", "role", "method", "model", "n", "metric", "score", "ci_low", "ci_high",
                         "lift_vs_base", "lift_ci_low", "lift_ci_high", "share_of_teacher_lift_kept",
                         "llm_calls_per_question", "tokens_per_question", "num_truncated_answers", "file"])
        for dataset, items in per_dataset.items():
            for c in items:
                r = c.run
                writer.writerow(finite_or_none([dataset, c.label, c.row.role, r.method, c.row.model, r.num_samples,
                                                r.metric, r.score, r.ci_low, r.ci_high, c.lift, c.lift_low, c.lift_high,
                                                c.kept, r.llm_calls_per_question, r.tokens_per_question,
                                                r.num_truncated_answers, r.file]))
    parts = [f"# {title}", "", *[markdown(d, items) + "\n" for d, items in per_dataset.items()],
             "![score vs tokens per question](comparison.png)", "", "## Stage timings", "", _timings(stage_records), ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
