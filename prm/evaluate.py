"""Is the PRM worth using? Step and outcome AUROC, accuracy at 0.5, and best-of-N against majority vote.

    python -m prm.evaluate --prm outputs/prm_qmsum --data results/QMSum/labeled_test.jsonl

Step labels are the solution's correctness on every step (what label.py gives). Best-of-N: for each
question the PRM picks the solution with the highest min (or mean) step score; compared with majority
vote over the solutions' answers, a random pick (its exact expectation) and the oracle (any correct).
Intervals are 95% bootstraps over questions.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.errors import DataError
from data.schema import TASK_TYPES
from eval.grading import answer_key
from eval.metrics import bootstrap_ci
from prm.examples import Question, read_labeled, steps_and_labels
from prm.loading import load
from prm.metrics import auroc, cluster_bootstrap
from prm.model import PRMLoadError

logger = logging.getLogger("agentark.prm.evaluate")

PICKERS = ("prm_min", "prm_mean", "majority_vote", "random", "oracle")


@dataclass
class ScoredQuestion:
    id: str
    task_type: str
    labels: list[bool] = field(default_factory=list)  # per judged solution
    answers: list[str | None] = field(default_factory=list)
    step_scores: list[list[float]] = field(default_factory=list)


def task_type_of(source: str | None, override: str | None) -> str:
    """The record's task type through the dataset registry; plain text normalisation when unknown."""
    if override:
        return override
    from data.registry import REGISTRY

    for name, spec in REGISTRY.items():
        if source and name.lower() == str(source).lower():
            return spec.task_type
    return "short_answer"


def _nan_min(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return min(finite) if finite else math.nan


def _nan_mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _argmax(values: list[float]) -> int:
    """First index of the largest value; NaN never wins (a solution the PRM could not read)."""
    best, best_index = -math.inf, 0
    for index, value in enumerate(values):
        if not math.isnan(value) and value > best:
            best, best_index = value, index
    return best_index


def majority_vote_correct(answers: list[str | None], labels: list[bool], task_type: str) -> bool:
    """Correctness of the most common answer (ties: first seen); no answer at all counts as wrong."""
    keys = [answer_key(a, task_type) for a in answers]
    counts: dict[str, int] = {}
    for key in keys:
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return False
    best = max(counts.values())
    winner = next(k for k in keys if k is not None and counts[k] == best)
    return labels[keys.index(winner)]


def picks(question: ScoredQuestion) -> dict[str, float]:
    """Each picker's accuracy on one question (random: the expected accuracy of a uniform pick)."""
    mins = [_nan_min(s) for s in question.step_scores]
    means = [_nan_mean(s) for s in question.step_scores]
    return {
        "prm_min": float(question.labels[_argmax(mins)]),
        "prm_mean": float(question.labels[_argmax(means)]),
        "majority_vote": float(majority_vote_correct(question.answers, question.labels, question.task_type)),
        "random": float(np.mean(question.labels)),
        "oracle": float(any(question.labels)),
    }


def score_questions(model, questions: list[Question], task_type: str | None, batch_size: int,
                    progress: bool) -> tuple[list[ScoredQuestion], int]:
    """Score every judged solution; returns the scored questions and how many solutions had no verdict."""
    mode = model.prm_config.label_mode
    items, owners = [], []
    scored: list[ScoredQuestion] = []
    unjudged = 0
    for question in questions:
        judged = question.judged()
        unjudged += len(question.solutions) - len(judged)
        if not judged:
            continue
        entry = ScoredQuestion(id=question.id, task_type=task_type_of(question.source, task_type))
        for solution in judged:
            steps, _ = steps_and_labels(solution, mode)  # "solution" mode reads the whole text as one step
            items.append((solution.question, steps))
            owners.append(len(scored))
            entry.labels.append(bool(solution.is_correct))
            entry.answers.append(solution.answer)
        scored.append(entry)
    results = model.score_many(items, batch_size=batch_size, progress=progress)
    for owner, scores in zip(owners, results):
        scored[owner].step_scores.append(scores)
    return scored, unjudged


def _auroc_entry(groups: list[tuple[np.ndarray, np.ndarray]], num_resamples: int) -> dict[str, Any]:
    if not groups:
        return {"auroc": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
    scores = np.concatenate([g[0] for g in groups])
    labels = np.concatenate([g[1] for g in groups])
    low, high = cluster_bootstrap(groups, auroc, num_resamples=num_resamples)
    accuracy = float(np.mean((scores[~np.isnan(scores)] >= 0.5) == (labels[~np.isnan(scores)] == 1)))
    return {"auroc": auroc(scores, labels), "ci_low": low, "ci_high": high, "accuracy_at_0.5": accuracy,
            "n": int(len(scores)), "positive_share": float(labels.mean()) if len(labels) else math.nan}


def summarize(scored: list[ScoredQuestion], num_resamples: int = 1000) -> dict[str, Any]:
    """Every number `prm.evaluate` prints, as a dict (also written with --output)."""
    step_groups, outcome_min, outcome_mean, outcome_last = [], [], [], []
    for q in scored:
        labels = np.array(q.labels, dtype=int)
        step_groups.append((np.array([v for s in q.step_scores for v in s], dtype=float),
                            np.array([int(lab) for lab, s in zip(q.labels, q.step_scores) for _ in s], dtype=int)))
        outcome_min.append((np.array([_nan_min(s) for s in q.step_scores]), labels))
        outcome_mean.append((np.array([_nan_mean(s) for s in q.step_scores]), labels))
        outcome_last.append((np.array([s[-1] if s else math.nan for s in q.step_scores]), labels))
    report: dict[str, Any] = {
        "questions": len(scored), "solutions": sum(len(q.labels) for q in scored),
        "mixed_questions": sum(1 for q in scored if 0 < sum(q.labels) < len(q.labels)),
        "step": _auroc_entry(step_groups, num_resamples),
        "outcome_min": _auroc_entry(outcome_min, num_resamples),
        "outcome_mean": _auroc_entry(outcome_mean, num_resamples),
        "outcome_last": _auroc_entry(outcome_last, num_resamples),
    }
    per_question = [picks(q) for q in scored]
    mixed = [p for p, q in zip(per_question, scored) if 0 < sum(q.labels) < len(q.labels)]
    for name, rows in (("best_of_n", per_question), ("best_of_n_mixed", mixed)):
        report[name] = {picker: bootstrap_ci([r[picker] for r in rows], num_resamples=num_resamples).to_dict()
                        for picker in PICKERS}
        report[name]["prm_min_minus_vote"] = bootstrap_ci(
            [r["prm_min"] - r["majority_vote"] for r in rows], num_resamples=num_resamples).to_dict()
    return report


def _ci(entry: dict[str, Any], key: str = "mean") -> str:
    return f"{entry[key]:.3f} [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['questions']} questions, {report['solutions']} judged solutions, "
             f"{report['mixed_questions']} questions with both correct and incorrect solutions",
             "", f"{'discrimination':<22}{'AUROC [95% CI]':<24}{'acc@0.5':<10}{'n':<7}share correct"]
    for name, label in (("step", "step"), ("outcome_min", "outcome (min step)"),
                        ("outcome_mean", "outcome (mean step)"), ("outcome_last", "outcome (last step)")):
        entry = report[name]
        lines.append(f"{label:<22}{_ci(entry, 'auroc'):<24}{entry.get('accuracy_at_0.5', math.nan):<10.3f}"
                     f"{entry['n']:<7}{entry.get('positive_share', math.nan):.3f}")
    for name, title in (("best_of_n", "all questions"), ("best_of_n_mixed", "mixed questions only")):
        block = report[name]
        lines += ["", f"best-of-N accuracy, {title} (n={block['oracle']['n']})  [95% CI]"]
        for picker in PICKERS:
            lines.append(f"  {picker:<22}{_ci(block[picker])}")
        lines.append(f"  {'PRM(min) - vote':<22}{_ci(block['prm_min_minus_vote'])}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prm", required=True, help="PRM folder written by prm/finetune2.py")
    parser.add_argument("--data", required=True, help="labeled records (label.py output), ideally held out")
    parser.add_argument("--batch_size", type=int, default=16, help="solutions per scoring batch")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--dtype", choices=("auto", "bfloat16", "float32"), default="auto",
                        help="auto: bf16 where the device computes in it natively, else fp32")
    parser.add_argument("--task_type", choices=TASK_TYPES, default=None,
                        help="how answers are grouped for majority vote (default: from each record's source)")
    parser.add_argument("--num_resamples", type=int, default=1000, help="bootstrap resamples for the intervals")
    parser.add_argument("--output", default=None, help="also write the numbers as JSON here")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    try:
        questions = read_labeled(args.data)
        model = load(args.prm, device=args.device, dtype=dtype)
    except (DataError, PRMLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scored, unjudged = score_questions(model, questions, args.task_type, args.batch_size, not args.no_progress)
    if not scored:
        print(f"error: {args.data}: no solution has a verdict (is_correct true or false)", file=sys.stderr)
        return 2
    report = summarize(scored, args.num_resamples)
    report.update({"prm": args.prm, "data": args.data, "unjudged_solutions_skipped": unjudged})
    print(format_report(report))
    if unjudged:
        print(f"({unjudged} solutions with is_correct null were skipped)")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
