"""What every eval CLI shares: reading inference records, output files, cost figures, the printed table."""
from __future__ import annotations

import json
import math
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.atomic import atomic_write_text
from data.errors import DataError

REASON_INFERENCE_ERROR = "inference_error"  # the record carries an `error`: inference failed, scored wrong


class EvalError(ValueError):
    """Input the evaluation cannot use as given; the message is one line naming the file, line or flag."""


@dataclass
class InferenceRecord:
    """One line of a `<method>_infer.jsonl` file with where it came from (for one-line errors)."""

    data: dict[str, Any]
    path: Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def field(self, name: str, types: type | tuple[type, ...] = str) -> Any:
        """A required field of the given type, or an EvalError naming file, line and field."""
        if name not in self.data or self.data[name] is None:
            raise EvalError(f"{self.where}: missing field {name!r}")
        value = self.data[name]
        if not isinstance(value, types):
            kinds = types if isinstance(types, tuple) else (types,)
            raise EvalError(f"{self.where}: field {name!r} must be {' or '.join(t.__name__ for t in kinds)}, "
                            f"got {type(value).__name__}")
        return value

    @property
    def failed(self) -> bool:
        """True when inference itself failed for this sample (the record carries an `error`)."""
        return bool(self.data.get("error"))


def read_inference_records(path: str | Path) -> list[InferenceRecord]:
    """The records of an inference file with their line numbers; malformed lines fail with file:line."""
    from data.records import read_records

    path = Path(path)
    if not path.is_file():
        raise EvalError(f"--input_file {path}: no such file")
    try:
        records = list(read_records(path))
    except DataError as error:
        raise EvalError(str(error)) from None
    # read_records yields one record per non-blank line, in order (a torn last line is skipped).
    with path.open("rb") as f:
        lines = [number for number, line in enumerate(f, start=1) if line.strip()]
    out = [InferenceRecord(record, path, line) for record, line in zip(records, lines)]
    if not out:
        raise EvalError(f"--input_file {path}: no records")
    return out


def output_paths(input_file: str | Path, output_dir: str | Path | None) -> tuple[Path, Path]:
    """(per-sample scores JSONL, metrics JSON): next to the input, or under `output_dir`."""
    input_file = Path(input_file)
    folder = Path(output_dir) if output_dir else input_file.parent
    stem = input_file.name.removesuffix(".jsonl")
    return folder / f"{stem}_scores.jsonl", folder / f"{stem}_metrics.json"


def finite_or_none(value: Any) -> Any:
    """`value` with every NaN or infinite float (nested in dicts, lists, tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def strict_json(data: Any, indent: int | None = None) -> str:
    """Strict JSON text: a missing figure (NaN, inf) is written `null`; any other non-finite slip raises."""
    return json.dumps(finite_or_none(data), indent=indent, ensure_ascii=False, allow_nan=False)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write rows as strict JSON lines (via a temp file, so a crash never leaves half a scores file)."""
    atomic_write_text(path, (strict_json(row) + "\n" for row in rows))


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a metrics file as strict JSON (no NaN or Infinity, which other JSON readers reject)."""
    atomic_write_text(path, [strict_json(data, indent=2) + "\n"])


def prediction_of(record: InferenceRecord, extract: Callable[[str], str | None]) -> str | None:
    """The answer a method committed to (`answer`), else one extracted from `response`."""
    answer = record.data.get("answer")
    if answer is not None and str(answer).strip():
        return str(answer)
    response = record.data.get("response")
    return extract(response) if isinstance(response, str) else None


def cost_summary(records: Sequence[InferenceRecord]) -> dict[str, float]:
    """LLM calls, prompt and completion tokens and latency per question, summed over models."""
    totals = {"llm_calls_per_question": 0.0, "prompt_tokens_per_question": 0.0,
              "completion_tokens_per_question": 0.0}
    latencies = []
    for record in records:
        stats = record.data.get("token_stats") or {}
        if not isinstance(stats, dict):
            raise EvalError(f"{record.where}: field 'token_stats' must be an object of per-model counts")
        for per_model in stats.values():
            if not isinstance(per_model, dict):
                raise EvalError(f"{record.where}: field 'token_stats' must map model -> counts")
            totals["llm_calls_per_question"] += float(per_model.get("num_llm_calls") or 0)
            totals["prompt_tokens_per_question"] += float(per_model.get("prompt_tokens") or 0)
            totals["completion_tokens_per_question"] += float(per_model.get("completion_tokens") or 0)
        latency = record.data.get("latency_s")
        if isinstance(latency, (int, float)) and not isinstance(latency, bool):
            latencies.append(float(latency))
    count = max(1, len(records))
    out = {name: value / count for name, value in totals.items()}
    out["latency_s_per_question"] = sum(latencies) / len(latencies) if latencies else float("nan")
    return out


TRUNCATED = "length"  # the finish reason of a turn cut off at the token limit


def _finish_reason(turn: Any) -> str | None:
    """A turn's finish reason, or None when the turn does not record one (records written before it)."""
    reason = turn.get("finish_reason") if isinstance(turn, dict) else None
    return reason if isinstance(reason, str) and reason else None


def truncation_of(record: InferenceRecord) -> tuple[bool | None, bool | None]:
    """(final answer came from a truncated turn, any turn truncated); None where the record cannot tell.

    The final answer's turn is the last turn whose `text` is the record's `response` (else the last turn).
    A record written before turns carried `finish_reason` is unknown, never counted as untruncated.
    """
    data = record.data
    turns = data.get("trajectory")
    turns = [t for t in turns if isinstance(t, dict)] if isinstance(turns, list) else []
    reasons = [_finish_reason(t) for t in turns]
    count = data.get("num_truncated_turns")
    if isinstance(count, int) and not isinstance(count, bool):
        any_truncated: bool | None = count > 0
    elif TRUNCATED in reasons:
        any_truncated = True
    elif turns and None not in reasons:
        any_truncated = False
    else:
        any_truncated = None
    if any_truncated is None:
        return None, None
    if record.failed or not turns or not any_truncated:
        return False, any_truncated  # no answer came from a turn, or no turn was cut off
    response = data.get("response")
    final = next((i for i in range(len(turns) - 1, -1, -1) if turns[i].get("text") == response), len(turns) - 1)
    reason = reasons[final]
    return (None if reason is None else reason == TRUNCATED), any_truncated


def truncation_summary(records: Sequence[InferenceRecord]) -> dict[str, int | None]:
    """How many final answers (and records) were cut off at the token limit, over records that can tell.

    `truncation_known` counts the records that carry finish reasons; the other two are None when none does.
    """
    flags = [truncation_of(r) for r in records]
    known = sum(1 for _, any_truncated in flags if any_truncated is not None)
    return {
        "num_truncated_answers": sum(1 for answer, _ in flags if answer) if known else None,
        "num_records_with_truncated_turns": sum(1 for _, any_truncated in flags if any_truncated) if known else None,
        "truncation_known": known,
    }


def truncation_notes(metrics: dict[str, Any], token_flag: str = "--model_max_tokens") -> list[str]:
    """Printed lines for truncated answers and turns (nothing when none were cut off or none can tell)."""
    known = metrics.get("truncation_known") or 0
    total = metrics.get("num_samples", known)
    of = f"{total}" if known == total else f"{known} with finish reasons (of {total})"
    notes = []
    if metrics.get("num_truncated_answers"):
        notes.append(f"{metrics['num_truncated_answers']} of {of} final answers were cut off at the token limit "
                     f"(raise {token_flag})")
    if metrics.get("num_records_with_truncated_turns"):
        notes.append(f"{metrics['num_records_with_truncated_turns']} of {of} records have a turn cut off "
                     "at the token limit")
    if total and not known:
        notes.append("truncation unknown: the records carry no finish_reason (written before it was recorded)")
    return notes


def describe_run(records: Sequence[InferenceRecord]) -> dict[str, Any]:
    """Method and model of a file (the first record's; a file holds one run)."""
    first = records[0].data
    return {"method": first.get("method"), "model": first.get("model")}


def check_task_type(dataset_name: str | None, expected: str, tool: str) -> None:
    """Refuse a dataset whose answers this grader cannot judge (a registered dataset of another type)."""
    if not dataset_name:
        return
    from data.registry import get_dataset_spec

    task_type = get_dataset_spec(dataset_name).task_type
    if task_type != expected:
        raise EvalError(f"--dataset_name {dataset_name} is a {task_type} dataset; grade it with {tool}")


def build_metrics(rows: Sequence[dict[str, Any]], records: Sequence[InferenceRecord], **info: Any) -> dict[str, Any]:
    """The metrics JSON shared by the choice and math graders: accuracy with its CI, reasons, costs."""
    from eval.grading import REASON_GRADER_ERROR, REASON_PARSE_ERROR, REASON_TIMEOUT
    from eval.metrics import summarize

    accuracy = summarize([{"accuracy": float(r["correct"])} for r in rows], ["accuracy"])
    reasons = Counter(r["reason"] for r in rows)
    return {
        **info,
        **describe_run(records),
        "num_samples": len(rows),
        "metrics": accuracy,
        "reasons": dict(sorted(reasons.items())),
        "num_inference_errors": reasons.get(REASON_INFERENCE_ERROR, 0),
        "num_grader_errors": sum(reasons.get(k, 0) for k in (REASON_GRADER_ERROR, REASON_TIMEOUT, REASON_PARSE_ERROR)),
        **truncation_summary(records),
        "cost": cost_summary(records),
    }


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table; floats with 4 significant decimals."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "nan" if math.isnan(value) else f"{value:.4f}"
        return str(value)

    text_rows = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text_rows)) if text_rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in text_rows]
    return "\n".join(lines)


def metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    """The printed summary: one line per metric with its 95% bootstrap interval."""
    rows = [[name, est["mean"], f"[{est['ci_low']:.4f}, {est['ci_high']:.4f}]", est["n"]]
            for name, est in metrics.items()]
    return format_table(["metric", "mean", "95% CI", "n"], rows)


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """Run a CLI entrypoint; user errors become one line on stderr and exit code 2, no traceback."""
    from engine.base import EngineError
    from eval.metrics import MetricError

    try:
        code = main(argv)
    except (EvalError, DataError, MetricError, EngineError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)


def save_and_print(rows: list[dict[str, Any]], metrics: dict[str, Any], scores_path: Path,
                   metrics_path: Path, notes: Sequence[str] = (), token_flag: str = "--model_max_tokens") -> None:
    """What every eval CLI ends with: per-sample scores and metrics on disk, a short table on screen.

    `token_flag` is the flag that set the token limit, named in the note on truncated answers.
    """
    write_jsonl(scores_path, rows)
    write_json(metrics_path, metrics)
    print(metrics_table(metrics["metrics"]))
    if metrics.get("reasons"):
        print(f"reasons: {', '.join(f'{k}={v}' for k, v in metrics['reasons'].items())}")
    for note in [*truncation_notes(metrics, token_flag), *notes]:
        print(note)
    print(f"graded {len(rows)} records in {metrics['grading_seconds']:.1f}s -> {scores_path}, {metrics_path}")
