"""Read label.py's labeled records for the SFT builders, checking every field they use up front.

Bad input stops the build with one line naming the file, the line and the field, before anything is written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.errors import DataError
from data.schema import Sample


class BuildDataError(ValueError):
    """Input or flags the builders cannot use: one line naming the file and line, or the flag."""


@dataclass
class LabeledSolution:
    """One judged solution of a labeled record (the fields the builders read)."""

    position: int  # index in the record's `solutions`
    id: Any
    text: str
    steps: list[str] | None
    is_correct: bool | None
    answer: str | None
    agent: int
    role: str
    round: int
    method: str
    truncated: bool

    @property
    def chain(self) -> tuple[str, int, str]:
        """Which agent wrote it across rounds: one method's agent number and role."""
        return (self.method, self.agent, self.role)


@dataclass
class LabeledQuestion:
    record: dict[str, Any]
    where: str  # "file:line", for messages
    task_type: str
    solutions: list[LabeledSolution] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.record["id"]

    def sample(self) -> Sample:
        """The question as a canonical sample: what a method (and so the cot prompt) is given."""
        record = self.record
        return Sample(id=record["id"], query=record["query"], gt=str(record["gt"]), source=record.get("source", ""),
                      choices=record.get("choices"), context=record.get("context"))


def _records_with_lines(path: Path) -> list[tuple[dict[str, Any], str]]:
    from data.records import read_records_with_lines

    try:
        records = read_records_with_lines(path)
    except DataError as error:
        raise BuildDataError(str(error)) from None
    if not records:
        raise BuildDataError(f"--input {path}: no records")
    return records


def _task_type(record: dict[str, Any], where: str, dataset_name: str | None) -> str:
    from data.registry import get_dataset_spec

    name = dataset_name or record.get("source")
    if not isinstance(name, str) or not name:
        raise BuildDataError(f"{where}: field 'source' is missing (the dataset name picks the task prompt); "
                             "pass --dataset_name")
    try:
        return get_dataset_spec(name).task_type
    except DataError:
        flag = "--dataset_name" if dataset_name else "field 'source'"
        raise BuildDataError(f"{where}: {flag} {name!r} is not a registered dataset"
                             + ("" if dataset_name else "; pass --dataset_name")) from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _solution(raw: Any, position: int, where: str) -> LabeledSolution:
    name = f"field 'solutions'[{position}]"
    if not isinstance(raw, dict):
        raise BuildDataError(f"{where}: {name} is not an object")
    if not isinstance(raw.get("text"), str):
        raise BuildDataError(f"{where}: {name}.text must be a string")
    if "is_correct" not in raw or raw["is_correct"] not in (True, False, None):
        raise BuildDataError(f"{where}: {name}.is_correct must be true, false or null")
    for key in ("agent", "round"):
        if not _is_int(raw.get(key)):
            raise BuildDataError(f"{where}: {name}.{key} must be an integer")
    for key in ("role", "method"):
        if not isinstance(raw.get(key), str):
            raise BuildDataError(f"{where}: {name}.{key} must be a string")
    answer = raw.get("answer")
    if answer is not None and not isinstance(answer, (str, int, float)):
        raise BuildDataError(f"{where}: {name}.answer must be a string or null")
    steps = raw.get("steps")
    if steps is not None and not (isinstance(steps, list) and all(isinstance(s, str) for s in steps)):
        raise BuildDataError(f"{where}: {name}.steps must be a list of strings")
    return LabeledSolution(position=position, id=raw.get("id", position + 1), text=raw["text"], steps=steps,
                           is_correct=raw["is_correct"], answer=None if answer is None else str(answer),
                           agent=raw["agent"], role=raw["role"], round=raw["round"], method=raw["method"],
                           truncated=bool(raw.get("truncated", False)))


def _check_record(record: dict[str, Any], where: str) -> None:
    if not isinstance(record.get("query"), str) or not record["query"].strip():
        raise BuildDataError(f"{where}: field 'query' must be a non-empty string")
    gt = record.get("gt")
    if gt is None or isinstance(gt, (bool, dict)) or (isinstance(gt, (str, list)) and not gt):
        raise BuildDataError(f"{where}: field 'gt' (the reference answer) is missing or empty")
    if not isinstance(record.get("solutions"), list):
        raise BuildDataError(f"{where}: field 'solutions' must be a list (is this label.py output?)")
    choices = record.get("choices")
    if choices is not None and not (isinstance(choices, list) and all(isinstance(c, str) for c in choices)):
        raise BuildDataError(f"{where}: field 'choices' must be a list of strings")
    if record.get("context") is not None and not isinstance(record["context"], str):
        raise BuildDataError(f"{where}: field 'context' must be a string")


def read_labeled(path: str | Path, dataset_name: str | None = None) -> list[LabeledQuestion]:
    """Every question of a labeled file, in file order; the first bad field raises BuildDataError."""
    path = Path(path)
    if not path.is_file():
        raise BuildDataError(f"--input {path}: no such file")
    questions: list[LabeledQuestion] = []
    first_seen: dict[str, str] = {}
    for record, where in _records_with_lines(path):
        if record["id"] in first_seen:
            raise BuildDataError(f"{where}: duplicate id {record['id']!r} (first at {first_seen[record['id']]})")
        first_seen[record["id"]] = where
        _check_record(record, where)
        question = LabeledQuestion(record=record, where=where, task_type=_task_type(record, where, dataset_name))
        question.solutions = [_solution(raw, position, where) for position, raw in enumerate(record["solutions"])]
        questions.append(question)
    return questions


__all__ = ["BuildDataError", "LabeledQuestion", "LabeledSolution", "read_labeled"]
