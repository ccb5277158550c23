"""The LLM judge (`--judge llm`): a judge model decides whether each candidate's final answer matches the reference.

Use it as an async context manager that builds, starts and closes its own engine:

    async with LLMJudge(EngineArgs(model_name="Qwen/Qwen2.5-72B-Instruct", backend="vllm")) as judge:
        verdicts = await judge.judge_many(items)      # one Verdict per JudgeItem, in order

or hand it an engine you own (it is started if needed and never closed by the judge):

    judge = LLMJudge(engine=engine)

Each item becomes one chat (labeling/judge_prompts.py) sent with `Engine.choose(messages, ("true", "false"))`,
which is greedy and restricted to the two words where the backend can (hf: one forward pass comparing the
words' first-token probabilities; vllm: structured outputs with a choice) and parsed strictly elsewhere
(openai, scripted). A reply that names neither word is a verdict of None with the raw reply in `detail`,
never False; so is a request the backend refuses (RequestError) or a prompt that cannot fit the model.
Every call of every item is in flight at once (`asyncio.gather`), so the engine batches them.

Long contexts (a QMSum transcript, a QASPER paper) are cut from the middle only: the head and the tail are
kept, a marker says how much was left out, and nothing is repeated; question, options, reference and
candidate always stay whole. The budget is counted in the judge model's own tokens: `max_context_tokens` if
given, and never more than the engine's context length minus the rest of the prompt and a margin. Solutions
of one record share their context, cut once to fit the longest of them, so their prompts share a prefix.
The openai backend has no local tokenizer: there contexts are cut to a character budget instead
(`CHARS_PER_TOKEN` characters per token of `max_context_tokens`, default `DEFAULT_OPENAI_CONTEXT_TOKENS`),
and the judge says so in the log.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.args import EngineArgs, build_engine
from engine.base import ChoiceResult, Engine, Message, RequestError
from labeling.judge import JudgeItem, Verdict
from labeling.judge_prompts import VERDICT_OPTIONS, cut_marker, judge_messages

logger = logging.getLogger(__name__)

# Tokens kept free of the prompt: the one-word reply and its end token, and the few tokens by which a
# cut context can re-tokenize differently at its seams.
MARGIN_TOKENS = 16
# Without a tokenizer (openai backend): a rough English average, and the context budget when none is given.
CHARS_PER_TOKEN = 4
DEFAULT_OPENAI_CONTEXT_TOKENS = 16_000
# Each shrink of a budget that still overflows; a few rounds always suffice (the seams move by a few tokens).
_MAX_FIT_ROUNDS = 5


@dataclass
class _Prepared:
    """One item's chat, or why it cannot be sent (a prompt too long for the judge even with no context)."""

    messages: list[Message] | None
    refusal: str = ""


class LLMJudge:
    """Judge with a model through the shared engine; see the module docstring for the contract."""

    name = "llm"

    def __init__(self, engine_args: EngineArgs | None = None, max_context_tokens: int | None = None, *,
                 engine: Engine | None = None, margin_tokens: int = MARGIN_TOKENS):
        if (engine_args is None) == (engine is None):
            raise ValueError("LLMJudge needs engine_args (it builds its own engine) or engine (yours), not both")
        if max_context_tokens is not None and max_context_tokens < 0:
            raise ValueError(f"max_context_tokens must be >= 0, got {max_context_tokens}")
        self.engine_args = engine_args
        self.engine = engine
        self.max_context_tokens = max_context_tokens
        self.margin_tokens = margin_tokens
        self._owns_engine = engine is None
        self._started = False
        self._told_char_budget = False

    async def __aenter__(self) -> LLMJudge:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Build the engine (from engine_args) and start it; idempotent."""
        if self.engine is None:
            assert self.engine_args is not None
            self.engine = build_engine(self.engine_args)
        if not self._started:
            await self.engine.start()
            self._started = True

    async def close(self) -> None:
        """Close the engine if the judge built it; an engine handed in stays open."""
        if self._owns_engine and self.engine is not None:
            await self.engine.close()
            self.engine = None
        self._started = False

    async def judge_many(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        """One verdict per item, in order; every judge call is in flight at once."""
        if not items:
            return []
        await self.start()
        # Tokenizing long contexts takes a while: off the event loop, so other tasks keep running.
        prepared = await asyncio.to_thread(self.prepare, items)
        replies = await asyncio.gather(*(self._ask(p) for p in prepared))
        return [_verdict(reply) for reply in replies]

    async def _ask(self, prepared: _Prepared) -> ChoiceResult | str:
        if prepared.messages is None:
            return prepared.refusal
        assert self.engine is not None
        try:
            return await self.engine.choose(prepared.messages, VERDICT_OPTIONS)
        except RequestError as exc:  # this call's fault (too long, refused): its verdict is unknown, the rest go on
            return f"judge request failed: {exc}"

    # -- prompts that fit -------------------------------------------------------------------------------------

    def prepare(self, items: Sequence[JudgeItem]) -> list[_Prepared]:
        """The judge chat of every item, contexts cut from the middle to fit (needs a started engine)."""
        assert self.engine is not None
        tokenizer = self.engine.tokenizer
        if tokenizer is None:
            return [_Prepared(judge_messages(item, self._cut_chars(item.context))) for item in items]
        limit = self.engine.max_model_len
        prepared: list[_Prepared | None] = [None] * len(items)
        by_context: dict[str, list[int]] = {}
        for index, item in enumerate(items):
            if item.context:
                by_context.setdefault(item.context, []).append(index)
            else:
                prepared[index] = self._fitted(judge_messages(item, None), tokenizer, limit)
        for context, indices in by_context.items():
            fitted = self._fit_context(context, [items[i] for i in indices], tokenizer, limit)
            for index, result in zip(indices, fitted):
                prepared[index] = result
        return prepared  # type: ignore[return-value]

    def _fitted(self, messages: list[Message], tokenizer: Any, limit: int | None) -> _Prepared:
        if limit is not None and (size := _prompt_tokens(tokenizer, messages)) + self.margin_tokens > limit:
            return _Prepared(None, f"judge prompt not sent: {size} tokens without any context, and the judge "
                                   f"model takes {limit} (question, reference and candidate are never cut)")
        return _Prepared(messages)

    def _fit_context(self, context: str, items: list[JudgeItem], tokenizer: Any,
                     limit: int | None) -> list[_Prepared]:
        """The chats of items that share one context, cut once to a budget that fits each of them."""
        rest = [_prompt_tokens(tokenizer, judge_messages(item, "")) for item in items]
        budgets = [] if self.max_context_tokens is None else [self.max_context_tokens]
        if limit is not None:
            budgets.append(limit - self.margin_tokens - max(rest))
        cutter = _MiddleCutter(context, tokenizer)
        budget = max(min(budgets), 0) if budgets else cutter.num_tokens
        for _ in range(_MAX_FIT_ROUNDS):
            text = cutter.cut(budget)
            chats = [judge_messages(item, text) for item in items]
            if limit is None:
                return [_Prepared(chat) for chat in chats]
            overflow = max(_prompt_tokens(tokenizer, chat) for chat in chats) + self.margin_tokens - limit
            if overflow <= 0 or budget == 0:
                break
            budget = max(budget - overflow - 1, 0)
        return [self._fitted(chat, tokenizer, limit) for chat in chats]

    def _cut_chars(self, context: str | None) -> str | None:
        """Without a tokenizer: the context cut from the middle to a character budget."""
        if not context:
            return context
        tokens = self.max_context_tokens if self.max_context_tokens is not None else DEFAULT_OPENAI_CONTEXT_TOKENS
        budget = tokens * CHARS_PER_TOKEN
        if len(context) <= budget:
            return context
        if not self._told_char_budget:
            self._told_char_budget = True
            assert self.engine is not None
            logger.warning("LLM judge: the %s backend has no local tokenizer, so long contexts are cut to %d "
                           "characters (%d tokens x %d characters; set max_context_tokens to change it)",
                           self.engine.backend_name, budget, tokens, CHARS_PER_TOKEN)
        return cut_middle_chars(context, budget)


class _MiddleCutter:
    """One context tokenized once, cut to any token budget from its middle, by character offsets where the
    tokenizer gives them (the kept text is then exactly the original's head and tail)."""

    def __init__(self, context: str, tokenizer: Any):
        self.context = context
        self.tokenizer = tokenizer
        self.offsets: list[tuple[int, int]] | None = None
        try:
            encoded = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
            self.ids = list(encoded["input_ids"])
            self.offsets = [tuple(span) for span in encoded["offset_mapping"]]
        except (NotImplementedError, KeyError, TypeError, ValueError):  # a slow (Python) tokenizer
            self.ids = tokenizer.encode(context, add_special_tokens=False)
        self.num_tokens = len(self.ids)

    def cut(self, budget: int) -> str:
        if self.num_tokens <= budget:
            return self.context
        for marker_tokens in (16, 32, 64):  # the marker's own tokens come out of the budget
            keep = max(budget - marker_tokens, 0)
            head, tail = self._split(keep)
            marker = cut_marker(self.num_tokens - keep, "tokens")
            if len(self.tokenizer.encode(marker, add_special_tokens=False)) <= marker_tokens:
                break
        return head + marker + tail

    def _split(self, keep: int) -> tuple[str, str]:
        head_tokens = keep // 2
        tail_tokens = keep - head_tokens
        if self.offsets is None:
            decode = self.tokenizer.decode
            return (decode(self.ids[:head_tokens]) if head_tokens else "",
                    decode(self.ids[self.num_tokens - tail_tokens:]) if tail_tokens else "")
        head_end = self.offsets[head_tokens - 1][1] if head_tokens else 0
        tail_start = self.offsets[self.num_tokens - tail_tokens][0] if tail_tokens else len(self.context)
        # Byte-level tokens of one multi-byte character share its span: never keep that character twice.
        tail_start = max(tail_start, head_end)
        return self.context[:head_end], self.context[tail_start:]


def cut_middle_chars(context: str, budget: int) -> str:
    """`context` within `budget` characters, its middle replaced by a marker (head and tail kept as they are)."""
    if len(context) <= budget:
        return context
    keep = max(budget - len(cut_marker(len(context), "characters")), 0)
    head = keep // 2
    tail = keep - head
    return context[:head] + cut_marker(len(context) - keep, "characters") + context[len(context) - tail:]


def _prompt_tokens(tokenizer: Any, messages: list[Message]) -> int:
    """Tokens of the chat as the engine sends it (chat template, generation prompt)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tokenizer.encode(text, add_special_tokens=False))


def _verdict(reply: ChoiceResult | str) -> Verdict:
    if isinstance(reply, str):
        return Verdict(is_correct=None, judge=LLMJudge.name, detail=reply)
    verdict = {"true": True, "false": False}.get(reply.choice) if reply.choice is not None else None
    return Verdict(is_correct=verdict, judge=LLMJudge.name, detail=reply.text)
