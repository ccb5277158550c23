"""The LLM judge: verdicts through Engine.choose, all calls in flight, contexts cut from the middle only."""
from __future__ import annotations

import asyncio
import logging
import re

import pytest
from transformers import AutoTokenizer

from engine.args import EngineArgs
from engine.base import ChatResult, RequestError
from engine.hf_backend import HFEngine
from engine.scripted_backend import ScriptedEngine
from labeling.judge import Judge, JudgeItem, Verdict
from labeling.judge_prompts import SYSTEM_PROMPT, judge_user_prompt
from labeling.llm_judge import MARGIN_TOKENS, LLMJudge, cut_middle_chars

QUERY = "Sam has 7 red balls and 5 blue balls. How many balls does Sam have?"
CANDIDATE = "Step 1: 7 + 5 = 12.\n\nStep 2: So Sam has 12 balls. The answer is \\boxed{12}."


def item(**overrides) -> JudgeItem:
    values = {"query": QUERY, "gt": "12", "candidate": CANDIDATE, "answer": "12", "task_type": "math"}
    values.update(overrides)
    return JudgeItem(**values)


def long_context(num_sentences: int) -> str:
    """Numbered sentences: any repeated or reordered text shows up as a repeated or missing number."""
    return " ".join(f"Speaker {i % 7} said point s{i:05d} about the budget." for i in range(num_sentences))


def sentence_numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\bs(\d{5})\b", text)]


def context_of(user_prompt: str) -> str:
    assert user_prompt.startswith("Context:\n")
    return user_prompt[len("Context:\n"):user_prompt.index("\n\nQuestion:\n")]


def user_prompt_of(call: list[dict[str, str]]) -> str:
    return next(m["content"] for m in call if m["role"] == "user")


def final_answer_of(call: list[dict[str, str]]) -> str:
    return user_prompt_of(call).split("Candidate's final answer:\n")[1].split("\n")[0]


# -- scripted engine: verdict mapping, raw text, concurrency, prompt contents ---------------------------------

async def test_verdicts_are_booleans_or_none_with_the_raw_reply():
    replies = {"11": "False.", "12": "TRUE", "13": "It matches, so true", "14": ""}
    engine = ScriptedEngine(lambda messages, params: replies[final_answer_of(messages)])
    judge: Judge = LLMJudge(engine=engine)  # the contract label.py uses
    assert judge.name == "llm"
    verdicts = await judge.judge_many([item(answer=a) for a in ("11", "12", "13", "14")])
    assert verdicts == [Verdict(False, "llm", "False."), Verdict(True, "llm", "TRUE"),
                        Verdict(None, "llm", "It matches, so true"), Verdict(None, "llm", "")]
    assert await judge.judge_many([]) == []


class GatedEngine(ScriptedEngine):
    """Holds every chat until `expected` of them are waiting at once: passes only if all are in flight together."""

    def __init__(self, expected: int, reply: str = "true"):
        super().__init__(lambda messages, params: reply)
        self.expected = expected
        self.waiting = 0
        self.all_in = asyncio.Event()

    async def _chat(self, messages, params) -> ChatResult:
        self.waiting += 1
        if self.waiting >= self.expected:
            self.all_in.set()
        await asyncio.wait_for(self.all_in.wait(), timeout=10)
        return await super()._chat(messages, params)


async def test_every_judge_call_is_in_flight_at_once():
    engine = GatedEngine(expected=25)
    verdicts = await LLMJudge(engine=engine).judge_many([item(answer=str(i)) for i in range(25)])
    assert [v.is_correct for v in verdicts] == [True] * 25
    assert engine.total.num_llm_calls == 25


class RefusingEngine(ScriptedEngine):
    async def _chat(self, messages, params) -> ChatResult:
        if "refuse me" in user_prompt_of(messages):
            raise RequestError("HTTP 400: prompt too long")
        return await super()._chat(messages, params)


async def test_a_refused_request_is_an_unknown_verdict_and_the_others_go_on():
    engine = RefusingEngine(lambda messages, params: "false")
    verdicts = await LLMJudge(engine=engine).judge_many([item(candidate="refuse me"), item()])
    assert verdicts[0].is_correct is None and "HTTP 400" in verdicts[0].detail
    assert verdicts[1] == Verdict(False, "llm", "false")


def test_prompt_shows_options_references_and_the_final_answer():
    choice = judge_user_prompt(item(task_type="multiple_choice", gt="B", answer="B", choices=["one", "two"]), None)
    assert "(A) one\n(B) two" in choice and "same option" in choice
    several = judge_user_prompt(item(task_type="short_answer", gt=["Paris", "the city of Paris"]), None)
    assert "- Paris\n- the city of Paris" in several and "any one of them" in several
    unmarked = judge_user_prompt(item(answer=None), None)
    assert "not marked" in unmarked and CANDIDATE in unmarked
    assert all(word in SYSTEM_PROMPT for word in ("true", "false"))
    assert unmarked.rstrip().endswith("Reply with one word: true or false.")


# -- truncation: the middle of the context only, never duplicated ---------------------------------------------

async def test_a_30k_token_context_is_cut_in_the_middle_and_the_prompt_fits(tiny_model_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    context = long_context(1200)
    assert len(tokenizer.encode(context, add_special_tokens=False)) >= 30_000
    long_candidate = CANDIDATE + " Checking again: " + "7 and 5 make 12. " * 40
    items = [item(context=context, query=QUERY, gt="12", candidate=c) for c in (CANDIDATE, long_candidate)]
    async with LLMJudge(EngineArgs(model_name=tiny_model_path, backend="hf", device="cpu")) as judge:
        limit = judge.engine.max_model_len
        assert limit == 2048
        prepared = judge.prepare(items)
        prompts = [user_prompt_of(p.messages) for p in prepared]
        for one, prompt in zip(items, prompts):
            # Question, reference and candidate are whole; the prompt fits the model with room for the reply.
            assert f"Question:\n{one.query}\n\n" in prompt and "Reference answer:\n12\n" in prompt
            assert f"Candidate solution:\n{one.candidate}\n\n" in prompt
            text = tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM_PROMPT},
                                                  {"role": "user", "content": prompt}],
                                                 tokenize=False, add_generation_prompt=True)
            assert len(tokenizer.encode(text, add_special_tokens=False)) <= limit - MARGIN_TOKENS
        cut = context_of(prompts[0])
        # The solutions of one record share one cut (one prompt prefix), sized for the longest of them.
        assert cut == context_of(prompts[1])
        head, tail = re.split(r"\n\n\[\.\.\. \d+ tokens of the context omitted here \.\.\.\]\n\n", cut)
        assert context.startswith(head) and context.endswith(tail) and head and tail
        assert len(head) + len(tail) < len(context) // 10
        numbers = sentence_numbers(cut)
        assert len(numbers) == len(set(numbers)), "no sentence may appear twice"
        assert numbers[0] == 0 and numbers[-1] == 1199  # the very start and end of the transcript are kept
        assert abs(len(head) - len(tail)) < len(cut) // 4  # cut from the middle: both sides about even
        verdicts = await judge.judge_many(items)
        assert all(v.is_correct in (True, False) for v in verdicts)
        assert judge.engine.total.prompt_tokens <= 2 * (limit - MARGIN_TOKENS)


async def test_max_context_tokens_caps_the_context(tiny_model_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    context = long_context(300)
    async with LLMJudge(EngineArgs(model_name=tiny_model_path, backend="hf", device="cpu"),
                        max_context_tokens=300) as judge:
        cut = context_of(user_prompt_of(judge.prepare([item(context=context)])[0].messages))
        short = context_of(user_prompt_of(judge.prepare([item(context="A short context.")])[0].messages))
    assert len(tokenizer.encode(cut, add_special_tokens=False)) <= 300
    assert short == "A short context."


def test_multibyte_text_is_never_repeated_at_the_cut(tiny_model_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    engine = ScriptedEngine(lambda messages, params: "true")
    engine.tokenizer = tokenizer  # a local tokenizer without a known context length: the budget is the cap
    context = " ".join(f"Café {i:04d} — naïve résumé ✓ 🙂 {'é' * (i % 5)}" for i in range(800))
    judge = LLMJudge(engine=engine, max_context_tokens=200)
    cut = context_of(user_prompt_of(judge.prepare([item(context=context)])[0].messages))
    head, tail = re.split(r"\n\n\[\.\.\. \d+ tokens of the context omitted here \.\.\.\]\n\n", cut)
    assert context.startswith(head) and context.endswith(tail)
    assert "\ufffd" not in cut
    assert len(tokenizer.encode(cut, add_special_tokens=False)) <= 200


def test_without_a_tokenizer_the_context_is_cut_to_characters(caplog):
    engine = ScriptedEngine(lambda messages, params: "true")
    context = long_context(2000)
    judge = LLMJudge(engine=engine, max_context_tokens=100)
    with caplog.at_level(logging.WARNING, logger="labeling.llm_judge"):
        prepared = judge.prepare([item(context=context), item(context=context + " more")])
    cut = context_of(user_prompt_of(prepared[0].messages))
    assert len(cut) <= 400
    numbers = sentence_numbers(cut)
    assert numbers[0] == 0 and numbers[-1] == 1999 and len(numbers) == len(set(numbers))
    warnings = [r.getMessage() for r in caplog.records if "no local tokenizer" in r.getMessage()]
    assert len(warnings) == 1 and "400 characters" in warnings[0]


def test_cut_middle_chars_keeps_both_ends():
    text = "".join(chr(ord("a") + i % 26) for i in range(10_000))
    cut = cut_middle_chars(text, 500)
    assert len(cut) <= 500 and text.startswith(cut[:100]) and text.endswith(cut[-100:])
    assert cut_middle_chars("short", 500) == "short"


async def test_a_candidate_too_long_for_the_judge_is_not_sent(tiny_model_path):
    engine = HFEngine(tiny_model_path, EngineArgs(device="cpu"))
    async with engine:
        huge = "7 + 5 = 12. " * 600
        verdicts = await LLMJudge(engine=engine).judge_many([item(candidate=huge, context="Some context."), item()])
        assert verdicts[0].is_correct is None and "never cut" in verdicts[0].detail
        assert verdicts[1].is_correct in (True, False)
        assert engine.total.num_llm_calls == 1
        assert engine.model is not None, "an engine handed in is not closed by the judge"


# -- end to end on the tiny model (hf): one forward pass for every item -----------------------------------------

async def test_llm_judge_end_to_end_on_the_tiny_model(tiny_model_path):
    items = [
        item(),
        item(answer="13", candidate="7 + 5 = 13."),
        item(task_type="multiple_choice", gt="B", answer="B", choices=["eleven", "twelve", "thirteen"]),
        item(task_type="short_answer", gt=["Paris", "the city of Paris"], answer="Paris", candidate="Paris."),
        item(task_type="short_answer", gt="the budget", answer=None, candidate="They discussed money.",
             context=long_context(50)),
    ]
    async with LLMJudge(EngineArgs(model_name=tiny_model_path, backend="hf", device="cpu", batch_wait_ms=50)) as judge:
        verdicts = await judge.judge_many(items)
        assert judge.engine.batch_sizes == [len(items)]  # every call in flight: one padded forward pass
        assert judge.engine.total.num_llm_calls == len(items)
        engine = judge.engine
    assert engine.model is None, "the judge closes the engine it built"
    assert len(verdicts) == len(items)
    for verdict in verdicts:
        assert verdict.judge == "llm" and type(verdict.is_correct) is bool and verdict.detail


def test_llm_judge_needs_exactly_one_engine_source():
    with pytest.raises(ValueError):
        LLMJudge()
    with pytest.raises(ValueError):
        LLMJudge(EngineArgs(), engine=ScriptedEngine(lambda m, p: "true"))
