"""The openai backend against a real aiohttp server on 127.0.0.1 (tests/fake_openai_server.py)."""
from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
import yaml

from engine import EngineArgs, EngineError, build_engine, track_usage
from engine.base import RequestError
from engine.openai_backend import PLACEHOLDER_API_KEY, OpenAIEngine, load_endpoints
from tests.fake_openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
MODEL = "fake-model"
SECRET = "sk-test-DO-NOT-LEAK-1234567890"
HELLO = [{"role": "user", "content": "hello there general kenobi"}]


def write_config(tmp_path: Path, entries: list[dict]) -> str:
    path = tmp_path / "model_api_config.yaml"
    path.write_text(yaml.safe_dump({"models": entries}))
    return str(path)


def make_engine(tmp_path: Path, base_urls: list[str], **overrides) -> OpenAIEngine:
    entries = [{"model_name": MODEL, "base_url": url} for url in base_urls]
    values = {"model_name": MODEL, "backend": "openai", "model_api_config": write_config(tmp_path, entries),
              "model_temperature": 0.0, "model_max_tokens": 64, "max_retries": 3, "request_timeout": 10.0}
    values.update(overrides)
    return build_engine(EngineArgs(**values))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def exception_texts(err: BaseException) -> str:
    """The message of an exception and of everything chained to it."""
    texts = []
    seen: BaseException | None = err
    while seen is not None:
        texts.append(f"{type(seen).__name__}: {seen} {seen.args!r}")
        seen = seen.__cause__ or seen.__context__
    return "\n".join(texts)


async def test_chat_returns_text_and_usage(tmp_path):
    async with FakeOpenAIServer() as server, make_engine(tmp_path, [server.base_url]) as engine:
        usage = track_usage()
        result = await engine.chat(HELLO)
    assert result.text == "hello there general kenobi"
    assert (result.prompt_tokens, result.completion_tokens) == (4, 4)
    assert result.finish_reasons == ["stop"]
    assert usage.as_dict() == {"num_llm_calls": 1, "prompt_tokens": 4, "completion_tokens": 4}
    assert server.chat_requests[0].authorization == f"Bearer {PLACEHOLDER_API_KEY}"


async def test_sampling_params_are_sent_as_given(tmp_path):
    async with FakeOpenAIServer() as server, make_engine(tmp_path, [server.base_url], seed=7) as engine:
        greedy = await engine.chat(HELLO)
        sampled = await engine.chat(HELLO, temperature=0.7, top_p=0.9, max_tokens=2, n=3, stop="\n\n")
    first, second = (r.body for r in server.chat_requests)
    assert first["temperature"] == 0 and first["max_tokens"] == 64 and first["seed"] == 7
    assert first["model"] == MODEL and first["messages"] == HELLO and "stop" not in first
    assert {k: second[k] for k in ("temperature", "top_p", "max_tokens", "n", "stop")} == {
        "temperature": 0.7, "top_p": 0.9, "max_tokens": 2, "n": 3, "stop": ["\n\n"]}
    assert greedy.texts == ["hello there general kenobi"]
    assert sampled.texts == ["hello there"] * 3 and sampled.finish_reasons == ["length"] * 3
    assert sampled.completion_tokens == 6


async def test_missing_usage_counts_the_call_with_zero_tokens(tmp_path):
    async with FakeOpenAIServer(include_usage=False) as server, make_engine(tmp_path, [server.base_url]) as engine:
        usage = track_usage()
        result = await engine.chat(HELLO)
    assert result.text == "hello there general kenobi"
    assert usage.as_dict() == {"num_llm_calls": 1, "prompt_tokens": 0, "completion_tokens": 0}


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_retries_transient_errors_until_success(tmp_path, status):
    async with FakeOpenAIServer() as server, make_engine(tmp_path, [server.base_url], max_retries=3) as engine:
        server.fail_next(2, status)
        result = await engine.chat(HELLO)
    assert result.text == "hello there general kenobi"
    assert [r.status for r in server.chat_requests] == [status, status, 200]
    assert engine.total.num_llm_calls == 1


async def test_backoff_waits_without_retry_after_header(tmp_path):
    # No retry-after header: the client's own exponential backoff applies (0.5 s minus up to 25% jitter).
    # Load only lengthens a sleep, so the lower bound is safe; the upper one only rules out a wait far
    # beyond the client's backoff cap (8 s).
    async with FakeOpenAIServer() as server, make_engine(tmp_path, [server.base_url]) as engine:
        server.fail_next(1, 500, retry_after_ms=None)
        began = time.monotonic()
        await engine.chat(HELLO)
        elapsed = time.monotonic() - began
    assert [r.status for r in server.chat_requests] == [500, 200]
    assert 0.3 < elapsed < 30


async def test_retries_a_timed_out_request(tmp_path):
    async with FakeOpenAIServer() as server:
        never = server.hold_next()  # the first request never answers; the retry answers at once
        async with make_engine(tmp_path, [server.base_url], request_timeout=2.0) as engine:
            result = await engine.chat(HELLO)
        never.set()
    assert result.text == "hello there general kenobi"
    assert len(server.chat_requests) == 2


async def test_request_timed_out_on_every_retry_fails_that_request_only(tmp_path):
    async with FakeOpenAIServer() as server:
        releases = [server.hold_next() for _ in range(2)]
        async with make_engine(tmp_path, [server.base_url], request_timeout=1.0, max_retries=1) as engine:
            with pytest.raises(RequestError, match="request timed out"):
                await engine.chat(HELLO)
            assert (await engine.chat(HELLO)).text == "hello there general kenobi"
        for release in releases:
            release.set()


async def test_gives_up_after_max_retries_with_one_line_error(tmp_path):
    async with FakeOpenAIServer() as server, make_engine(tmp_path, [server.base_url], max_retries=2) as engine:
        server.fail_next(10, 503)
        with pytest.raises(EngineError) as caught:
            await engine.chat(HELLO)
    assert len(server.chat_requests) == 3
    message = str(caught.value)
    assert "\n" not in message and server.base_url in message and "503" in message


@pytest.mark.parametrize("status", [400, 413, 422])
async def test_request_errors_fail_one_request_not_the_engine(tmp_path, status, monkeypatch):
    monkeypatch.setenv("AGENTARK_TEST_KEY", SECRET)
    async with FakeOpenAIServer() as server:
        config = write_config(tmp_path, [{"model_name": MODEL, "base_url": server.base_url,
                                          "api_key_env": "AGENTARK_TEST_KEY"}])
        args = EngineArgs(model_name=MODEL, backend="openai", model_api_config=config)
        async with build_engine(args) as engine:
            server.fail_next(1, status, message="This model's maximum context length is 32 tokens;\n"
                                                "you sent {authorization}")
            with pytest.raises(RequestError) as caught:
                await engine.chat(HELLO)
            assert (await engine.chat(HELLO)).text == "hello there general kenobi"
    assert [r.status for r in server.chat_requests] == [status, 200]  # not retried
    message = str(caught.value)
    assert not isinstance(caught.value, EngineError) and "\n" not in message
    assert f"HTTP {status}: This model's maximum context length is 32 tokens; you sent Bearer ***" in message
    assert SECRET not in exception_texts(caught.value)


@pytest.mark.parametrize(("status", "expected"), [(401, "HTTP 401"), (403, "HTTP 403"), (404, "HTTP 404"),
                                                  (429, "HTTP 429"), (503, "HTTP 503")])
async def test_server_and_setup_errors_end_the_run(tmp_path, status, expected):
    async with FakeOpenAIServer() as server, make_engine(tmp_path, [server.base_url], max_retries=1) as engine:
        server.fail_next(2, status)
        with pytest.raises(EngineError, match=expected) as caught:
            await engine.chat(HELLO)
    assert "\n" not in str(caught.value)


async def test_server_gone_mid_run_ends_the_run(tmp_path):
    async with FakeOpenAIServer() as server:
        engine = make_engine(tmp_path, [server.base_url], max_retries=0)
        await engine.start()
    with pytest.raises(EngineError, match="connection failed"):
        await engine.chat(HELLO)
    await engine.close()


async def test_load_spreads_over_endpoints(tmp_path):
    async with (
        FakeOpenAIServer(delay_s=0.02) as first,
        FakeOpenAIServer(delay_s=0.02) as second,
        make_engine(tmp_path, [first.base_url, second.base_url]) as engine,
    ):
        await engine.chat_many([HELLO] * 10)  # concurrent
        for _ in range(4):  # one at a time: ties rotate
            await engine.chat(HELLO)
    assert len(first.chat_requests) == 7 and len(second.chat_requests) == 7


async def test_busy_endpoint_is_skipped(tmp_path):
    async with (
        FakeOpenAIServer() as slow,
        FakeOpenAIServer() as fast,
        make_engine(tmp_path, [slow.base_url, fast.base_url]) as engine,
    ):
        release = slow.hold_next()  # busy until the test says so, however slow the machine
        held = asyncio.create_task(engine.chat(HELLO))
        await slow.wait_in_flight(1)
        for _ in range(4):
            await engine.chat(HELLO)
        release.set()
        await held
    assert len(slow.chat_requests) == 1 and len(fast.chat_requests) == 4


async def test_concurrency_is_bounded(tmp_path):
    async with (
        FakeOpenAIServer() as server,
        make_engine(tmp_path, [server.base_url], max_concurrency=3) as engine,
    ):
        gate = server.hold_all()
        calls = asyncio.create_task(engine.chat_many([HELLO] * 12))
        await server.wait_in_flight(3)
        # Give any request beyond the bound a chance to arrive: load can only hide a bug here, never fake one.
        await asyncio.sleep(0.2)
        assert server.in_flight == 3
        gate.set()
        results = await calls
    assert len(results) == 12 and len(server.chat_requests) == 12
    assert server.max_in_flight == 3


async def test_unreachable_endpoint_fails_fast_at_start(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    engine = make_engine(tmp_path, [url], max_retries=5, request_timeout=600)
    began = time.monotonic()
    with pytest.raises(EngineError) as caught:
        await engine.start()
    await engine.close()
    # 5 retries with backoff would take > 11 s and a 600 s timeout far longer; a refused connection
    # answers at once, so this margin holds on a loaded machine.
    assert time.monotonic() - began < 10
    assert url in str(caught.value) and "\n" not in str(caught.value)


async def test_start_rejects_endpoint_serving_another_model(tmp_path):
    async with FakeOpenAIServer(models=["other/model"]) as server:
        engine = make_engine(tmp_path, [server.base_url])
        with pytest.raises(EngineError, match="does not serve model 'fake-model'.*other/model"):
            await engine.start()
        await engine.close()


async def test_start_checks_every_endpoint(tmp_path):
    async with FakeOpenAIServer() as server:
        dead = f"http://127.0.0.1:{closed_port()}/v1"
        engine = make_engine(tmp_path, [server.base_url, dead])
        with pytest.raises(EngineError, match=dead):
            await engine.start()
        await engine.close()


def test_missing_api_key_env_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("AGENTARK_TEST_KEY", raising=False)
    config = write_config(tmp_path, [{"model_name": MODEL, "base_url": "http://127.0.0.1:9/v1",
                                      "api_key_env": "AGENTARK_TEST_KEY"}])
    with pytest.raises(EngineError, match="AGENTARK_TEST_KEY is not set"):
        build_engine(EngineArgs(model_name=MODEL, backend="openai", model_api_config=config))


async def test_key_is_sent_from_env_and_never_leaks_into_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTARK_TEST_KEY", SECRET)
    async with FakeOpenAIServer() as server:
        config = write_config(tmp_path, [{"model_name": MODEL, "base_url": server.base_url,
                                          "api_key_env": "AGENTARK_TEST_KEY"}])
        args = EngineArgs(model_name=MODEL, backend="openai", model_api_config=config, max_retries=1)
        async with build_engine(args) as engine:
            await engine.chat(HELLO)
            assert server.chat_requests[-1].authorization == f"Bearer {SECRET}"
            server.fail_next(2, 500, message="upstream broke; you sent {authorization}")
            with pytest.raises(EngineError) as at_chat:
                await engine.chat(HELLO)
        server.fail_next(1, 401, message="Incorrect API key provided: {authorization}")
        engine = build_engine(args)
        with pytest.raises(EngineError) as at_start:
            await engine.start()
        await engine.close()
    assert server.requests[-1].status == 401
    assert "HTTP 500: upstream broke; you sent Bearer ***" in str(at_chat.value)
    assert "HTTP 401: Incorrect API key provided: Bearer ***" in str(at_start.value)
    for caught in (at_chat, at_start):
        assert SECRET not in exception_texts(caught.value)
        assert SECRET not in repr(caught.value)


async def test_local_endpoint_never_sends_openai_api_key(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    async with FakeOpenAIServer() as server, make_engine(tmp_path, [server.base_url]) as engine:
        await engine.chat(HELLO)
    assert all(r.authorization == f"Bearer {PLACEHOLDER_API_KEY}" for r in server.requests)


async def test_close_closes_every_client(tmp_path):
    engine = make_engine(tmp_path, ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"])
    await engine.close()
    assert all(slot.client.is_closed() for slot in engine._slots)


def test_unknown_model_lists_known_ones(tmp_path):
    config = write_config(tmp_path, [{"model_name": "a/one", "base_url": "http://x/v1"},
                                     {"model_name": "b/two", "base_url": "http://y/v1"}])
    with pytest.raises(EngineError, match=r"'c/three' is not in .*known models: a/one, b/two"):
        build_engine(EngineArgs(model_name="c/three", backend="openai", model_api_config=config))


@pytest.mark.parametrize(("text", "expected"), [
    ("models:\n  - model_name: m\n", r"models\[0\]: missing or empty field 'base_url'"),
    ("models:\n  - {model_name: m, base_url: u, api_key: sk-x}\n", r"models\[0\]: unknown key\(s\) api_key"),
    ("endpoints: []\n", "expected a top-level 'models:' list"),
    ("models:\n  - model_name: m\n   base_url: [\n", r"model_api_config.yaml:\d+: invalid YAML"),
])
def test_malformed_config_is_one_line_error(tmp_path, text, expected):
    path = tmp_path / "model_api_config.yaml"
    path.write_text(text)
    with pytest.raises(EngineError, match=expected) as caught:
        load_endpoints(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(EngineError, match="nowhere.yaml: model API config not found"):
        load_endpoints(tmp_path / "nowhere.yaml")


def test_shipped_config_loads_from_any_working_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    endpoints = load_endpoints(EngineArgs().model_api_config)
    by_name = {e.model_name: e for e in endpoints}
    assert by_name["Qwen/Qwen3-8B"].base_url == "http://127.0.0.1:8000/v1"
    assert by_name["Qwen/Qwen3-8B"].api_key_env is None
    assert by_name["gpt-4o-mini"].api_key_env == "OPENAI_API_KEY"
    assert "sk-" not in (ROOT / "configs" / "model_api_config.yaml").read_text()


async def test_per_request_seed_false_sends_no_seed(tmp_path):
    # A CPU `vllm serve` dies on seeded sampling requests: such an endpoint is marked per_request_seed: false.
    async with FakeOpenAIServer() as seeded, FakeOpenAIServer() as unseeded:
        config = write_config(tmp_path, [{"model_name": MODEL, "base_url": seeded.base_url},
                                         {"model_name": MODEL, "base_url": unseeded.base_url,
                                          "per_request_seed": False}])
        args = EngineArgs(model_name=MODEL, backend="openai", model_api_config=config, seed=7)
        async with build_engine(args) as engine:
            await engine.chat_many([HELLO] * 4, temperature=0.7)
    assert len(seeded.chat_requests) == 2 and len(unseeded.chat_requests) == 2
    assert all(r.body["seed"] == 7 for r in seeded.chat_requests)
    assert all("seed" not in r.body for r in unseeded.chat_requests)


@pytest.mark.parametrize("value", ["no", 0, None])
def test_per_request_seed_must_be_a_bool(tmp_path, value):
    path = tmp_path / "model_api_config.yaml"
    path.write_text(yaml.safe_dump({"models": [{"model_name": MODEL, "base_url": "http://x/v1",
                                                "per_request_seed": value}]}))
    with pytest.raises(EngineError, match=r"models\[0\]: 'per_request_seed' must be true or false") as caught:
        load_endpoints(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert load_endpoints(write_config(tmp_path, [{"model_name": MODEL, "base_url": "u"}]))[0].per_request_seed


async def test_start_probe_is_not_retried(tmp_path):
    async with FakeOpenAIServer() as server:
        server.fail_next(1, 503)
        engine = make_engine(tmp_path, [server.base_url], max_retries=5, request_timeout=600)
        with pytest.raises(EngineError, match="HTTP 503"):
            await engine.start()
        await engine.close()
    assert [r.status for r in server.requests] == [503]


async def test_complete_sends_a_raw_prompt_with_seed_and_usage(tmp_path):
    async with FakeOpenAIServer() as server, make_engine(tmp_path, [server.base_url], seed=3) as engine:
        usage = track_usage()
        result = await engine.complete("Question: one two three\nAnswer:", max_tokens=3, n=2, stop="\n\n")
    (request,) = server.completion_requests
    assert not server.chat_requests
    assert request.body["prompt"] == "Question: one two three\nAnswer:" and "messages" not in request.body
    assert {k: request.body[k] for k in ("model", "max_tokens", "n", "seed", "stop", "temperature")} == {
        "model": MODEL, "max_tokens": 3, "n": 2, "seed": 3, "stop": ["\n\n"], "temperature": 0}
    assert result.texts == ["Question: one two"] * 2 and result.finish_reasons == ["length"] * 2
    assert usage.as_dict() == {"num_llm_calls": 1, "prompt_tokens": 5, "completion_tokens": 6}


async def test_complete_classifies_errors_like_chat(tmp_path):
    async with FakeOpenAIServer() as server, make_engine(tmp_path, [server.base_url], max_retries=0) as engine:
        server.reject("too long", 400, message="prompt is too long")
        with pytest.raises(RequestError, match="HTTP 400: prompt is too long"):
            await engine.complete("this prompt is too long")
        server.fail_next(1, 401)
        with pytest.raises(EngineError, match="HTTP 401"):
            await engine.complete("fine")
    assert engine.total.num_llm_calls == 0
