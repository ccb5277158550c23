"""The one async LLM interface every caller uses, and per-sample token accounting."""
from __future__ import annotations

import asyncio
import contextvars
import string
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

Message = dict[str, str]
Messages = Sequence[Message]


class EngineError(RuntimeError):
    """A backend failure the user must fix (unreachable endpoint, missing package, bad model path): ends the run."""


class RequestError(Exception):
    """One request the backend refused or could not finish (e.g. a prompt too long for the context).

    Not an EngineError: it fails the sample that sent it, and the run goes on with the others.
    """


@dataclass(frozen=True)
class SamplingParams:
    """Sampling options shared by all backends. `temperature == 0` always means greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    n: int = 1
    stop: tuple[str, ...] | None = None
    seed: int | None = None

    def merged(self, **overrides: Any) -> SamplingParams:
        """A copy with every override that is not None applied (0 and 0.0 are kept, not dropped)."""
        unknown = set(overrides) - set(self.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown sampling parameter(s): {', '.join(sorted(unknown))}")
        changes = {k: v for k, v in overrides.items() if v is not None}
        if "stop" in changes:
            stop = changes["stop"]
            changes["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
        return replace(self, **changes)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass
class ChatResult:
    """One chat completion. With n > 1, `texts` holds every choice and `text` the first."""

    texts: list[str]
    prompt_tokens: int
    completion_tokens: int
    finish_reasons: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.texts[0]


@dataclass
class ChoiceResult:
    """One restricted choice (`Engine.choose`): the option picked, or None when the reply named none.

    `text` is what the backend produced (the generated reply, or on hf the scored token's text); `scores`
    holds each option's log-probability where the backend computes them (hf), else None.
    """

    choice: str | None
    text: str
    prompt_tokens: int
    completion_tokens: int
    scores: dict[str, float] | None = None
    finish_reason: str = "stop"


# Where a backend cannot restrict decoding, `choose` asks for a short greedy reply and parses it strictly:
# enough tokens for a one-word answer and a little more, so a chatty reply shows up as such in `text`.
CHOICE_REPLY_MAX_TOKENS = 16
_CHOICE_STRIP = string.whitespace + string.punctuation + "\u201c\u201d\u2018\u2019"


def _choice_key(text: str) -> str:
    return text.strip(_CHOICE_STRIP).casefold()


def check_options(options: Sequence[str]) -> tuple[str, ...]:
    """The options of a `choose` call as a tuple; ValueError unless two or more, non-empty, distinct ignoring case."""
    if isinstance(options, str):
        raise ValueError("choose() takes a sequence of options, not one string")
    options = tuple(options)
    if len(options) < 2:
        raise ValueError(f"choose() needs at least two options, got {list(options)}")
    if any(not isinstance(o, str) or not _choice_key(o) for o in options):
        raise ValueError(f"choose() options must be non-empty words, got {list(options)}")
    keys = [_choice_key(o) for o in options]
    if len(set(keys)) != len(keys):
        raise ValueError(f"choose() options must differ ignoring case and punctuation, got {list(options)}")
    return options


def parse_choice(text: str, options: Sequence[str]) -> str | None:
    """The option `text` states, strictly: the whole reply is one option (any case), with only whitespace and
    punctuation around it ("True.", "**false**"); anything else, a sentence included, is None."""
    key = _choice_key(text)
    return next((o for o in options if _choice_key(o) == key), None)


@dataclass
class Usage:
    """Token accounting for one sample (or any scope the caller opens with `track_usage`)."""

    num_llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, result: ChatResult | ChoiceResult) -> None:
        self.num_llm_calls += 1
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# Each sample's solve() runs in its own asyncio task, and tasks copy the context, so the usage of
# every engine call made on behalf of a sample lands on that sample's meter without methods passing it.
_current_usage: contextvars.ContextVar[Usage | None] = contextvars.ContextVar("agentark_usage", default=None)


def track_usage() -> Usage:
    """Start a fresh usage meter for the current task; later engine calls in it (and its subtasks) add to it."""
    usage = Usage()
    _current_usage.set(usage)
    return usage


class Engine(ABC):
    """Async chat interface. Backends implement `_chat`; callers use `chat` and `chat_many`.

    Callers never batch by hand: many concurrent `chat` calls are what lets a backend batch
    (the hf backend gathers them into padded batches, vLLM batches continuously).
    """

    backend_name: str = "base"
    # The model's transformers tokenizer once started, where the backend holds one (hf, vllm); None elsewhere.
    tokenizer: Any = None

    def __init__(self, model_name: str, defaults: SamplingParams | None = None):
        self.model_name = model_name
        self.defaults = defaults or SamplingParams()
        self.total = Usage()

    async def chat(self, messages: Messages, **sampling: Any) -> ChatResult:
        """One completion for one conversation; sampling kwargs override the engine defaults."""
        params = self.defaults.merged(**sampling)
        result = await self._chat(list(messages), params)
        self._account(result)
        return result

    def _account(self, result: ChatResult | ChoiceResult) -> None:
        self.total.add(result)
        usage = _current_usage.get()
        if usage is not None:
            usage.add(result)

    async def complete(self, prompt: str, **sampling: Any) -> ChatResult:
        """One text completion of a raw prompt, with no chat template (a base model's usual input)."""
        params = self.defaults.merged(**sampling)
        result = await self._complete(prompt, params)
        self._account(result)
        return result

    async def chat_many(self, conversations: Sequence[Messages], **sampling: Any) -> list[ChatResult]:
        """Completions for several conversations at once (parallel agents), in input order."""
        return list(await asyncio.gather(*(self.chat(m, **sampling) for m in conversations)))

    async def choose(self, messages: Messages, options: Sequence[str]) -> ChoiceResult:
        """Greedily pick one of `options` as the reply to `messages` (e.g. a judge's "true" / "false").

        Backends restrict decoding to the options where they can (hf: one forward pass comparing the
        options' first-token log-probabilities; vllm: structured outputs with a choice); elsewhere the
        greedy reply is parsed strictly (`parse_choice`), and `choice` is None when it names no option.
        Options must be two or more, distinct ignoring case. Usage is accounted like `chat`.
        """
        result = await self._choose(list(messages), check_options(options))
        self._account(result)
        return result

    async def _choose(self, messages: list[Message], options: tuple[str, ...]) -> ChoiceResult:
        """Backend hook: the unrestricted fallback, a short greedy reply parsed strictly."""
        reply = await self._chat(messages, SamplingParams(temperature=0.0, max_tokens=CHOICE_REPLY_MAX_TOKENS))
        return ChoiceResult(choice=parse_choice(reply.text, options), text=reply.text,
                            prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                            finish_reason=reply.finish_reasons[0] if reply.finish_reasons else "")

    @property
    def max_model_len(self) -> int | None:
        """The most tokens a prompt and its reply may hold together, where the backend knows it (else None)."""
        return None

    @abstractmethod
    async def _chat(self, messages: list[Message], params: SamplingParams) -> ChatResult:
        """Backend hook: run one request with fully resolved sampling params."""

    async def _complete(self, prompt: str, params: SamplingParams) -> ChatResult:
        """Backend hook: one text completion of `prompt` as given (no chat template)."""
        raise EngineError(f"the {self.backend_name} backend has no text completion")

    async def start(self) -> None:
        """Load weights / check endpoints. Called once by the driver before any request."""

    async def close(self) -> None:
        """Release the model, worker threads or HTTP sessions."""

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
