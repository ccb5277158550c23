"""A real OpenAI-compatible HTTP server on loopback for backend tests (aiohttp; no model behind it).

It answers `GET /v1/models` and `POST /v1/chat/completions`: each choice echoes the last user message's
words, cut to `max_tokens` words (finish_reason "length" when cut); tokens are whitespace words.
Tests script it: fail the next k requests with a status, delay replies, drop `usage`, and read back
every request it received and the most chat requests it ever had in flight.
"""
from __future__ import annotations

import asyncio
import time
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
    _stalls: list[float] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    def fail_next(self, count: int, status: int, retry_after_ms: float | None = 1, message: str = "") -> None:
        """Answer the next `count` requests (any path) with `status`, plus a `retry-after-ms` header unless None.

        `message` is the error text; "{authorization}" in it is replaced by the request's Authorization
        header, as a careless server that echoes credentials would do.
        """
        headers = {} if retry_after_ms is None else {"retry-after-ms": str(retry_after_ms)}
        self._failures.extend([_Failure(status, headers, message or f"scripted failure {status}")] * count)

    def stall_next(self, seconds: float) -> None:
        """Make the next chat request wait `seconds` before answering (to trigger a client timeout)."""
        self._stalls.append(seconds)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def _scripted_failure(self, request: web.Request, body: dict[str, Any] | None) -> web.Response | None:
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

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            failed = self._scripted_failure(request, body)
            if failed is not None:
                return failed
            self.requests.append(RecordedRequest(request.path, request.headers.get("Authorization"), body, 200))
            await asyncio.sleep(self._stalls.pop(0) if self._stalls else self.delay_s)
            return web.json_response(self._completion(body))
        finally:
            self._in_flight -= 1

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        user_words = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "").split()
        max_tokens = body.get("max_tokens") or len(user_words)
        words = user_words[:max_tokens]
        finish = "length" if len(user_words) > max_tokens else "stop"
        num_choices = body.get("n") or 1
        choices = [{"index": i, "message": {"role": "assistant", "content": " ".join(words)},
                    "finish_reason": finish} for i in range(num_choices)]
        response: dict[str, Any] = {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion",
                                    "created": int(time.time()), "model": body["model"], "choices": choices}
        if self.include_usage:
            prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
            completion_tokens = len(words) * num_choices
            response["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}
        return response
