"""scripts/merge_shards.py: union of shards, dedup (success beats error), missing ids and shards, exit codes."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from data.records import RecordStore, read_records, shard_path
from data.registry import load_samples

ROOT = Path(__file__).resolve().parents[1]
GSM8K_SAMPLES = ROOT / "data" / "samples" / "gsm8k.jsonl"

_spec = importlib.util.spec_from_file_location("merge_shards", ROOT / "scripts" / "merge_shards.py")
merge_shards = importlib.util.module_from_spec(_spec)
sys.modules["merge_shards"] = merge_shards  # dataclasses resolves annotations through sys.modules
_spec.loader.exec_module(merge_shards)


def write_shards(output: Path, shards: dict[int, list[dict]], num_shards: int) -> None:
    for shard_id, records in shards.items():
        store = RecordStore(shard_path(output, shard_id, num_shards))
        for record in records:
            store.append(record)


def ok(sample_id: str) -> dict:
    return {"id": sample_id, "answer": "1"}


def failed(sample_id: str) -> dict:
    return {"id": sample_id, "answer": None, "error": "Timeout"}


@pytest.fixture
def output(tmp_path) -> Path:
    return tmp_path / "results" / "GSM8K" / "m" / "llm_debate_infer.jsonl"


def test_merges_union_and_success_beats_error(output, capsys):
    write_shards(output, {0: [ok("a"), failed("c")], 1: [ok("b"), ok("c")], 2: [failed("d"), ok("a")]}, 3)
    assert merge_shards.main(["--output_path", str(output)]) == 0
    merged = {r["id"]: r for r in read_records(output)}
    assert [r["id"] for r in read_records(output)] == ["a", "c", "b", "d"]
    assert "error" not in merged["c"] and "error" in merged["d"]
    printed = capsys.readouterr().out
    assert "records: 4 (ok 3, failed 1), duplicates dropped: 2" in printed
    assert "failed ids (rerun the shard with --retry_errors): d" in printed


def test_rerunning_the_merge_changes_nothing(output):
    write_shards(output, {0: [ok("a")], 1: [ok("b")]}, 2)
    assert merge_shards.main(["--output_path", str(output)]) == 0
    first = output.read_bytes()
    assert merge_shards.main(["--output_path", str(output)]) == 0
    assert output.read_bytes() == first


def test_missing_shard_file_exits_1(output, capsys):
    write_shards(output, {0: [ok("a")], 2: [ok("c")]}, 3)
    assert merge_shards.main(["--output_path", str(output), "--num_shards", "3"]) == 1
    assert "missing shard files: llm_debate_infer.shard-1-of-3.jsonl" in capsys.readouterr().out


def test_missing_ids_against_the_dataset_and_dataset_order(output, capsys):
    ids = [s.id for s in load_samples("GSM8K", data_path=GSM8K_SAMPLES)]
    shards = {i: [ok(sample_id) for sample_id in ids[i::2]] for i in range(2)}
    shards[1] = shards[1][:-2]  # shard 1 was killed before its last two samples
    write_shards(output, shards, 2)
    flags = ["--output_path", str(output), "--test_dataset_name", "GSM8K", "--data_path", str(GSM8K_SAMPLES)]
    assert merge_shards.main(flags) == 1
    printed = capsys.readouterr().out
    assert f"missing ids: 2: {ids[7]}, {ids[9]}" in printed
    write_shards(output, {1: [ok(ids[7]), ok(ids[9])]}, 2)  # the shard resumed and finished
    assert merge_shards.main(flags) == 0
    assert [r["id"] for r in read_records(output)] == ids
    assert "missing ids: 0" in capsys.readouterr().out


def test_an_empty_missing_shard_is_fine_when_ids_are_complete(output):
    # 2 samples over 4 shards: shards 2 and 3 had nothing to do and may have written no file.
    write_shards(output, {0: [ok("GSM8K-test-0")], 1: [ok("GSM8K-test-1")]}, 4)
    flags = ["--output_path", str(output), "--test_dataset_name", "GSM8K", "--data_path", str(GSM8K_SAMPLES),
             "--max_samples", "2", "--num_shards", "4"]
    assert merge_shards.main(flags) == 0
    assert merge_shards.main(flags[:2] + ["--num_shards", "4"]) == 1  # without the dataset: can't tell


def test_torn_tail_in_a_shard_is_skipped(output):
    write_shards(output, {0: [ok("a")], 1: [ok("b")]}, 2)
    with shard_path(output, 1, 2).open("a") as f:
        f.write('{"id": "c", "ans')
    assert merge_shards.main(["--output_path", str(output)]) == 0
    assert [r["id"] for r in read_records(output)] == ["a", "b"]


def test_records_already_in_the_output_are_kept(output):
    RecordStore(output).append(ok("z"))
    write_shards(output, {0: [ok("a")], 1: [ok("b")]}, 2)
    assert merge_shards.main(["--output_path", str(output)]) == 0
    assert [r["id"] for r in read_records(output)] == ["z", "a", "b"]


def test_bad_input_is_one_line_and_exit_2(output, capsys):
    assert merge_shards.main(["--output_path", str(output)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {output}: no shard files found") and error.count("\n") == 1
    write_shards(output, {0: [ok("a")]}, 2)
    write_shards(output, {0: [ok("a")]}, 3)
    assert merge_shards.main(["--output_path", str(output)]) == 2
    assert "different --num_shards (2, 3)" in capsys.readouterr().err
    assert merge_shards.main(["--output_path", str(output), "--num_shards", "3"]) == 1  # shards 1, 2 absent
    shard_path(output, 0, 3).write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    assert merge_shards.main(["--output_path", str(output), "--num_shards", "3"]) == 2
    assert "shard-0-of-3.jsonl:2: malformed JSON" in capsys.readouterr().err


def test_runs_as_a_script_from_another_directory(output, tmp_path):
    write_shards(output, {0: [ok("a")], 1: [failed("b")]}, 2)
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "merge_shards.py"), "--output_path", str(output)],
                          check=False, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "records: 2 (ok 1, failed 1)" in done.stdout
    assert [json.loads(line)["id"] for line in output.read_text().splitlines()] == ["a", "b"]
