"""A real OpenAI-compatible HTTP server on loopback for backend tests (aiohttp; no model behind it).

It answers `GET /v1/models`, `POST /v1/chat/completions` and `POST /v1/completions`: each choice echoes
the last user message's words (or the prompt's), cut to `max_tokens` words (finish_reason "length" when
cut); tokens are whitespace words. Tests script it: fail the next k requests with a status, reject
requests that contain a marker, hold requests until an event is set (so a test sees concurrency without
clocks), delay replies, drop `usage`, and read back every request and the most it had in flight.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web


@dataclass
class RecordedRequest:
    path: str
    authorization: str | None
    body: dict[str, Any] | None
    status: int


@dataclass
class _Failure:
    status: int
    headers: dict[str, str]
    message: str


@dataclass
class _Rule:
    """Requests whose text contains `marker`: the first `after` pass, later ones are held or rejected."""

    marker: str
    after: int
    failure: _Failure | None = None  # None: hold on `release`
    release: asyncio.Event | None = None
    seen: int = 0


@dataclass
class FakeOpenAIServer:
    """Start with `async with FakeOpenAIServer(models=[...]) as server:`; `server.base_url` ends in /v1."""

    models: list[str] = field(default_factory=lambda: ["fake-model"])
    delay_s: float = 0.0
    include_usage: bool = True
    requests: list[RecordedRequest] = field(default_factory=list)
    max_in_flight: int = 0
    base_url: str = ""
    _in_flight: int = 0
    _failures: list[_Failure] = field(default_factory=list)
    _stalls: list[float | asyncio.Event] = field(default_factory=list)
    _rules: list[_Rule] = field(default_factory=list)
    gate: asyncio.Event | None = None
    # Chat replies from a function of (messages, choice index) instead of the echo: a scripted "model".
    responder: Callable[[list[dict[str, Any]], int], str] | None = None
    _runner: web.AppRunner | None = None

    def fail_next(self, count: int, status: int, retry_after_ms: float | None = 1, message: str = "") -> None:
        """Answer the next `count` requests (any path) with `status`, plus a `retry-after-ms` header unless None.

        `message` is the error text; "{authorization}" in it is replaced by the request's Authorization
        header, as a careless server that echoes credentials would do.
        """
        headers = {} if retry_after_ms is None else {"retry-after-ms": str(retry_after_ms)}
        self._failures.extend([_Failure(status, headers, message or f"scripted failure {status}")] * count)

    def stall_next(self, seconds: float) -> None:
        """Make the next generation request wait `seconds` before answering (to trigger a client timeout)."""
        self._stalls.append(seconds)

    def hold_next(self) -> asyncio.Event:
        """Make the next generation request wait until the returned event is set."""
        event = asyncio.Event()
        self._stalls.append(event)
        return event

    def hold_all(self) -> asyncio.Event:
        """Make every generation request wait until the returned event is set (see `wait_in_flight`)."""
        self.gate = asyncio.Event()
        return self.gate

    def reject(self, marker: str, status: int = 400, message: str = "", after: int = 0) -> None:
        """Answer `status` to requests whose text contains `marker`, once `after` of them have passed."""
        failure = _Failure(status, {}, message or f"request rejected ({status})")
        self._rules.append(_Rule(marker, after, failure=failure))

    def hold(self, marker: str, after: int = 0) -> asyncio.Event:
        """Hold requests whose text contains `marker` (once `after` have passed) until the event is set."""
        event = asyncio.Event()
        self._rules.append(_Rule(marker, after, release=event))
        return event

    def clear_rules(self) -> None:
        """Drop every reject/hold rule and release what the hold rules still hold."""
        for rule in self._rules:
            if rule.release is not None:
                rule.release.set()
        self._rules.clear()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def wait_in_flight(self, count: int, timeout_s: float = 60.0) -> None:
        """Wait until at least `count` generation requests are in flight (the timeout only guards a hang)."""
        async with asyncio.timeout(timeout_s):
            while self._in_flight < count:
                await asyncio.sleep(0.005)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def completion_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/completions"]

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._generate)
        app.router.add_post("/v1/completions", self._generate)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def _scripted_failure(self, request: web.Request, body: dict[str, Any] | None,
                          failure: _Failure | None = None) -> web.Response | None:
        if failure is None:
            if not self._failures:
                return None
            failure = self._failures.pop(0)
        authorization = request.headers.get("Authorization")
        self.requests.append(RecordedRequest(request.path, authorization, body, failure.status))
        message = failure.message.replace("{authorization}", authorization or "")
        return web.json_response({"error": {"message": message, "type": "fake_error", "code": failure.status}},
                                 status=failure.status, headers=failure.headers)

    async def _models(self, request: web.Request) -> web.Response:
        failed = self._scripted_failure(request, None)
        if failed is not None:
            return failed
        self.requests.append(RecordedRequest(request.path, request.headers.get("Authorization"), None, 200))
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    def _matching_rule(self, body: dict[str, Any]) -> _Rule | None:
        text = body.get("prompt") or " ".join(m["content"] for m in body.get("messages", []))
        for rule in self._rules:
            if rule.marker in text:
                rule.seen += 1
                if rule.seen > rule.after:
                    return rule
        return None

    async def _generate(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            rule = self._matching_rule(body)
            failed = self._scripted_failure(request, body, rule.failure if rule else None)
            if failed is not None:
                return failed
            self.requests.append(RecordedRequest(request.path, request.headers.get("Authorization"), body, 200))
            stall = self._stalls.pop(0) if self._stalls else self.delay_s
            if isinstance(stall, asyncio.Event):
                await stall.wait()
            else:
                await asyncio.sleep(stall)
            for event in (self.gate, rule.release if rule else None):
                if event is not None:
                    await event.wait()
            return web.json_response(self._completion(body))
        finally:
            self._in_flight -= 1

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        if "prompt" in body:  # /v1/completions
            return self._text_completion(body)
        user_words = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "").split()
        max_tokens = body.get("max_tokens") or len(user_words)
        words = user_words[:max_tokens]
        finish = "length" if len(user_words) > max_tokens else "stop"
        num_choices = body.get("n") or 1
        texts = [" ".join(words)] * num_choices
        if self.responder is not None:
            texts = [self.responder(body["messages"], i) for i in range(num_choices)]
            words, finish = texts[0].split(), "stop"
        choices = [{"index": i, "message": {"role": "assistant", "content": text},
                    "finish_reason": finish} for i, text in enumerate(texts)]
        response: dict[str, Any] = {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion",
                                    "created": int(time.time()), "model": body["model"], "choices": choices}
        if self.include_usage:
            prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
            completion_tokens = len(words) * num_choices
            response["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}
        return response

    def _text_completion(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt_words = body["prompt"].split()
        max_tokens = body.get("max_tokens") or len(prompt_words)
        words = prompt_words[:max_tokens]
        finish = "length" if len(prompt_words) > max_tokens else "stop"
        num_choices = body.get("n") or 1
        choices = [{"index": i, "text": " ".join(words), "finish_reason": finish, "logprobs": None}
                   for i in range(num_choices)]
        response: dict[str, Any] = {"id": f"cmpl-{len(self.requests)}", "object": "text_completion",
                                    "created": int(time.time()), "model": body["model"], "choices": choices}
        if self.include_usage:
            response["usage"] = {"prompt_tokens": len(prompt_words), "completion_tokens": len(words) * num_choices,
                                 "total_tokens": len(prompt_words) + len(words) * num_choices}
        return response
