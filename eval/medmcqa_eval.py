"""Score multiple-choice inference records (MedMCQA and the like) by the chosen option letter.

    python -m eval.medmcqa_eval --input_file results/MedMCQA/<model>/dylan_infer.jsonl
"""
from __future__ import annotations

import argparse
import string
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from eval.choice import extract_choice_letter, grade_choice
from eval.common import (
    REASON_INFERENCE_ERROR,
    EvalError,
    InferenceRecord,
    build_metrics,
    check_task_type,
    output_paths,
    read_inference_records,
    run_cli,
    save_and_print,
    truncation_of,
)
from eval.metrics import bootstrap_ci

GRADER = "choice_accuracy: the option letter extracted from the answer equals the reference letter"


def _num_choices(record: InferenceRecord) -> int:
    choices = record.data.get("choices")
    if choices is None:
        return 4
    if not isinstance(choices, list) or not 2 <= len(choices) <= 26:
        raise EvalError(f"{record.where}: field 'choices' must be a list of 2 to 26 options")
    return len(choices)


def _reference_letter(record: InferenceRecord, num_choices: int) -> str:
    gt = str(record.field("gt", (str, int))).strip().upper()
    letters = string.ascii_uppercase[:num_choices]
    if len(gt) != 1 or gt not in letters:
        raise EvalError(f"{record.where}: field 'gt' must be an option letter {letters[0]}-{letters[-1]}, got {gt!r}")
    return gt


def predicted_letter(record: InferenceRecord, num_choices: int) -> str | None:
    """The method's `answer` when it is already a letter, else the letter stated in answer or response."""
    letters = string.ascii_uppercase[:num_choices]
    choices = record.data.get("choices")
    answer = record.data.get("answer")
    if isinstance(answer, str) and answer.strip():
        stripped = answer.strip().strip("().").upper()
        if len(stripped) == 1 and stripped in letters:
            return stripped
        letter = extract_choice_letter(answer, num_choices, choices=choices)
        if letter:
            return letter
    response = record.data.get("response")
    if isinstance(response, str):
        return extract_choice_letter(response, num_choices, choices=choices)
    return None


def score_choice_records(records: Sequence[InferenceRecord]) -> list[dict[str, Any]]:
    """One scores row per record: id, gt, prediction (a letter or null), correct, reason, truncated."""
    rows = []
    for record in records:
        num_choices = _num_choices(record)
        gt = _reference_letter(record, num_choices)
        row: dict[str, Any] = {"id": record.data["id"], "gt": gt}
        if record.failed:
            row.update(prediction=None, correct=False, reason=REASON_INFERENCE_ERROR,
                       detail=str(record.data["error"])[:300])
        else:
            prediction = predicted_letter(record, num_choices)
            row.update(prediction=prediction, **grade_choice(prediction, gt).to_dict())
        row["truncated"] = truncation_of(record)[0]
        subject = (record.data.get("meta") or {}).get("subject")
        if subject:
            row["subject"] = subject
        rows.append(row)
    return rows


def accuracy_by_subject(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Accuracy with its CI for each `subject` the rows carry (MedMCQA's subject_name)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row.get("subject"):
            groups[row["subject"]].append(float(row["correct"]))
    return {subject: bootstrap_ci(values).to_dict() for subject, values in sorted(groups.items())}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.medmcqa_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input_file", required=True,
                        help="an inference file, results/<dataset>/<model>/<method>_infer.jsonl")
    parser.add_argument("--dataset_name", default="MedMCQA",
                        help="dataset name, recorded in the metrics (a multiple-choice dataset)")
    parser.add_argument("--output_dir", default=None,
                        help="where the scores and metrics go (default: next to the input)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_task_type(args.dataset_name, "multiple_choice", "eval.math_eval or eval.short_answer_eval")
    start = time.perf_counter()
    records = read_inference_records(args.input_file)
    rows = score_choice_records(records)
    scores_path, metrics_path = output_paths(args.input_file, args.output_dir)
    metrics = build_metrics(rows, records, input_file=str(args.input_file), dataset=args.dataset_name,
                            task_type="multiple_choice", grader=GRADER,
                            grading_seconds=round(time.perf_counter() - start, 3))
    by_subject = accuracy_by_subject(rows)
    if by_subject:
        metrics["accuracy_by_subject"] = by_subject
    save_and_print(rows, metrics, scores_path, metrics_path)
    return 0


if __name__ == "__main__":
    run_cli(main)
