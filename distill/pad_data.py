"""PAD prompts: labeled or inference records (question + reference), or any JSONL with --input_key/--label_key.

Each becomes the conversation the `cot` method sends for that question (its config's system prompt and
`data.task_prompts.task_prompt`), so the student is trained on the prompt it is evaluated with. The PRM is
given the question as the agents saw it (`format_question`), as in its training.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.errors import DataError
from data.loaders import iter_local_records
from data.schema import Sample
from data.task_prompts import format_question
from methods.cot.cot import cot_messages


@dataclass
class PromptRow:
    """One training prompt: the student's messages, the PRM's question text, the reference."""

    prompt: list[dict[str, str]]
    prm_query: str
    gt: str
    choices: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "prm_query": self.prm_query, "gt": self.gt, "choices": self.choices}


def cot_system_prompt(cot_config: str = "config_main") -> str | None:
    """The system message of the cot config inference.py would load for `--method_config_name`."""
    from distill.examples import cot_system_prompt as system_prompt
    from distill.labeled import BuildDataError

    try:
        return system_prompt(cot_config)
    except BuildDataError as error:
        raise DataError(str(error)) from None


def task_type_for(records_source: str | None, dataset_name: str | None, path: str | Path) -> str:
    """The task type of --dataset_name, else of the records' `source` dataset."""
    from data.registry import get_dataset_spec

    name = dataset_name or records_source
    if not name:
        raise DataError(f"{path}: records carry no 'source' field; pass --dataset_name to say how answers are graded")
    return get_dataset_spec(name).task_type


def load_prompt_rows(path: str | Path, input_key: str = "query", label_key: str = "gt",
                     dataset_name: str | None = None, cot_config: str = "config_main",
                     max_samples: int | None = None) -> tuple[list[PromptRow], str]:
    """The prompts of `path` and the task type that grades them; a bad record is one DataError line."""
    path = Path(path)
    system = cot_system_prompt(cot_config)
    rows: list[PromptRow] = []
    samples: list[Sample] = []
    source = None
    for raw in iter_local_records(path):
        query = raw.get(input_key, str)
        if not query.strip():
            raise DataError(f"{raw.where}: field {input_key!r} (--input_key) is empty")
        label = raw.get(label_key, (str, int, float))
        if isinstance(label, bool) or not str(label).strip():
            raise DataError(f"{raw.where}: field {label_key!r} (--label_key) must be a non-empty reference")
        choices = raw.get("choices", list, default=None)
        context = raw.get("context", str, default=None)
        source = source or raw.get("source", str, default=None)
        samples.append(Sample(id=str(raw.get("id", default=raw.index)), query=query, gt=str(label).strip(),
                              source=source or "", choices=choices, context=context))
        if max_samples is not None and len(samples) >= max_samples:
            break
    if not samples:
        raise DataError(f"{path}: no records")
    task_type = task_type_for(source, dataset_name, path)
    for sample in samples:
        rows.append(PromptRow(cot_messages(sample, task_type, system), format_question(sample), sample.gt,
                              list(sample.choices or [])))
    return rows, task_type


__all__ = ["PromptRow", "cot_system_prompt", "load_prompt_rows", "task_type_for"]
