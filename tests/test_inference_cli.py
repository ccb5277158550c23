"""inference.py as a user runs it: records on disk, resume after kill -9, one-line errors."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.fake_openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
GSM8K_SAMPLES = ROOT / "data" / "samples" / "gsm8k.jsonl"
FAKE_MODEL = "fake-model"
SECRET = "sk-test-DO-NOT-LEAK-0987654321"


def _cli_env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "inference.py"), *args, "--no_progress"],
                          cwd=ROOT, env=_cli_env(), capture_output=True, text=True, timeout=timeout)


async def run_cli_async(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """run_cli in a worker thread, so a fake server on this test's event loop keeps answering."""
    return await asyncio.to_thread(run_cli, *args, timeout=timeout)


def _openai_args(tmp_path: Path, server: FakeOpenAIServer, *extra: str, key_env: str | None = None) -> list[str]:
    entry = {"model_name": FAKE_MODEL, "base_url": server.base_url}
    if key_env:
        entry["api_key_env"] = key_env
    config = tmp_path / "api.yaml"
    config.write_text(yaml.safe_dump({"models": [entry]}))
    return ["--backend", "openai", "--model_name", FAKE_MODEL, "--model_api_config", str(config),
            "--test_dataset_name", "GSM8K", "--data_path", str(GSM8K_SAMPLES), "--max_retries", "0", *extra]


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


def _resume_after_kill(args: list[str], out: Path, before: list[dict], num_samples: int) -> None:
    """Append a torn line (as a kill mid-write leaves), rerun, and check each id is written exactly once."""
    assert 0 < len(before) < num_samples
    with out.open("a") as f:
        f.write('{"id": "torn-by-kill", "que')
    resumed = run_cli(*args, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    after = read_jsonl(out)
    ids = [r["id"] for r in after]
    assert len(ids) == len(set(ids)) == num_samples
    assert after[: len(before)] == before  # nothing written before the kill was lost or rewritten


async def test_kill_9_then_resume_completes_without_duplicates(tmp_path):
    # The server holds every request of the third sample, so the run (one sample at a time) cannot
    # finish: the kill lands after two records and before the end, however loaded the machine is.
    out = tmp_path / "run.jsonl"
    questions = [json.loads(line)["question"] for line in GSM8K_SAMPLES.read_text().splitlines()]
    async with FakeOpenAIServer(models=[FAKE_MODEL]) as server:
        args = _openai_args(tmp_path, server, "--method_name", "llm_debate", "--max_samples", "8",
                            "--output_path", str(out))
        server.hold(questions[2])
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "inference.py"), *args, "--max_concurrency", "1", "--no_progress",
            cwd=ROOT, env=_cli_env(), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(300):
                while not (out.exists() and out.read_text().count("\n") >= 2 and server.in_flight >= 1):
                    assert proc.returncode is None, (await proc.stderr.read()).decode()
                    await asyncio.sleep(0.02)
            proc.kill()
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        before = read_jsonl(out)
        assert [r["query"] for r in before] == questions[:2]
        server.clear_rules()
        await asyncio.to_thread(_resume_after_kill, args, out, before, 8)


@pytest.mark.slow
def test_kill_9_then_resume_on_default_model(tmp_path):
    out = tmp_path / "run.jsonl"
    num_samples = 8
    args = ["--method_name", "llm_debate", "--test_dataset_name", "GSM8K", "--data_path", str(GSM8K_SAMPLES),
            "--max_samples", str(num_samples), "--output_path", str(out), "--model_max_tokens", "32"]
    # One sample at a time, killed at the first record: seven samples of six calls each are left, which
    # takes the default model far longer than one poll interval.
    command = [sys.executable, str(ROOT / "inference.py"), *args, "--max_concurrency", "1", "--no_progress"]
    proc = subprocess.Popen(command, cwd=ROOT, env=_cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            if out.exists() and out.read_text().count("\n") >= 1:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    _resume_after_kill(args, out, read_jsonl(out), num_samples)


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


async def test_openai_run_records_a_refused_sample_and_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTARK_TEST_KEY", SECRET)
    out = tmp_path / "debate.jsonl"
    questions = [json.loads(line)["question"] for line in GSM8K_SAMPLES.read_text().splitlines()]
    async with FakeOpenAIServer(models=[FAKE_MODEL]) as server:
        args = _openai_args(tmp_path, server, "--method_name", "llm_debate", "--max_samples", "3",
                            "--output_path", str(out), key_env="AGENTARK_TEST_KEY")
        # The second sample's round 0 (3 agents) passes; its round 1 is too long for the server.
        server.reject(questions[1], 400, after=3, message="This model's maximum context length is 64 tokens. "
                                                          "However, you requested 90 tokens ({authorization}).")
        proc = await run_cli_async(*args)
        assert proc.returncode == 0, proc.stderr
        records = {r["id"]: r for r in read_jsonl(out)}
        assert len(records) == 3 and SECRET not in out.read_text()
        failed = [r for r in records.values() if "error" in r]
        assert len(failed) == 1 and failed[0]["query"] == questions[1]
        error = failed[0]["error"]
        assert error.startswith("RequestError: ") and "\n" not in error
        assert "HTTP 400: This model's maximum context length is 64 tokens" in error and "Bearer ***" in error
        assert [(t["round"], t["agent"]) for t in failed[0]["trajectory"]] == [(0, 0), (0, 1), (0, 2)]
        assert all(t["finish_reason"] in ("stop", "length") for t in failed[0]["trajectory"])
        assert next(iter(failed[0]["token_stats"].values()))["num_llm_calls"] == 3
        for record in records.values():
            if "error" not in record:
                assert len(record["trajectory"]) == 6 and record["num_truncated_turns"] == 0
        assert "1 samples failed" in proc.stderr

        server.clear_rules()
        retried = await run_cli_async(*args, "--retry_errors")
        assert retried.returncode == 0, retried.stderr
        records = read_jsonl(out)
        assert len(records) == 3 and all("error" not in r and len(r["trajectory"]) == 6 for r in records)


@pytest.mark.parametrize(("status", "expected"), [(404, "HTTP 404"), (401, "HTTP 401")])
async def test_openai_run_stops_with_one_line_when_the_server_refuses_everything(tmp_path, status, expected):
    async with FakeOpenAIServer(models=[FAKE_MODEL]) as server:
        server.reject("", status)  # every generation request; GET /models still answers
        proc = await run_cli_async(*_openai_args(tmp_path, server, "--method_name", "cot", "--max_samples", "3",
                                                 "--output_path", str(tmp_path / "out.jsonl")))
    assert proc.returncode == 2, proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and expected in error_lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def _main_logs(argv: list[str], caplog) -> tuple[int, list[str]]:
    import inference

    with caplog.at_level(logging.WARNING, logger="engine.args"):
        code = inference.main(argv)
    return code, [r.getMessage() for r in caplog.records if r.name == "engine.args"]


def test_flags_of_another_backend_are_warned_about(tmp_path, caplog, tiny_model_path):
    # Given explicitly, even at their default values: a flag typed for another backend does nothing.
    code, warnings = _main_logs(["--backend", "hf", "--method_name", "cot", "--data_path", str(GSM8K_SAMPLES),
                                 "--max_samples", "1",
                                 "--model_name", tiny_model_path, "--model_max_tokens", "2", "--no_progress",
                                 "--output_path", str(tmp_path / "hf.jsonl"), "--max_retries", "5",
                                 "--request_timeout=600", "--tensor_parallel", "2", "--enforce_eager",
                                 "--max_batch_size", "4", "--device", "cpu"], caplog)
    assert code == 0
    assert warnings == ["--enforce_eager is a flag of the vllm backend; it does nothing with --backend hf",
                        "--max_retries is a flag of the openai backend; it does nothing with --backend hf",
                        "--request_timeout is a flag of the openai backend; it does nothing with --backend hf",
                        "--tensor_parallel_size is a flag of the vllm backend; it does nothing with --backend hf"]


def test_vllm_only_flags_choose_vllm_when_no_backend_is_given():
    # The seed's label command gives --tensor_parallel_size 4 and no backend: that means vLLM.
    import inference
    from engine.args import EngineArgs, parse_args_with_explicit

    def backend(*argv: str) -> str:
        return EngineArgs.from_namespace(parse_args_with_explicit(inference.build_parser(), list(argv))).backend

    assert backend("--tensor_parallel_size", "4") == "vllm"
    assert backend("--gpu_memory_utilization", "0.8") == "vllm"
    assert backend("--tensor_parallel_size", "4", "--backend", "hf") == "hf"  # said explicitly: warned, not changed
    assert backend("--enforce_eager") == "hf"
    assert backend() == "hf"


def test_openai_backend_warns_about_local_model_flags(tmp_path, caplog):
    config = tmp_path / "api.yaml"
    config.write_text(f"models:\n  - model_name: m\n    base_url: http://127.0.0.1:{_closed_port()}/v1\n")
    code, warnings = _main_logs(["--backend", "openai", "--model_name", "m", "--model_api_config", str(config),
                                 "--data_path", str(GSM8K_SAMPLES), "--output_path", str(tmp_path / "o.jsonl"),
                                 "--batch_wait_ms", "5", "--gpu_memory_utilization", "0.5", "--dtype", "auto",
                                 "--max_concurrency", "4", "--model_temperature", "0.5"], caplog)
    assert code == 2  # nothing listens on the port; the warnings come first
    assert warnings == ["--batch_wait_ms is a flag of the hf backend; it does nothing with --backend openai",
                        "--dtype is a flag of the hf and vllm backends; it does nothing with --backend openai",
                        "--gpu_memory_utilization is a flag of the vllm backend; it does nothing with --backend openai"]


def test_use_vllm_with_backend_openai_is_an_error(tmp_path, capsys):
    import inference

    code = inference.main(["--backend", "openai", "--use_vllm", "--model_name", "m", "--data_path", str(GSM8K_SAMPLES),
                           "--output_path", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == ("error: --use_vllm (an alias for --backend vllm) conflicts with --backend openai; "
                           "give one of them")
