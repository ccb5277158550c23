"""Score math inference records by answer equivalence.

    python -m eval.math_eval --input_file results/MATH/<model>/mav_infer.jsonl --dataset_name MATH

The metric is accuracy under mathematical equivalence (normalised strings and exact numbers first,
then math-verify's symbolic check under a per-item time limit), not string exact match.
"""
from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Sequence
from typing import Any

from eval.common import (
    REASON_INFERENCE_ERROR,
    EvalError,
    InferenceRecord,
    build_metrics,
    check_task_type,
    output_paths,
    prediction_of,
    read_inference_records,
    run_cli,
    save_and_print,
    truncation_of,
)
from eval.grading import extract_math_answer, grade_math_many

GRADER = "math_equivalence: normalised string / exact numeric checks, then math-verify (sympy) with a time limit"


def _gt_text(record: InferenceRecord) -> str:
    return str(record.field("gt", (str, int, float)))


def score_math_records(records: Sequence[InferenceRecord], timeout_s: float = 5.0, num_workers: int | None = None,
                       progress: bool = False) -> list[dict[str, Any]]:
    """One scores row per record: id, gt, prediction, correct, reason (detail when there is one), truncated."""
    gts = [_gt_text(r) for r in records]  # checked up front: a malformed file fails before grading
    predictions = [None if r.failed else prediction_of(r, extract_math_answer) for r in records]
    todo = [i for i, r in enumerate(records) if not r.failed]
    grades = dict(zip(todo, grade_math_many([(predictions[i], gts[i]) for i in todo], timeout_s=timeout_s,
                                            num_workers=num_workers, progress=progress)))
    rows = []
    for i, record in enumerate(records):
        row: dict[str, Any] = {"id": record.data["id"], "gt": gts[i], "prediction": predictions[i]}
        if record.failed:
            row.update(correct=False, reason=REASON_INFERENCE_ERROR, detail=str(record.data["error"])[:300])
        else:
            row.update(grades[i].to_dict())
        row["truncated"] = truncation_of(record)[0]
        rows.append(row)
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.math_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input_file", required=True,
                        help="an inference file, results/<dataset>/<model>/<method>_infer.jsonl")
    parser.add_argument("--dataset_name", default=None,
                        help="dataset name, recorded in the metrics (must be a math dataset)")
    parser.add_argument("--output_dir", default=None,
                        help="where the scores and metrics go (default: next to the input)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds allowed for one symbolic check; "
                             "an overrun scores the item incorrect (reason: timeout)")
    parser.add_argument("--num_workers", type=int, default=None,
                        help="processes for symbolic checks (default: the number of CPU cores)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.timeout < math.inf:  # NaN and inf would turn the per-item limit off
        raise EvalError(f"--timeout must be a finite number of seconds > 0, got {args.timeout}")
    if args.num_workers is not None and args.num_workers < 1:
        raise EvalError(f"--num_workers must be >= 1, got {args.num_workers}")
    check_task_type(args.dataset_name, "math", "eval.medmcqa_eval or eval.short_answer_eval")
    start = time.perf_counter()
    records = read_inference_records(args.input_file)
    rows = score_math_records(records, timeout_s=args.timeout, num_workers=args.num_workers or os.cpu_count(),
                              progress=not args.no_progress)
    scores_path, metrics_path = output_paths(args.input_file, args.output_dir)
    metrics = build_metrics(rows, records, input_file=str(args.input_file), dataset=args.dataset_name,
                            task_type="math", grader=GRADER, timeout_s=args.timeout,
                            grading_seconds=round(time.perf_counter() - start, 3))
    save_and_print(rows, metrics, scores_path, metrics_path)
    return 0


if __name__ == "__main__":
    run_cli(main)
