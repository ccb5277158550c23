"""The hf backend on the tiny random model: batching, sampling groups, n, stop strings, token accounting."""
from __future__ import annotations

import asyncio
import os
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from engine.args import EngineArgs
from engine.base import EngineError, track_usage
from engine.hf_backend import HFEngine

# AGENTARK_TEST_DEVICE=cuda runs these tests on a GPU.
DEVICE = os.environ.get("AGENTARK_TEST_DEVICE", "cpu")
PROMPTS = ["What is 2+3?", "Natalia sold clips to 48 of her friends in April. How many in May?", "Say one word."]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def make_engine(path: str, **overrides) -> HFEngine:
    values = {"model_temperature": 0.0, "model_max_tokens": 12, "batch_wait_ms": 50.0, "device": DEVICE, "seed": 0}
    values.update(overrides)
    return HFEngine(path, EngineArgs(**values))


def record_generate(engine: HFEngine) -> list[dict]:
    """Wrap the loaded model's generate to log each call's batch size and settings."""
    calls: list[dict] = []
    original = engine.model.generate

    def generate(**kwargs):
        calls.append({"rows": kwargs["input_ids"].shape[0],
                      **{k: kwargs.get(k) for k in ("do_sample", "temperature", "max_new_tokens", "stop_strings")}})
        return original(**kwargs)

    engine.model.generate = generate
    return calls


@pytest.fixture(scope="module")
def sharp_model_path(tiny_model_path, tmp_path_factory) -> str:
    """The tiny model with larger random weights: its greedy text varies by prompt (the original repeats one token)."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    torch.manual_seed(1)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() > 1:
                weight.normal_(0.0, 0.2)
    out = tmp_path_factory.mktemp("sharp_model")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


async def test_greedy_equals_direct_generate_despite_left_padding(sharp_model_path):
    tokenizer = AutoTokenizer.from_pretrained(sharp_model_path)
    model = AutoModelForCausalLM.from_pretrained(sharp_model_path).to(DEVICE)
    expected = []
    for prompt in PROMPTS:
        text = tokenizer.apply_chat_template(user(prompt), tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(DEVICE)
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
        expected.append((tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True),
                         ids["input_ids"].shape[1]))
    assert len({text for text, _ in expected}) == len(PROMPTS)

    async with make_engine(sharp_model_path) as engine:
        results = await engine.chat_many([user(p) for p in PROMPTS])
        again = await engine.chat(user(PROMPTS[1]))
    assert engine.batch_sizes == [3, 1]  # the three prompts (different lengths) shared one padded batch
    assert [(r.text, r.prompt_tokens) for r in results] == expected
    assert again.text == results[1].text


async def test_concurrent_requests_share_generate_calls(tiny_model_path):
    async with make_engine(tiny_model_path, max_batch_size=5) as engine:
        calls = record_generate(engine)
        results = await asyncio.gather(*(engine.chat(user(f"question {i}")) for i in range(12)))
    assert [c["rows"] for c in calls] == [5, 5, 2]
    assert len(results) == 12 and all(r.completion_tokens > 0 for r in results)


async def test_different_sampling_settings_are_not_mixed(tiny_model_path):
    async with make_engine(tiny_model_path) as engine:
        calls = record_generate(engine)
        requests = [engine.chat(user("a"), max_tokens=4), engine.chat(user("b"), max_tokens=8),
                    engine.chat(user("c"), max_tokens=4), engine.chat(user("d"), temperature=1.0, max_tokens=4),
                    engine.chat(user("e"), max_tokens=4, stop=["\n\n\n"])]
        short_a, long_b, short_c, sampled, stopped = await asyncio.gather(*requests)
    settings = sorted((c["rows"], c["do_sample"], c["max_new_tokens"], str(c["stop_strings"])) for c in calls)
    assert settings == [(1, False, 4, "['\\n\\n\\n']"), (1, False, 8, "None"), (1, True, 4, "None"),
                        (2, False, 4, "None")]
    assert next(c for c in calls if c["do_sample"])["temperature"] == 1.0
    assert short_a.completion_tokens == short_c.completion_tokens == 4
    assert long_b.completion_tokens == 8
    assert sampled.completion_tokens == 4
    assert stopped.finish_reasons == ["stop"] and "\n\n\n" not in stopped.text


async def test_n_choices(tiny_model_path):
    async with make_engine(tiny_model_path) as engine:
        calls = record_generate(engine)
        sampled = await engine.chat(user("hello"), temperature=1.0, n=3, max_tokens=6)
        greedy = await engine.chat(user("hello"), n=2, max_tokens=6)
    assert [c["rows"] for c in calls] == [3, 1]  # greedy choices are identical: one row serves them all
    assert len(sampled.texts) == 3 and len(set(sampled.texts)) > 1
    assert sampled.completion_tokens == 18 and sampled.finish_reasons == ["length"] * 3
    assert greedy.texts[0] == greedy.texts[1] and greedy.completion_tokens == 12


async def test_sampling_is_reproducible_from_the_seed(tiny_model_path):
    texts = []
    for seed in (7, 7, 8):
        async with make_engine(tiny_model_path, seed=seed) as engine:
            texts.append((await engine.chat(user("hello"), temperature=1.0, max_tokens=10)).text)
    assert texts[0] == texts[1] != texts[2]


async def test_stop_string_truncates_text_and_counts_tokens_to_it(tiny_model_path):
    async with make_engine(tiny_model_path, seed=3) as engine:
        full = await engine.chat(user("hello"), temperature=1.0, max_tokens=24)
    stop = next(ch for ch in full.text[3:] if ch.isalnum())
    cut = full.text.find(stop)
    async with make_engine(tiny_model_path, seed=3) as engine:
        calls = record_generate(engine)
        stopped = await engine.chat(user("hello"), temperature=1.0, max_tokens=24, stop=[stop, "never-seen"])
    assert calls[0]["stop_strings"] == [stop, "never-seen"]
    assert stopped.text == full.text[:cut]
    assert stopped.finish_reasons == ["stop"]
    assert 0 < stopped.completion_tokens < full.completion_tokens == 24


async def test_token_counts_include_eos_and_exclude_padding(tiny_model_path):
    async with make_engine(tiny_model_path) as engine:
        tokenizer = engine.tokenizer
        eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
        word = tokenizer.convert_tokens_to_ids("The")
        assert eos != pad and word not in (eos, pad)

        def generate(input_ids, attention_mask, **kwargs):
            rows = [[word, word, eos, pad, pad], [word] * 5]  # one row ends early, one runs to the limit
            return torch.cat([input_ids, torch.tensor(rows, device=input_ids.device)], dim=1)

        engine.model.generate = generate
        ended, truncated = await asyncio.gather(engine.chat(user("a"), max_tokens=5),
                                                engine.chat(user("bb bb bb"), max_tokens=5))
    assert (ended.completion_tokens, ended.finish_reasons, ended.text) == (3, ["stop"], "TheThe")
    assert (truncated.completion_tokens, truncated.finish_reasons) == (5, ["length"])
    assert truncated.prompt_tokens > ended.prompt_tokens  # unpadded lengths, not the batch width


async def test_usage_lands_on_each_tasks_meter(tiny_model_path):
    async with make_engine(tiny_model_path) as engine:
        async def sample(max_tokens: int, calls: int):
            usage = track_usage()
            results = [await engine.chat(user("x"), max_tokens=max_tokens) for _ in range(calls)]
            return usage, results

        (usage_a, results_a), (usage_b, results_b) = await asyncio.gather(sample(3, 2), sample(5, 1))
    assert usage_a.as_dict() == {"num_llm_calls": 2, "prompt_tokens": 2 * results_a[0].prompt_tokens,
                                 "completion_tokens": 6}
    assert usage_b.as_dict() == {"num_llm_calls": 1, "prompt_tokens": results_b[0].prompt_tokens,
                                 "completion_tokens": 5}
    assert engine.total.num_llm_calls == 3


async def test_failed_batch_raises_in_every_caller_and_engine_recovers(tiny_model_path):
    async with make_engine(tiny_model_path) as engine:
        original = engine.model.generate

        def broken(**kwargs):
            raise RuntimeError("out of memory")

        engine.model.generate = broken
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(engine.chat(user(str(i))) for i in range(3)), return_exceptions=True), timeout=30)
        assert [type(o) for o in outcomes] == [RuntimeError] * 3
        engine.model.generate = original
        assert (await engine.chat(user("again"), max_tokens=2)).completion_tokens == 2


async def test_close_during_a_batch_fails_its_requests_instead_of_hanging(tiny_model_path):
    engine = make_engine(tiny_model_path)
    await engine.start()
    original = engine.model.generate

    def slow(**kwargs):
        time.sleep(0.5)
        return original(**kwargs)

    engine.model.generate = slow
    running = asyncio.ensure_future(engine.chat(user("slow")))
    await asyncio.sleep(0.2)
    await engine.close()
    with pytest.raises(EngineError, match="closed"):
        await asyncio.wait_for(running, timeout=10)


async def test_bad_model_path_is_a_one_line_engine_error(tmp_path):
    engine = make_engine(str(tmp_path / "no-such-model"))
    with pytest.raises(EngineError) as info:
        await engine.start()
    assert "no-such-model" in str(info.value) and "\n" not in str(info.value)


async def test_bad_dtype_is_an_engine_error(tiny_model_path):
    with pytest.raises(EngineError, match="--dtype"):
        await make_engine(tiny_model_path, dtype="float99").start()


@pytest.fixture(scope="module")
def bos_model_path(sharp_model_path, tmp_path_factory) -> str:
    """The sharp model with a tokenizer that adds BOS by default, as Llama's and many base models' do."""
    from tokenizers.processors import TemplateProcessing

    tokenizer = AutoTokenizer.from_pretrained(sharp_model_path)
    bos = (tokenizer.bos_token, tokenizer.bos_token_id)
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(single=f"{bos[0]} $A", special_tokens=[bos])
    out = tmp_path_factory.mktemp("bos_model")
    AutoModelForCausalLM.from_pretrained(sharp_model_path).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


async def test_complete_tokenizes_the_raw_prompt_with_bos_and_equals_generate(bos_model_path):
    tokenizer = AutoTokenizer.from_pretrained(bos_model_path)
    model = AutoModelForCausalLM.from_pretrained(bos_model_path).to(DEVICE)
    expected = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt").to(DEVICE)
        assert ids["input_ids"][0, 0].item() == tokenizer.bos_token_id
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
        expected.append((tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True),
                         ids["input_ids"].shape[1]))
    async with make_engine(bos_model_path) as engine:
        usage = track_usage()
        results = await asyncio.gather(*(engine.complete(p) for p in PROMPTS))
    assert engine.batch_sizes == [3]  # raw prompts batch like chats
    assert [(r.text, r.prompt_tokens) for r in results] == expected
    assert all(r.finish_reasons[0] in ("stop", "length") for r in results)
    assert usage.num_llm_calls == 3 and usage.prompt_tokens == sum(length for _, length in expected)


async def test_chat_and_raw_prompts_share_a_batch_without_changing_results(bos_model_path):
    async with make_engine(bos_model_path) as engine:
        alone_chat = await engine.chat(user(PROMPTS[0]))
        alone_raw = await engine.complete(PROMPTS[1])
        mixed_chat, mixed_raw = await asyncio.gather(engine.chat(user(PROMPTS[0])), engine.complete(PROMPTS[1]))
    assert engine.batch_sizes == [1, 1, 2]
    assert (mixed_chat.text, mixed_chat.prompt_tokens) == (alone_chat.text, alone_chat.prompt_tokens)
    assert (mixed_raw.text, mixed_raw.prompt_tokens) == (alone_raw.text, alone_raw.prompt_tokens)
    # The chat template writes its own BOS: the chat prompt must not get a second one.
    tokenizer = AutoTokenizer.from_pretrained(bos_model_path)
    template = tokenizer.apply_chat_template(user(PROMPTS[0]), tokenize=False, add_generation_prompt=True)
    assert alone_chat.prompt_tokens == len(tokenizer(template, add_special_tokens=False)["input_ids"])
