"""Crash-safe results: appends survive kills, a torn tail is repaired, corruption and duplicates are refused."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from data.loaders import DataError
from data.records import RecordStore, find_shard_files, read_records, shard_path

ROOT = Path(__file__).resolve().parents[1]


def record(sample_id: str, **extra) -> dict:
    return {"id": sample_id, "response": f"answer for {sample_id}", **extra}


def test_append_then_load_in_a_new_store(tmp_path):
    path = tmp_path / "results" / "GSM8K" / "m" / "cot_infer.jsonl"
    store = RecordStore(path)  # creates the parent folders
    assert path.parent.is_dir() and store.load() == []
    store.append(record("a"))
    store.append(record("b", error="Timeout"))
    assert path.read_text().count("\n") == 2 and path.read_text().endswith("\n")
    again = RecordStore(path)
    assert [r["id"] for r in again.load()] == ["a", "b"]
    assert again.done_ids() == {"a", "b"}
    assert again.done_ids(retry_errors=True) == {"a"}


def test_every_append_is_fsynced(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    store = RecordStore(tmp_path / "r.jsonl")
    store.append(record("a"))
    store.append(record("b"))
    assert len(synced) == 2


def test_torn_last_line_is_truncated_and_reported_once(tmp_path, caplog):
    path = tmp_path / "r.jsonl"
    store = RecordStore(path)
    store.append(record("a"))
    store.append(record("b"))
    intact = path.read_bytes()
    with path.open("ab") as f:
        f.write(b'{"id": "c", "response": "half writ')  # what a kill mid-write leaves
    fresh = RecordStore(path)
    with caplog.at_level(logging.WARNING, logger="data.records"):
        records = fresh.load()
    assert [r["id"] for r in records] == ["a", "b"]
    assert path.read_bytes() == intact
    torn_warnings = [r for r in caplog.records if "torn last line" in r.getMessage()]
    assert len(torn_warnings) == 1 and f"{path}:3" in torn_warnings[0].getMessage()
    fresh.append(record("c"))  # the redone sample lands on its own line
    assert [r["id"] for r in read_records(path)] == ["a", "b", "c"]


def test_append_without_load_repairs_the_tail_first(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record("a")) + "\n" + '{"id": "b", "resp')
    RecordStore(path).append(record("b"))
    assert [r["id"] for r in read_records(path)] == ["a", "b"]


def test_whole_last_record_without_newline_is_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record("a")) + "\n" + json.dumps(record("b")))
    store = RecordStore(path)
    assert [r["id"] for r in store.load()] == ["a", "b"]
    store.append(record("c"))
    assert [r["id"] for r in read_records(path)] == ["a", "b", "c"]


def test_corruption_in_the_middle_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record("a")) + "\n{not json\n" + json.dumps(record("c")) + "\n")
    before = path.read_bytes()
    with pytest.raises(DataError, match=rf"^{path}:2: malformed JSON"):
        RecordStore(path).load()
    with pytest.raises(DataError, match=rf"^{path}:2: malformed JSON"):
        list(read_records(path))
    assert path.read_bytes() == before  # never "repaired" away


def test_record_without_id_is_an_error(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"response": "x"}\n')
    with pytest.raises(DataError, match=rf"^{path}:1: record is not a JSON object with a string 'id'"):
        RecordStore(path).load()


def test_read_records_skips_a_torn_tail_without_touching_the_file(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record("a")) + "\n" + '{"id": "b"')
    before = path.read_bytes()
    assert [r["id"] for r in read_records(path)] == ["a"]
    assert path.read_bytes() == before
    with pytest.raises(DataError, match=r"nope\.jsonl: no such file"):
        list(read_records(tmp_path / "nope.jsonl"))


def test_duplicate_append_is_refused(tmp_path):
    path = tmp_path / "r.jsonl"
    store = RecordStore(path)
    store.append(record("a"))
    with pytest.raises(ValueError, match="'a' already exists"):
        store.append(record("a"))
    with pytest.raises(ValueError, match="'a' already exists"):
        RecordStore(path).append(record("a", error="boom"))
    with pytest.raises(TypeError, match="string 'id'"):
        store.append({"id": 3})
    assert len(list(read_records(path))) == 1


def test_unserialisable_record_writes_nothing(tmp_path):
    path = tmp_path / "r.jsonl"
    store = RecordStore(path)
    store.append(record("a"))
    with pytest.raises(TypeError):
        store.append(record("b", payload=object()))
    store.append(record("b"))
    assert [r["id"] for r in read_records(path)] == ["a", "b"]


def test_drop_errors_then_retry(tmp_path):
    path = tmp_path / "r.jsonl"
    store = RecordStore(path)
    for sample_id in "abcd":
        store.append(record(sample_id, **({"error": "Timeout"} if sample_id in "bd" else {})))
    assert store.drop_errors() == 2
    assert [r["id"] for r in read_records(path)] == ["a", "c"]
    assert store.done_ids() == {"a", "c"}
    store.append(record("b"))  # the retried sample is accepted now
    assert [r["id"] for r in RecordStore(path).load()] == ["a", "c", "b"]
    assert store.drop_errors() == 0


def test_drop_errors_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    store = RecordStore(path)
    store.append(record("a"))
    store.append(record("b", error="boom"))
    before = path.read_bytes()

    def killed(src, dst):
        raise KeyboardInterrupt  # interrupted just before the rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        store.drop_errors()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]  # no temp file left behind
    monkeypatch.undo()
    assert RecordStore(path).drop_errors() == 1
    assert [r["id"] for r in read_records(path)] == ["a"]


def test_concurrent_appends_from_threads_do_not_interleave(tmp_path):
    path = tmp_path / "r.jsonl"
    store = RecordStore(path)
    big = "x" * 50_000  # several write() calls per line if unguarded

    def worker(thread_id: int) -> None:
        for i in range(20):
            store.append(record(f"{thread_id}-{i}", payload=big))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = RecordStore(path).load()
    assert len(records) == 120 and len({r["id"] for r in records}) == 120
    assert all(r["payload"] == big for r in records)


_WRITER = """
import sys
sys.path.insert(0, {root!r})
from data.records import RecordStore
store = RecordStore({path!r})
done = store.done_ids()
i = 0
while True:
    if str(i) not in done:
        store.append({{"id": str(i), "payload": "y" * 200_000}})
        print(i, flush=True)
    i += 1
"""


def test_kill_9_during_appends_loses_nothing_written_and_resumes(tmp_path):
    path = tmp_path / "r.jsonl"
    script = _WRITER.format(root=str(ROOT), path=str(path))
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        acknowledged = [proc.stdout.readline() for _ in range(5)]  # 5 appends fsynced for sure
        time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert all(line.strip() for line in acknowledged)
    ids = [r["id"] for r in RecordStore(path).load()]
    assert len(ids) >= 10 and ids == [str(i) for i in range(len(ids))]  # no gap, no duplicate


def test_shard_path_and_finding_shards(tmp_path):
    out = tmp_path / "llm_debate_infer.jsonl"
    assert shard_path(out, 0, 1) == out
    assert shard_path(out, 2, 4).name == "llm_debate_infer.shard-2-of-4.jsonl"
    assert shard_path(tmp_path / "x", 0, 2).name == "x.shard-0-of-2.jsonl"
    with pytest.raises(ValueError):
        shard_path(out, 4, 4)
    for shard_id in (0, 2):
        shard_path(out, shard_id, 4).write_text("")
    (tmp_path / "cot_infer.shard-0-of-4.jsonl").write_text("")  # another method's shards
    assert find_shard_files(out) == {(0, 4): shard_path(out, 0, 4), (2, 4): shard_path(out, 2, 4)}


def test_atomic_rewrite_keeps_ordinary_permissions(tmp_path):
    from data.atomic import atomic_write_text

    old_mask = os.umask(0o022)
    try:
        target = tmp_path / "out.jsonl"
        atomic_write_text(target, ['{"id": "1"}\n'])
        assert target.stat().st_mode & 0o777 == 0o644
        assert target.read_text() == '{"id": "1"}\n'
        assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    finally:
        os.umask(old_mask)
