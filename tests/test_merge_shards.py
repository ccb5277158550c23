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


def test_overlapping_shards_and_a_missing_shard_report_exactly_what_is_missing(output, capsys):
    # 10 samples over 3 shards: shard 0 has ids 0,3,6,9; shard 1 (1,4,7) never wrote its file; shard 2
    # (2,5,8) stopped before 8 and also holds 0 and 3 again (a rerun with another --num_shards left them).
    ids = [s.id for s in load_samples("GSM8K", data_path=GSM8K_SAMPLES)]
    assert len(ids) == 10
    write_shards(output, {0: [ok(ids[i]) for i in (0, 3, 6, 9)],
                          2: [ok(ids[2]), failed(ids[0]), ok(ids[5]), ok(ids[3])]}, 3)
    flags = ["--output_path", str(output), "--num_shards", "3", "--test_dataset_name", "GSM8K",
             "--data_path", str(GSM8K_SAMPLES)]
    assert merge_shards.main(flags) == 1
    printed = capsys.readouterr().out.splitlines()
    assert "records: 6 (ok 6, failed 0), duplicates dropped: 2" in printed
    assert "missing shard files: llm_debate_infer.shard-1-of-3.jsonl" in printed
    assert f"missing ids: 4: {ids[1]}, {ids[4]}, {ids[7]}, {ids[8]}" in printed
    assert (f"  shard 1 of 3 (no file): 3 missing: {ids[1]}, {ids[4]}, {ids[7]}; "
            "rerun it with --num_shards 3 --shard_id 1") in printed
    assert (f"  shard 2 of 3 (file incomplete): 1 missing: {ids[8]}; "
            "rerun it with --num_shards 3 --shard_id 2") in printed
    assert not any(line.startswith("  shard 0") for line in printed)
    # The duplicates kept the successful record; nothing of shard 0 is reported.
    assert {r["id"] for r in read_records(output)} == {ids[i] for i in (0, 2, 3, 5, 6, 9)}
    assert all("error" not in r for r in read_records(output))


def test_missing_shard_without_the_dataset_says_the_ids_are_unknown(output, capsys):
    write_shards(output, {0: [ok("a"), ok("b")], 2: [ok("b")]}, 3)
    assert merge_shards.main(["--output_path", str(output), "--num_shards", "3"]) == 1
    printed = capsys.readouterr().out
    assert "duplicates dropped: 1" in printed
    assert "missing shard files: llm_debate_infer.shard-1-of-3.jsonl" in printed
    assert "missing ids: unknown (give the run's --test_dataset_name and data flags to list them)" in printed


def test_missing_shard_ids_follow_inference_sharding(output):
    # What inference.py --num_shards 3 --shard_id 1 runs is exactly what the report names for shard 1.
    samples = load_samples("GSM8K", data_path=GSM8K_SAMPLES)
    shard_1 = [s.id for s in load_samples("GSM8K", data_path=GSM8K_SAMPLES, num_shards=3, shard_id=1)]
    write_shards(output, {0: [ok(s.id) for s in samples[0::3]], 2: [ok(s.id) for s in samples[2::3]]}, 3)
    report = merge_shards.merge_shards(output, 3, [s.id for s in samples])
    assert report.missing_by_shard == {1: shard_1}


# --- configs/slurm: the commands the sbatch examples run parse with the CLIs' own parsers ---

SLURM = ROOT / "configs" / "slurm"


def run_sbatch_file(name: str, tmp_path: Path, env: dict[str, str], *args: str) -> list[list[str]]:
    """Run a configs/slurm script with `python` (and srun/ray/sbatch) stubbed; the argv of each call."""
    import os

    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    for tool in ("python", "sbatch"):
        stub = stubs / tool
        stub.write_text(f'#!/usr/bin/env bash\nprintf "%s\\0" {tool} "$@" >> "{calls}"\nprintf "\\n" >> "{calls}"\n'
                        'echo 123\n')
        stub.chmod(0o755)
    full_env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", SLURM_SUBMIT_DIR=str(ROOT),
                    VIRTUAL_ENV="stubbed", **env)
    done = subprocess.run(["bash", str(SLURM / name), *args], env=full_env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = calls.read_text().split("\n") if calls.exists() else []
    return [line.rstrip("\0").split("\0") for line in lines if line]


@pytest.mark.parametrize("name", sorted(p.name for p in SLURM.iterdir()))
def test_slurm_scripts_are_valid_bash(name):
    assert subprocess.run(["bash", "-n", str(SLURM / name)], capture_output=True).returncode == 0


def test_inference_array_task_runs_its_shard_with_data_parallel_vllm(tmp_path):
    import inference

    calls = run_sbatch_file("inference_array.sbatch", tmp_path,
                            {"SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_ID": "2", "SLURM_GPUS_ON_NODE": "4",
                             "TENSOR_PARALLEL": "2", "DATA_FLAGS": "--max_samples 100"}, "--model_max_tokens", "512")
    assert len(calls) == 1 and calls[0][:2] == ["python", "inference.py"]
    args = inference.build_parser().parse_args(calls[0][2:])
    assert (args.num_shards, args.shard_id, args.max_samples, args.model_max_tokens) == (4, 2, 100, 512)
    assert (args.use_vllm, args.tensor_parallel_size, args.data_parallel_size) == (True, 2, 2)
    assert args.output_path == "results/GSM8K/Qwen/Qwen3-8B/llm_debate_infer.jsonl"


def test_resubmitting_one_shard_keeps_the_runs_shard_count(tmp_path):
    import inference

    calls = run_sbatch_file("inference_array.sbatch", tmp_path,
                            {"SLURM_ARRAY_TASK_COUNT": "1", "SLURM_ARRAY_TASK_ID": "3", "NUM_SHARDS": "8"})
    args = inference.build_parser().parse_args(calls[0][2:])
    assert (args.num_shards, args.shard_id) == (8, 3)


def test_merge_job_checks_the_same_samples(tmp_path):
    calls = run_sbatch_file("merge_shards.sbatch", tmp_path, {"NUM_SHARDS": "4", "DATA_FLAGS": "--max_samples 100"})
    assert calls[0][:2] == ["python", "scripts/merge_shards.py"]
    args = merge_shards.build_parser().parse_args(calls[0][2:])
    assert (args.num_shards, args.dataset_name, args.max_samples) == (4, "GSM8K", 100)
    labels = tmp_path / "labels"  # a fresh folder: calls are appended to a file in it
    labels.mkdir()
    calls = run_sbatch_file("merge_shards.sbatch", labels,
                            {"NUM_SHARDS": "4", "CHECK_DATASET": "0", "OUTPUT": "results/GSM8K/labeled.jsonl"})
    args = merge_shards.build_parser().parse_args(calls[0][2:])
    assert (args.output_path, args.dataset_name) == ("results/GSM8K/labeled.jsonl", None)


def test_label_array_task_labels_its_shard(tmp_path):
    import label

    calls = run_sbatch_file("label_array.sbatch", tmp_path, {"SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_ID": "5",
                                                             "JUDGE": "llm", "SLURM_GPUS_ON_NODE": "4"})
    args = label.build_parser().parse_args(calls[0][2:])
    assert (args.num_shards, args.shard_id, args.judge, args.model_name) == (8, 5, "llm", "Qwen/Qwen2.5-72B-Instruct")
    assert (args.use_vllm, args.tensor_parallel_size) == (True, 4)


def test_submit_script_chains_the_merge_after_the_array(tmp_path):
    calls = run_sbatch_file("submit_inference.sh", tmp_path, {"NUM_SHARDS": "3"})
    assert calls[0][:3] == ["sbatch", "--parsable", "--array=0-2"]
    assert calls[1][:3] == ["sbatch", "--parsable", "--dependency=afterany:123"]
    assert calls[1][-1] == "configs/slurm/merge_shards.sbatch"
