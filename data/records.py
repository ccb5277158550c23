"""Crash-safe JSONL results: one fsynced line per finished sample, resume by id, torn-tail repair.

A run killed at any instant leaves at most one partial last line (the one being written). `load()`
cuts it away and the run redoes that sample; every earlier line was fsynced before the next sample's
write began, so nothing else is lost. Rewrites (`drop_errors`) go through a temp file and
`os.replace`, so the file on disk is always either the old or the new version.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.atomic import atomic_write_text
from data.errors import DataError

logger = logging.getLogger(__name__)


@dataclass
class _Parsed:
    records: list[tuple[int, dict[str, Any]]]  # (line number, record)
    torn_at: int | None = None  # byte offset where a torn last line starts
    torn_line: int | None = None
    missing_newline: bool = False  # the last record is whole but the kill came before its "\n"


def _parse_lines(path: Path) -> _Parsed:
    """Parse a results file. Only the last line may be torn; a bad line before a good one is corruption."""
    parsed = _Parsed(records=[])
    offset = 0
    bad: tuple[int, int, str] | None = None  # (line number, byte offset, message) of a malformed line
    with path.open("rb") as f:  # binary lines split on b"\n" only, as the writer wrote them
        for line_number, line in enumerate(f, start=1):
            start, offset = offset, offset + len(line)
            if not line.strip():
                continue
            if bad is not None:
                raise DataError(f"{path}:{bad[0]}: {bad[2]}")
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                bad = (line_number, start, f"malformed JSON ({getattr(e, 'msg', e)})")
                continue
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                raise DataError(f"{path}:{line_number}: record is not a JSON object with a string 'id'")
            parsed.records.append((line_number, record))
            parsed.missing_newline = not line.endswith(b"\n")
    if bad is not None:
        parsed.torn_line, parsed.torn_at = bad[0], bad[1]
    return parsed


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a results file, read-only: a torn last line is skipped (with a warning).

    The whole file is checked before the first record is yielded, so corruption fails up front.
    """
    for record, _ in read_records_with_lines(path):
        yield record


def read_records_with_lines(path: str | Path) -> list[tuple[dict[str, Any], str]]:
    """`read_records` with each record's "file:line", for errors that name the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    parsed = _parse_lines(path)
    if parsed.torn_at is not None:
        logger.warning("%s:%d: skipping a torn last line left by an interrupted run", path, parsed.torn_line)
    return [(record, f"{path}:{line_number}") for line_number, record in parsed.records]


def shard_path(path: str | Path, shard_id: int, num_shards: int) -> Path:
    """`x_infer.jsonl` -> `x_infer.shard-<i>-of-<k>.jsonl`; the path itself when there is one shard."""
    path = Path(path)
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise ValueError(f"shard_id {shard_id} must be in [0, num_shards {num_shards})")
    if num_shards == 1:
        return path
    return path.with_name(f"{path.name.removesuffix('.jsonl')}.shard-{shard_id}-of-{num_shards}.jsonl")


_SHARD_NAME = re.compile(r"\.shard-(\d+)-of-(\d+)\.jsonl$")


def find_shard_files(path: str | Path) -> dict[tuple[int, int], Path]:
    """The shard files written for output `path`, keyed by (shard_id, num_shards)."""
    path = Path(path)
    stem = path.name.removesuffix(".jsonl")
    found = {}
    if path.parent.is_dir():
        for candidate in path.parent.iterdir():
            match = _SHARD_NAME.search(candidate.name)
            if match and candidate.name[: match.start()] == stem:
                found[(int(match.group(1)), int(match.group(2)))] = candidate
    return dict(sorted(found.items()))


class RecordStore:
    """Results of one run: append-only JSONL keyed by `id`, safe against kills and threads.

    Resume: `load()` (repairs a torn tail), skip `done_ids(...)`, `append` each finished sample. To redo
    failed samples, call `drop_errors()` first: an id can hold only one record.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._failed: dict[str, bool] | None = None  # id -> record has "error"; None until loaded

    def load(self) -> list[dict[str, Any]]:
        """All records on disk; a torn last line is truncated from the file and logged, never fatal."""
        with self._lock:
            return self._load_locked()

    def _load_locked(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            self._failed = {}
            return []
        parsed = _parse_lines(self.path)
        failed: dict[str, bool] = {}
        for line_number, record in parsed.records:
            if record["id"] in failed:
                raise DataError(f"{self.path}:{line_number}: duplicate id {record['id']!r}")
            failed[record["id"]] = "error" in record
        if parsed.torn_at is not None:
            size = self.path.stat().st_size
            with self.path.open("r+b") as f:
                f.truncate(parsed.torn_at)
                os.fsync(f.fileno())
            logger.warning("%s:%d: removed a torn last line (%d bytes) left by an interrupted run; "
                           "that sample will be redone", self.path, parsed.torn_line, size - parsed.torn_at)
        elif parsed.missing_newline:  # complete it, or the next append would extend this line
            with self.path.open("ab") as f:
                f.write(b"\n")
                os.fsync(f.fileno())
        self._failed = failed
        return [record for _, record in parsed.records]

    def done_ids(self, retry_errors: bool = False) -> set[str]:
        """Ids that have a record; with `retry_errors`, those whose record is an error are left out."""
        with self._lock:
            if self._failed is None:
                self._load_locked()
            assert self._failed is not None
            return {i for i, failed in self._failed.items() if not (retry_errors and failed)}

    def drop_errors(self) -> int:
        """Rewrite the file without error records (atomically); returns how many were dropped."""
        with self._lock:
            records = self._load_locked()
            kept = [r for r in records if "error" not in r]
            if len(kept) == len(records):
                return 0
            _atomic_write_jsonl(self.path, kept)
            self._failed = {r["id"]: False for r in kept}
            return len(records) - len(kept)

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as a line, flushed and fsynced; an id already in the file is refused."""
        if not isinstance(record.get("id"), str):
            raise TypeError("a record needs a string 'id'")
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")  # fails before any write
        with self._lock:
            if self._failed is None:
                self._load_locked()  # also repairs a torn tail, which the new line would otherwise extend
            assert self._failed is not None
            if record["id"] in self._failed:
                raise ValueError(f"{self.path}: a record with id {record['id']!r} already exists")
            # Opened per append: after drop_errors' os.replace a kept handle would write to the old file.
            with self.path.open("ab") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self._failed[record["id"]] = "error" in record


def _atomic_write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    atomic_write_text(path, (json.dumps(record, ensure_ascii=False) + "\n" for record in records))


def write_records(path: str | Path, records: list[dict[str, Any]]) -> None:
    """Write a whole results file atomically (for tools that merge or rewrite results)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_jsonl(path, records)


__all__ = ["RecordStore", "find_shard_files", "read_records", "shard_path", "write_records"]
