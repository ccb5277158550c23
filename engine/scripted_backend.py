"""A backend that answers from a Python function: method logic tests and dry runs, no model needed."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from engine.base import ChatResult, Engine, Message, SamplingParams

Responder = Callable[[list[Message], SamplingParams], str]
# A text completion reaches the responder as one message with this role, so one function serves both.
COMPLETION_ROLE = "completion"


class ScriptedEngine(Engine):
    """Each call's text is `responder(messages, params)`; tokens are counted as whitespace words.

    Every call is logged in `calls` so a test can assert what a method sent and in which order.
    """

    backend_name = "scripted"

    def __init__(self, responder: Responder, model_name: str = "scripted", defaults: SamplingParams | None = None):
        super().__init__(model_name, defaults)
        self.responder = responder
        self.calls: list[tuple[list[Message], SamplingParams]] = []

    async def _chat(self, messages: list[Message], params: SamplingParams) -> ChatResult:
        self.calls.append((messages, params))
        await asyncio.sleep(0)  # yield like a real backend, so concurrency is exercised
        texts = [self.responder(messages, params) for _ in range(params.n)]
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        return ChatResult(texts=texts, prompt_tokens=prompt_tokens,
                          completion_tokens=sum(len(t.split()) for t in texts),
                          finish_reasons=["stop"] * params.n)

    async def _complete(self, prompt: str, params: SamplingParams) -> ChatResult:
        return await self._chat([{"role": COMPLETION_ROLE, "content": prompt}], params)
