"""The datasets AgentArk runs on: where each lives, how its records map to `Sample`, and `load_samples`.

Each dataset is one explicit `DatasetSpec` in `REGISTRY`; names match exactly (case aside). A mapper
reads one record in the dataset's own schema (hub, generated in process, or a local copy in the same
schema) and returns the canonical samples it holds: one for most datasets, one per question for QASPER
and QMSum.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from data import arith
from data.answer_format import last_boxed
from data.loaders import DataError, RawRecord, iter_hub_records, iter_local_records
from data.schema import TASK_TYPES, Sample

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"

# (raw record, dataset name for `source`, fallback id "<name>-<split>-<index>") -> samples
Mapper = Callable[[RawRecord, str, str], list[Sample]]


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives and how one of its records becomes canonical samples."""

    name: str
    hub_id: str | None  # None: no hub copy loads without a script; --data_path is required
    hub_configs: tuple[str | None, ...]  # several: their splits are concatenated in this order
    default_split: str
    task_type: str
    mapper: Mapper
    sample_file: Path
    # Synthetic datasets: split -> raw records made in process, used in place of the hub
    generator: Callable[[str], Iterator[RawRecord]] | None = None

    def __post_init__(self) -> None:
        if self.task_type not in TASK_TYPES:
            raise ValueError(f"dataset {self.name}: task_type {self.task_type!r} not in {TASK_TYPES}")

    def iter_records(self, split: str, data_path: str | Path | None = None) -> Iterator[RawRecord]:
        """The raw records of a local file when `data_path` is given, else of the generated or hub split."""
        if data_path is not None:
            return iter_local_records(data_path)
        if self.generator is not None:
            return self.generator(split)
        if self.hub_id is None:
            raise DataError(f"{self.name} has no hub copy that loads without a script; pass --data_path "
                            f"(e.g. {self.sample_file.relative_to(SAMPLES_DIR.parents[1])})")
        return iter_hub_records(self.hub_id, self.hub_configs, split)


# ---- mappers -----------------------------------------------------------------------------------

def _number(text: str) -> str:
    return text.strip().replace(",", "").rstrip(".")


def map_gsm8k(raw: RawRecord, source: str, fallback_id: str) -> list[Sample]:
    answer = raw.text("answer")
    if "####" not in answer:
        raise raw.fail("field 'answer' has no final '#### <number>' line")
    gt = _number(answer.rsplit("####", 1)[1])
    if not gt:
        raise raw.fail("field 'answer' has an empty '####' final answer")
    return [Sample(id=str(raw.get("id", default=fallback_id)), query=raw.text("question"), gt=gt,
                   source=source, meta={"solution": answer})]


def _boxed_gt(raw: RawRecord, field: str) -> str:
    boxed = last_boxed(raw.text(field))
    if not boxed:
        raise raw.fail(f"field {field!r} has no \\boxed{{}} final answer")
    return boxed


def map_math(raw: RawRecord, source: str, fallback_id: str) -> list[Sample]:
    meta = {"level": raw.get("level", default=None), "subject": raw.get("type", str, default=None),
            "solution": raw.text("solution")}
    return [Sample(id=str(raw.get("id", default=fallback_id)), query=raw.text("problem"),
                   gt=_boxed_gt(raw, "solution"), source=source, meta=_drop_none(meta))]


def map_math500(raw: RawRecord, source: str, fallback_id: str) -> list[Sample]:
    # MATH-500 states the answer separately; the boxed one in the solution is only a fallback.
    answer = raw.get("answer", (str, int, float), default=None)
    gt = str(answer).strip() if answer is not None and str(answer).strip() else _boxed_gt(raw, "solution")
    meta = {"level": raw.get("level", default=None), "subject": raw.get("subject", str, default=None),
            "solution": raw.get("solution", str, default=None)}
    return [Sample(id=str(raw.get("unique_id", default=fallback_id)), query=raw.text("problem"), gt=gt,
                   source=source, meta=_drop_none(meta))]


def map_metamathqa(raw: RawRecord, source: str, fallback_id: str) -> list[Sample]:
    response = raw.text("response")
    marker = "The answer is:"
    if marker not in response:
        raise raw.fail(f"field 'response' has no {marker!r} final answer")
    gt = response.rsplit(marker, 1)[1].strip()
    if not gt:
        raise raw.fail(f"field 'response' has an empty {marker!r} final answer")
    meta = {"type": raw.get("type", str, default=None), "solution": response}
    return [Sample(id=str(raw.get("id", default=fallback_id)), query=raw.text("query"), gt=gt,
                   source=source, meta=_drop_none(meta))]


_OPTION_FIELDS = ("opa", "opb", "opc", "opd")


def map_medmcqa(raw: RawRecord, source: str, fallback_id: str) -> list[Sample]:
    for name in _OPTION_FIELDS:
        if name not in raw.data:
            raise raw.fail(f"missing field {name!r}")
    # A null option is kept as an empty one so the letters still line up with `cop`.
    choices = ["" if raw.data[name] is None else str(raw.data[name]) for name in _OPTION_FIELDS]
    cop = raw.get("cop", int)
    if isinstance(cop, bool) or not 0 <= cop < len(choices):
        # The test split carries cop = -1: it has no public answer key.
        raise raw.fail(f"field 'cop' must be 0-3, got {cop!r} (MedMCQA's test split has no answer key; "
                       f"use --split validation)")
    meta = {"subject": raw.get("subject_name", str, default=None), "topic": raw.get("topic_name", str, default=None),
            "explanation": raw.get("exp", str, default=None)}
    return [Sample(id=str(raw.get("id", default=fallback_id)), query=raw.text("question"), gt="ABCD"[cop],
                   source=source, choices=choices, meta=_drop_none(meta))]


def map_qmsum(raw: RawRecord, source: str, fallback_id: str) -> list[Sample]:
    """The original release's meeting record: one sample per general or specific query."""
    turns = raw.get("meeting_transcripts", list)
    lines = []
    for position, turn in enumerate(turns):
        if not isinstance(turn, dict) or "speaker" not in turn or "content" not in turn:
            raise raw.fail(f"field 'meeting_transcripts'[{position}] needs 'speaker' and 'content'")
        lines.append(f"{turn['speaker']}: {turn['content']}")
    context = "\n".join(lines)
    meeting_id = str(raw.get("id", default=fallback_id))
    samples = []
    for kind in ("general", "specific"):
        field = f"{kind}_query_list"
        for position, item in enumerate(raw.get(field, list, default=[])):
            if not isinstance(item, dict) or not item.get("query") or not item.get("answer"):
                raise raw.fail(f"field {field!r}[{position}] needs 'query' and 'answer'")
            samples.append(Sample(id=f"{meeting_id}-{kind}-{position}", query=item["query"], gt=item["answer"],
                                  source=source, context=context,
                                  meta={"meeting_id": meeting_id, "query_type": kind}))
    if not samples:
        raise raw.fail("missing field 'general_query_list' or 'specific_query_list' (no queries)")
    return samples


def _rows(raw: RawRecord, value: Any, field: str, columns: Sequence[str]) -> list[dict[str, Any]]:
    """A list of records from either layout: HF's columns ({col: [...]}) or the release's rows.

    Rows may be dicts or positional lists (HotpotQA's `[title, sentences]`).
    """
    if isinstance(value, dict):
        lists = [value.get(column) for column in columns]
        if not all(isinstance(v, list) for v in lists) or len({len(v) for v in lists}) > 1:
            raise raw.fail(f"field {field!r} needs equal-length lists {', '.join(map(repr, columns))}")
        return [dict(zip(columns, row, strict=True)) for row in zip(*lists, strict=True)]
    if isinstance(value, list):
        rows = []
        for position, item in enumerate(value):
            if isinstance(item, dict):
                rows.append(item)
            elif isinstance(item, (list, tuple)) and len(item) == len(columns):
                rows.append(dict(zip(columns, item, strict=True)))
            else:
                raise raw.fail(f"field {field!r}[{position}] is not a record of {', '.join(columns)}")
        return rows
    raise raw.fail(f"field {field!r} must be a list or an object of lists")


def qasper_answer_text(answer: dict[str, Any]) -> str:
    """One annotator's answer as text, in the precedence QASPER's own evaluator uses."""
    if answer.get("unanswerable"):
        return "Unanswerable"
    if answer.get("extractive_spans"):
        return ", ".join(answer["extractive_spans"])
    if answer.get("free_form_answer"):
        return answer["free_form_answer"]
    if answer.get("yes_no") is not None:
        return "Yes" if answer["yes_no"] else "No"
    return ""


def map_qasper(raw: RawRecord, source: str, fallback_id: str) -> list[Sample]:
    """One sample per question; gt is the first annotator's answer, `meta.references` all of them."""
    paper_id = str(raw.get("id", default=fallback_id))
    parts = [f"Title: {raw.text('title')}", f"Abstract: {raw.get('abstract', str)}"]
    for section in _rows(raw, raw.get("full_text"), "full_text", ("section_name", "paragraphs")):
        paragraphs = "\n".join(p for p in (section.get("paragraphs") or []) if p)
        parts.append(f"{section.get('section_name') or ''}\n{paragraphs}".strip())
    context = "\n\n".join(p for p in parts if p)
    samples = []
    for position, qa in enumerate(_rows(raw, raw.get("qas"), "qas", ("question", "question_id", "answers"))):
        annotations = qa.get("answers")
        if isinstance(annotations, dict):  # HF layout: {"answer": [...], "annotation_id": [...], ...}
            annotations = [{"answer": a} for a in annotations.get("answer") or []]
        references = [qasper_answer_text(a.get("answer") or {}) for a in annotations or [] if isinstance(a, dict)]
        references = [r for r in references if r]
        if not qa.get("question") or not references:
            raise raw.fail(f"field 'qas'[{position}] needs a 'question' and at least one answer")
        samples.append(Sample(id=str(qa.get("question_id") or f"{paper_id}-q{position}"), query=qa["question"],
                              gt=references[0], source=source, context=context,
                              meta={"paper_id": paper_id, "references": references}))
    return samples


def map_hotpotqa(raw: RawRecord, source: str, fallback_id: str) -> list[Sample]:
    paragraphs = []
    for paragraph in _rows(raw, raw.get("context"), "context", ("title", "sentences")):
        sentences = paragraph.get("sentences") or []
        paragraphs.append(f"{paragraph.get('title', '')}\n{''.join(sentences).strip()}")
    facts = _rows(raw, raw.get("supporting_facts", default=[]), "supporting_facts", ("title", "sent_id"))
    sample_id = raw.get("id", default=None) or raw.get("_id", default=fallback_id)  # HF: id; release: _id
    meta = {"type": raw.get("type", str, default=None), "level": raw.get("level", str, default=None),
            "supporting_facts": [[f.get("title"), f.get("sent_id")] for f in facts]}
    return [Sample(id=str(sample_id), query=raw.text("question"), gt=raw.text("answer"), source=source,
                   context="\n\n".join(paragraphs), meta=_drop_none(meta))]


def map_arith(raw: RawRecord, source: str, fallback_id: str) -> list[Sample]:
    """A `data.arith` problem (generated or from its JSONL); the answer is checked against the stored chain."""
    answer = raw.get("answer", int)
    if isinstance(answer, bool):
        raise raw.fail("field 'answer' must be int, got bool")
    start, steps = raw.get("start", int), raw.get("steps", list)
    try:
        chain = [(str(operation), int(operand)) for operation, operand in steps]
        value = arith.evaluate(start, chain)[-1] if chain else start
    except (TypeError, ValueError) as e:
        raise raw.fail(f"field 'steps' is not a chain of [operation, operand] pairs ({e})") from None
    if value != answer:
        raise raw.fail(f"field 'answer' is {answer} but the chain in 'steps' gives {value}")
    meta = {"level": raw.get("level", int, default=None), "start": start, "steps": [list(s) for s in chain],
            "solution": raw.get("solution", str, default=None)}
    return [Sample(id=str(raw.get("id", default=fallback_id)), query=raw.text("question"), gt=str(answer),
                   source=source, meta=_drop_none(meta))]


def _drop_none(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if v is not None}


# ---- registry ----------------------------------------------------------------------------------

MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                 "number_theory", "prealgebra", "precalculus")

REGISTRY: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec("GSM8K", "openai/gsm8k", ("main",), "test", "math", map_gsm8k, SAMPLES_DIR / "gsm8k.jsonl"),
    DatasetSpec("MATH", "EleutherAI/hendrycks_math", MATH_SUBJECTS, "test", "math", map_math,
                SAMPLES_DIR / "math.jsonl"),
    DatasetSpec("MATH-500", "HuggingFaceH4/MATH-500", (None,), "test", "math", map_math500,
                SAMPLES_DIR / "math500.jsonl"),
    DatasetSpec("MetaMathQA", "meta-math/MetaMathQA", (None,), "train", "math", map_metamathqa,
                SAMPLES_DIR / "metamathqa.jsonl"),
    DatasetSpec("MedMCQA", "openlifescienceai/medmcqa", (None,), "validation", "multiple_choice", map_medmcqa,
                SAMPLES_DIR / "medmcqa.jsonl"),
    DatasetSpec("QMSum", None, (None,), "test", "short_answer", map_qmsum, SAMPLES_DIR / "qmsum.jsonl"),
    DatasetSpec("QASPER", "allenai/qasper", (None,), "test", "short_answer", map_qasper,
                SAMPLES_DIR / "qasper.jsonl"),
    DatasetSpec("HotpotQA", "hotpotqa/hotpot_qa", ("distractor",), "validation", "short_answer", map_hotpotqa,
                SAMPLES_DIR / "hotpotqa.jsonl"),
    # Synthetic (data/arith.py): `Arith` is the level calibrated for the default model, Arith-L1..L5 the ladder.
    DatasetSpec("Arith", None, (None,), "test", "math", map_arith, SAMPLES_DIR / "arith.jsonl",
                generator=partial(arith.iter_raw_records, arith.CALIBRATED_LEVEL)),
    *(DatasetSpec(f"Arith-L{level}", None, (None,), "test", "math", map_arith, SAMPLES_DIR / "arith.jsonl",
                  generator=partial(arith.iter_raw_records, level)) for level in arith.LEVELS),
)}


def get_dataset_spec(name: str) -> DatasetSpec:
    """The spec registered under `name` (case-insensitive, otherwise exact)."""
    for key, spec in REGISTRY.items():
        if key.lower() == name.lower():
            return spec
    raise DataError(f"unknown dataset {name!r}; known: {', '.join(REGISTRY)}")


def load_samples(dataset_name: str, data_path: str | Path | None = None, split: str | None = None,
                 max_samples: int | None = None, num_shards: int = 1, shard_id: int = 0) -> list[Sample]:
    """Canonical samples of a dataset: the first `max_samples`, then every `num_shards`-th from `shard_id`.

    Ids are the dataset's own when it has them, else "<name>-<split>-<index>", so a local copy of a
    hub split gets the same ids as the hub; they are unique within a load (a repeat is a DataError).
    """
    spec = get_dataset_spec(dataset_name)
    if max_samples is not None and max_samples < 0:
        raise DataError(f"--max_samples must be >= 0, got {max_samples}")
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise DataError(f"--shard_id {shard_id} must be in [0, --num_shards {num_shards})")
    split = split or spec.default_split
    samples: list[Sample] = []
    first_seen: dict[str, str] = {}
    if max_samples == 0:
        return samples
    for raw in spec.iter_records(split, data_path):
        for sample in spec.mapper(raw, spec.name, f"{spec.name}-{split}-{raw.index}"):
            if sample.id in first_seen:
                raise raw.fail(f"duplicate id {sample.id!r} (first at {first_seen[sample.id]})")
            first_seen[sample.id] = raw.where
            samples.append(sample)
            if max_samples is not None and len(samples) >= max_samples:
                return samples[shard_id::num_shards]
    return samples[shard_id::num_shards]


__all__ = ["DataError", "DatasetSpec", "REGISTRY", "get_dataset_spec", "load_samples"]
