"""inference.py as a user runs it: records on disk, resume after kill -9, one-line errors."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GSM8K_SAMPLES = ROOT / "data" / "samples" / "gsm8k.jsonl"


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "inference.py"), *args, "--no_progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_llm_debate_writes_full_trajectories(tiny_model_path, tmp_path):
    out = tmp_path / "debate.jsonl"
    proc = run_cli("--method_name", "llm_debate", "--test_dataset_name", "GSM8K", "--data_path", str(GSM8K_SAMPLES),
                   "--max_samples", "3", "--model_name", tiny_model_path, "--model_max_tokens", "8",
                   "--output_path", str(out))
    assert proc.returncode == 0, proc.stderr
    records = read_jsonl(out)
    assert len(records) == 3
    for record in records:
        config = record["config"]
        assert len(record["trajectory"]) >= config["num_agents"] * config["num_rounds"]
        for turn in record["trajectory"]:
            assert {"agent", "role", "round", "messages", "text", "answer", "prompt_tokens",
                    "completion_tokens"} <= set(turn)
            assert turn["prompt_tokens"] > 0 and turn["completion_tokens"] > 0
        stats = next(iter(record["token_stats"].values()))
        assert stats["num_llm_calls"] == len(record["trajectory"])
        assert stats["completion_tokens"] == sum(t["completion_tokens"] for t in record["trajectory"])
        assert record["method"] == "llm_debate" and "error" not in record


def test_default_output_path_layout(tiny_model_path, tmp_path):
    proc = run_cli("--method_name", "cot", "--data_path", str(GSM8K_SAMPLES), "--max_samples", "2",
                   "--model_name", tiny_model_path, "--model_max_tokens", "4", "--result_dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    expected = tmp_path / "GSM8K" / Path(tiny_model_path).name / "cot_infer.jsonl"
    assert len(read_jsonl(expected)) == 2
    # A second run finds everything done and writes nothing new.
    again = run_cli("--method_name", "cot", "--data_path", str(GSM8K_SAMPLES), "--max_samples", "2",
                    "--model_name", tiny_model_path, "--model_max_tokens", "4", "--result_dir", str(tmp_path))
    assert again.returncode == 0, again.stderr
    assert len(read_jsonl(expected)) == 2


def _kill_midway_then_resume(model_args: list[str], out: Path, num_samples: int) -> None:
    args = ["--method_name", "llm_debate", "--test_dataset_name", "GSM8K", "--data_path", str(GSM8K_SAMPLES),
            "--max_samples", str(num_samples), "--output_path", str(out), *model_args]
    # One sample at a time before the kill, so it lands half-way; the resumed run batches as usual.
    first_run = [*args, "--max_concurrency", "1"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    command = [sys.executable, str(ROOT / "inference.py"), *first_run, "--no_progress"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            if out.exists() and out.read_text().count("\n") >= num_samples // 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    before = read_jsonl(out)
    assert 0 < len(before) < num_samples
    with out.open("a") as f:  # the kill may land mid-write; make sure a torn tail is exercised too
        f.write('{"id": "torn-by-kill", "que')
    resumed = run_cli(*args, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    after = read_jsonl(out)
    ids = [r["id"] for r in after]
    assert len(ids) == len(set(ids)) == num_samples
    assert after[: len(before)] == before  # nothing written before the kill was lost or rewritten


def test_kill_9_then_resume_completes_without_duplicates(tiny_model_path, tmp_path):
    _kill_midway_then_resume(["--model_name", tiny_model_path, "--model_max_tokens", "48",
                              "--model_temperature", "0"], tmp_path / "run.jsonl", num_samples=8)


@pytest.mark.slow
def test_kill_9_then_resume_on_default_model(tmp_path):
    _kill_midway_then_resume(["--model_max_tokens", "32"], tmp_path / "run.jsonl", num_samples=8)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["unknown_method", "unknown_dataset", "unknown_config", "unknown_config_key",
                                  "malformed_line", "missing_query", "unreachable_endpoint"])
def test_user_errors_are_one_line(case, tmp_path, tiny_model_path):
    good = GSM8K_SAMPLES.read_text().splitlines()
    args = ["--model_name", tiny_model_path, "--data_path", str(GSM8K_SAMPLES), "--output_path",
            str(tmp_path / "out.jsonl")]
    expect = None
    if case == "unknown_method":
        args += ["--method_name", "no_such_method"]
        expect = "no_such_method"
    elif case == "unknown_dataset":
        args += ["--test_dataset_name", "NoSuchSet"]
        expect = "NoSuchSet"
    elif case == "unknown_config":
        args += ["--method_config_name", "config_nope"]
        expect = "config_nope"
    elif case == "unknown_config_key":
        bad = tmp_path / "config_bad_key.yaml"
        bad.write_text("not_a_key: 3\n")
        args += ["--method_name", "cot", "--method_config_name", str(bad)]
        expect = "not_a_key"
    elif case == "malformed_line":
        data = tmp_path / "bad.jsonl"
        data.write_text("\n".join([good[0], "{not json", good[1]]) + "\n")
        args[3] = str(data)
        expect = f"{data}:2"
    elif case == "missing_query":
        data = tmp_path / "noquery.jsonl"
        row = json.loads(good[0])
        row.pop("question")
        data.write_text("\n".join([good[0], json.dumps(row)]) + "\n")
        args[3] = str(data)
        expect = "question"
    elif case == "unreachable_endpoint":
        cfg = tmp_path / "api.yaml"
        port = _closed_port()
        cfg.write_text(f"models:\n  - model_name: remote-model\n    base_url: http://127.0.0.1:{port}/v1\n")
        args = ["--backend", "openai", "--model_name", "remote-model", "--model_api_config", str(cfg),
                "--data_path", str(GSM8K_SAMPLES), "--output_path", str(tmp_path / "out.jsonl")]
        expect = f"127.0.0.1:{port}"
    proc = run_cli(*args, timeout=120)
    assert proc.returncode == 2, proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, proc.stderr
    assert expect in error_lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.jsonl").exists() or case == "unreachable_endpoint"
