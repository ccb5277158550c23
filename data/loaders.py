"""Raw records from a local JSON/JSONL/parquet file or the hub, each tagged with where it came from.

Loaders stay schema-agnostic: they yield `RawRecord`s, and the dataset mappers in `data.registry` turn
them into canonical samples. Every record knows its location ("file:line"), so a mapper's complaint
about a missing field points the user at the exact line to fix.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.errors import DataError

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")


_MISSING = object()


@dataclass(frozen=True)
class RawRecord:
    """One record in the source dataset's own schema, with its location for error messages."""

    data: dict[str, Any]
    where: str  # "data/samples/gsm8k.jsonl:3" or "openai/gsm8k (main, test) row 3"
    index: int  # 0-based position in the whole load, for fallback ids

    def get(self, name: str, types: type | tuple[type, ...] | None = None, default: Any = _MISSING) -> Any:
        """Field `name`; DataError naming this record's location if it is missing or of the wrong type."""
        value = self.data.get(name, _MISSING)
        if value is _MISSING or value is None:
            if default is not _MISSING:
                return default
            raise DataError(f"{self.where}: missing field {name!r}")
        if types is not None and not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
            raise DataError(f"{self.where}: field {name!r} must be {expected}, got {type(value).__name__}")
        return value

    def text(self, name: str) -> str:
        """A string field that must be present and non-empty."""
        value = self.get(name, str)
        if not value.strip():
            raise DataError(f"{self.where}: field {name!r} is empty")
        return value

    def fail(self, message: str) -> DataError:
        """A DataError about this record, for the caller to raise."""
        return DataError(f"{self.where}: {message}")


def iter_local_records(path: str | Path) -> Iterator[RawRecord]:
    """Records of a local .jsonl, .json (a list, or an object keyed by id) or .parquet file, in order."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise DataError(f"{path}: unsupported file extension {path.suffix or '(none)'!r}; "
                        f"use one of {', '.join(LOCAL_SUFFIXES)}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if suffix == ".jsonl":
        yield from _iter_jsonl(path)
    elif suffix == ".json":
        yield from _iter_json(path)
    else:
        yield from _iter_parquet(path)


def iter_json_objects(path: str | Path) -> Iterator[tuple[dict[str, Any], str]]:
    """(object, "file:line") for each non-blank line of a JSON-lines file; a bad line is one DataError."""
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: malformed JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(data, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(data).__name__}")
            yield data, where


def _iter_jsonl(path: Path) -> Iterator[RawRecord]:
    for index, (data, where) in enumerate(iter_json_objects(path)):
        yield RawRecord(data, where, index)


def _iter_json(path: Path) -> Iterator[RawRecord]:
    text = path.read_text(encoding="utf-8")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # JSON Lines saved with a .json name: read it line by line
            yield from _iter_jsonl(path)
            return
        raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
    if isinstance(payload, dict) and payload and all(isinstance(v, dict) for v in payload.values()):
        # Releases such as QASPER's key each record by its id instead of storing it inside.
        payload = [{"id": key, **value} for key, value in payload.items()]
    if not isinstance(payload, list):
        raise DataError(f"{path}: expected a list of records (or an object keyed by id)")
    for index, data in enumerate(payload):
        where = f"{path}:record {index + 1}"
        if not isinstance(data, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(data).__name__}")
        yield RawRecord(data, where, index)


def _iter_parquet(path: Path) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a damaged or non-parquet file
        raise DataError(f"{path}: not a readable parquet file ({_first_line(e)})") from None
    index = 0
    for batch in parquet.iter_batches():
        for data in batch.to_pylist():
            yield RawRecord(data, f"{path}:row {index + 1}", index)
            index += 1


def iter_hub_records(hub_id: str, configs: Sequence[str | None], split: str) -> Iterator[RawRecord]:
    """Records of `split` from the hub, the configs' splits concatenated in the order given."""
    import datasets

    index = 0
    for config in configs:
        label = f"{hub_id} ({config}, {split})" if config else f"{hub_id} ({split})"
        try:
            # trust_remote_code is never passed: a dataset that needs a script is loaded from a file.
            rows = datasets.load_dataset(hub_id, config, split=split)
        except Exception as e:  # network, missing split, hub errors: all end as one line for the user
            raise DataError(f"cannot load {label} from the hub: {_first_line(e)}; "
                            f"pass --data_path with a local copy") from None
        for row_number, data in enumerate(rows, start=1):
            yield RawRecord(dict(data), f"{label} row {row_number}", index)
            index += 1


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
