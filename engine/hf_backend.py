"""The `hf` backend: transformers `generate` behind a micro-batcher, on CPU or GPU.

Concurrent `chat` calls are queued; one batcher task gathers what is pending, groups requests whose
generation settings match, and runs each group as one left-padded `generate` in a worker thread, so
requests keep queuing while a batch runs. Many concurrent calls therefore cost about one padded batch.
`choose` calls queue the same way and batch among themselves: one left-padded forward pass (no
generation) scores every pending prompt's next token, and each picks the option whose first tokens
are likelier.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from engine.args import EngineArgs
from engine.base import ChatResult, ChoiceResult, Engine, EngineError, Message, SamplingParams

logger = logging.getLogger(__name__)

# Requests in one generate() call must share these settings; the per-request seed is not part of it
# because a batch draws from one random stream (the engine's, seeded from --seed). `choose` requests
# share the key CHOOSE_KEY: they run in forward passes of their own.
BatchKey = tuple[float, float, int, tuple[str, ...]] | tuple[str]
CHOOSE_KEY = ("choose",)
# A choose batch is split (shortest prompts together) so no forward pass holds more padded tokens than
# this many per row of the batch size: 64 rows of 1k tokens on CPU, 256 on GPU.
CHOOSE_TOKENS_PER_ROW = 1024


@dataclass
class _Request:
    """A chat (`messages`) or a raw-prompt completion (`prompt`); both kinds share batches.

    A `choose` request is a chat with `option_ids`: each option's first-token ids to compare.
    """

    messages: list[Message] | None
    params: SamplingParams
    future: asyncio.Future
    prompt: str | None = None
    options: tuple[str, ...] | None = None
    option_ids: list[list[int]] | None = None
    key: BatchKey = field(init=False)

    def __post_init__(self) -> None:
        stop = tuple(self.params.stop or ())
        if self.options is not None:
            self.key = CHOOSE_KEY
        elif self.params.greedy:
            self.key = (0.0, 1.0, self.params.max_tokens, stop)
        else:
            self.key = (self.params.temperature, self.params.top_p, self.params.max_tokens, stop)

    @property
    def rows(self) -> int:
        """Sequences this request adds to a batch: greedy choices are identical, so one row serves all n."""
        return 1 if self.params.greedy else self.params.n


class HFEngine(Engine):
    """transformers backend with micro-batching of concurrent requests into left-padded batches."""

    backend_name = "hf"

    def __init__(self, model_name: str, args: EngineArgs):
        super().__init__(model_name, args.sampling_defaults())
        self.args = args
        self.model: Any = None
        self.tokenizer: Any = None
        self.device: Any = None
        # Rows of each generate() call, in order: lets tests and the benchmark see the batching.
        self.batch_sizes: list[int] = []
        self._queue: asyncio.Queue[_Request] | None = None
        self._batcher: asyncio.Task | None = None
        self._start_lock = asyncio.Lock()
        self._rng_state: dict[str, Any] | None = None
        self._eos_ids: frozenset[int] = frozenset()
        self._option_ids_cache: dict[tuple[str, ...], list[list[int]]] = {}
        self._forward_kwargs: dict[str, Any] = {}

    async def start(self) -> None:
        async with self._start_lock:
            if self.model is not None:
                return
            await asyncio.to_thread(self._load)
            self._queue = asyncio.Queue()
            self._batcher = asyncio.create_task(self._batch_loop(), name="hf-batcher")

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = torch.device(_resolve_device(self.args.device))
        dtype = _resolve_dtype(self.args.dtype)
        extra = {"trust_remote_code": True} if self.args.trust_remote_code else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_name, **extra)
            model = AutoModelForCausalLM.from_pretrained(self.model_name, dtype=dtype, **extra)
        except (OSError, ValueError, KeyError) as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise EngineError(f"--model_name {self.model_name!r}: "
                              f"cannot load it with the hf backend ({detail})") from None
        if not getattr(tokenizer, "chat_template", None):
            raise EngineError(f"--model_name {self.model_name!r}: its tokenizer has no chat template")
        # Left padding keeps every prompt's last token at the end, where generation continues.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.model = model.to(self.device).eval()
        self._eos_ids = _eos_ids(model.generation_config.eos_token_id, tokenizer.eos_token_id)
        # choose() needs the last position's logits only; most models can skip computing the others.
        if "logits_to_keep" in inspect.signature(model.forward).parameters:
            self._forward_kwargs = {"logits_to_keep": 1}
        generator = torch.Generator().manual_seed(self.args.seed)
        self._rng_state = {"cpu": generator.get_state()}
        logger.info("hf engine: %s on %s (%s)", self.model_name, self.device, model.dtype)

    @property
    def max_batch_size(self) -> int:
        """Sequences per generate(): a GPU wants big batches; on CPU bigger padded batches stop paying off."""
        if self.args.max_batch_size:
            return self.args.max_batch_size
        return 256 if self.device is not None and self.device.type == "cuda" else 64

    @property
    def max_model_len(self) -> int | None:
        """The model's context length (its config's max_position_embeddings), once loaded."""
        if self.model is None:
            return None
        limits = [getattr(self.model.config, "max_position_embeddings", None),
                  getattr(self.tokenizer, "model_max_length", None)]
        # Tokenizers without a limit report a huge sentinel (1e30).
        usable = [int(limit) for limit in limits if isinstance(limit, int) and 0 < limit < 10**7]
        return min(usable) if usable else None

    async def close(self) -> None:
        if self._batcher is not None:
            self._batcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._batcher
            self._batcher = None
        if self._queue is not None:
            while not self._queue.empty():
                _fail(self._queue.get_nowait(), EngineError("the hf engine was closed before this request ran"))
            self._queue = None
        if self.model is not None:
            device = self.device
            self.model = None
            self.tokenizer = None
            if device is not None and device.type == "cuda":
                import torch

                torch.cuda.empty_cache()

    async def _chat(self, messages: list[Message], params: SamplingParams) -> ChatResult:
        return await self._submit(messages, None, params)

    async def _complete(self, prompt: str, params: SamplingParams) -> ChatResult:
        return await self._submit(None, prompt, params)

    async def _choose(self, messages: list[Message], options: tuple[str, ...]) -> ChoiceResult:
        if self.model is None:
            await self.start()
        assert self._queue is not None
        option_ids = self.option_token_ids(options)
        request = _Request(messages, SamplingParams(temperature=0.0, max_tokens=1),
                           asyncio.get_running_loop().create_future(), options=options, option_ids=option_ids)
        await self._queue.put(request)
        return await request.future

    def option_token_ids(self, options: tuple[str, ...]) -> list[list[int]]:
        """For each option, the ids of the tokens its reply can start with: the option as given, lower case and
        capitalised, each with and without a leading space, first token of each (upper case is left out: its
        first token is often a bare letter that starts many other replies).

        A token that starts more than one option (a bare space, say) is dropped from all of them; an option
        left without a token of its own is a ValueError, since one forward pass cannot tell it apart.
        """
        cached = self._option_ids_cache.get(options)
        if cached is not None:
            return cached
        firsts: list[set[int]] = []
        for option in options:
            word = option.strip()
            ids: set[int] = set()
            for form in {word, word.lower(), word.capitalize()}:
                for text in (form, " " + form):
                    encoded = self.tokenizer.encode(text, add_special_tokens=False)
                    if encoded:
                        ids.add(encoded[0])
            firsts.append(ids)
        shared = {token for i, a in enumerate(firsts) for b in firsts[i + 1:] for token in a & b}
        option_ids = [sorted(ids - shared) for ids in firsts]
        for option, ids in zip(options, option_ids):
            if not ids:
                raise ValueError(f"the hf backend tells options apart by their first token, and {option!r} "
                                 f"starts with the same token as another of {list(options)} in this tokenizer")
        self._option_ids_cache[options] = option_ids
        return option_ids

    async def _submit(self, messages: list[Message] | None, prompt: str | None, params: SamplingParams) -> ChatResult:
        if self.model is None:
            await self.start()
        assert self._queue is not None
        request = _Request(messages, params, asyncio.get_running_loop().create_future(), prompt=prompt)
        await self._queue.put(request)
        return await request.future

    async def _batch_loop(self) -> None:
        assert self._queue is not None
        queue = self._queue
        pending: collections.deque[_Request] = collections.deque()
        wait_s = max(self.args.batch_wait_ms, 0.0) / 1000.0
        max_rows = max(self.max_batch_size, 1)
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not pending:
                    pending.append(await queue.get())
                    # A short wait lets the calls issued in the same burst join this batch.
                    deadline = loop.time() + wait_s
                    while sum(r.rows for r in pending) < max_rows:
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            break
                        try:
                            pending.append(await asyncio.wait_for(queue.get(), remaining))
                        except TimeoutError:
                            break
                while not queue.empty():
                    pending.append(queue.get_nowait())
                batch = _take_batch(pending, max_rows)
                batch = [r for r in batch if not r.future.done()]  # callers that gave up
                if batch:
                    await self._run_batch(batch)
        except asyncio.CancelledError:
            for request in pending:
                _fail(request, EngineError("the hf engine was closed before this request ran"))
            raise
        except BaseException as exc:  # a bug in the batcher must not leave callers waiting forever
            for request in pending:
                _fail(request, exc)
            while not queue.empty():
                _fail(queue.get_nowait(), exc)
            raise

    async def _run_batch(self, batch: list[_Request]) -> None:
        run = self._choose_batch if batch[0].key == CHOOSE_KEY else self._generate
        try:
            results = await asyncio.to_thread(run, batch)
        except asyncio.CancelledError:  # close() during a batch: its callers must not wait forever
            for request in batch:
                _fail(request, EngineError("the hf engine was closed while this request ran"))
            raise
        except Exception as exc:
            logger.debug("hf batch of %d failed", len(batch), exc_info=True)
            for request in batch:
                _fail(request, exc)
            return
        for request, result in zip(batch, results):
            if not request.future.done():
                request.future.set_result(result)

    def _generate(self, batch: list[_Request]) -> list[ChatResult]:
        """Run one padded generate() for requests that share a BatchKey (called in a worker thread)."""
        import torch

        params = batch[0].params
        tokenizer, model = self.tokenizer, self.model
        rows: list[list[int]] = []
        for request in batch:
            rows.extend([self._prompt_ids(request)] * request.rows)
        encoded = tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt").to(self.device)
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        stop = list(params.stop or ())
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": list(self._eos_ids),
        }
        if params.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=None)
        if stop:
            kwargs.update(stop_strings=stop, tokenizer=tokenizer)
        self.batch_sizes.append(len(rows))
        with torch.inference_mode(), self._random_stream(sampled=not params.greedy):
            output = model.generate(**encoded, **kwargs)
        generated = output[:, encoded["input_ids"].shape[1]:].tolist()

        results: list[ChatResult] = []
        row = 0
        for request in batch:
            texts, reasons, completion = [], [], 0
            for ids in generated[row: row + request.rows]:
                text, reason, num_tokens = self._finish(ids, stop, params.max_tokens)
                texts.append(text)
                reasons.append(reason)
                completion += num_tokens
            if request.rows < request.params.n:  # greedy: every choice is the same sequence
                texts, reasons = texts * request.params.n, reasons * request.params.n
                completion *= request.params.n
            results.append(ChatResult(texts=texts, prompt_tokens=int(prompt_lengths[row]),
                                      completion_tokens=completion, finish_reasons=reasons))
            row += request.rows
        return results

    def _choose_batch(self, batch: list[_Request]) -> list[ChoiceResult]:
        """Score the next token of every `choose` prompt in left-padded forward passes (in a worker thread)."""
        import torch

        prompts = [self._prompt_ids(request) for request in batch]
        results: list[ChoiceResult | None] = [None] * len(batch)
        for chunk in _length_chunks([len(p) for p in prompts], self.max_batch_size * CHOOSE_TOKENS_PER_ROW):
            encoded = self.tokenizer.pad({"input_ids": [prompts[i] for i in chunk]}, padding=True,
                                         return_tensors="pt").to(self.device)
            mask = encoded["attention_mask"]
            # Positions count from each row's first real token, as generate() counts them under left padding.
            position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)
            self.batch_sizes.append(len(chunk))
            with torch.inference_mode():
                logits = self.model(input_ids=encoded["input_ids"], attention_mask=mask, position_ids=position_ids,
                                    use_cache=False, **self._forward_kwargs).logits[:, -1, :]
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
            for row, index in enumerate(chunk):
                results[index] = self._pick_option(batch[index], logprobs[row], len(prompts[index]))
        return results  # type: ignore[return-value]

    def _pick_option(self, request: _Request, logprobs: Any, prompt_tokens: int) -> ChoiceResult:
        """The option whose first tokens hold the most probability mass (log-sum-exp over its variants)."""
        import torch

        assert request.options is not None and request.option_ids is not None
        scores = {option: float(torch.logsumexp(logprobs[ids], dim=0))
                  for option, ids in zip(request.options, request.option_ids)}
        choice = max(request.options, key=lambda option: scores[option])
        ids = request.option_ids[request.options.index(choice)]
        top_token = max(ids, key=lambda token: float(logprobs[token]))
        return ChoiceResult(choice=choice, text=self.tokenizer.decode([top_token]), prompt_tokens=prompt_tokens,
                            completion_tokens=1, scores=scores)

    def _prompt_ids(self, request: _Request) -> list[int]:
        """Token ids of one request's prompt, before padding."""
        if request.prompt is not None:
            # A raw prompt is tokenized as the tokenizer does by default (BOS added where it adds one),
            # the input a base model saw in training.
            return self.tokenizer(request.prompt)["input_ids"]
        text = self.tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
        # The chat template already wrote any BOS token, so the tokenizer must not add another.
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _finish(self, ids: list[int], stop: list[str], max_tokens: int) -> tuple[str, str, int]:
        """Text, finish reason and completion token count of one generated row (padding excluded)."""
        decode = self.tokenizer.decode
        end = next((i + 1 for i, token in enumerate(ids) if token in self._eos_ids), None)
        reason = "stop"
        if end is None:
            # A row that stopped on a stop string is padded to the batch's length afterwards.
            end = len(ids)
            while end > 0 and ids[end - 1] == self.tokenizer.pad_token_id:
                end -= 1
            reason = "length" if end >= max_tokens else "stop"
        text = decode(ids[:end], skip_special_tokens=True)
        if stop and _find_stop(text, stop) >= 0:
            # Count the tokens up to the one that completed the stop string: the padding after it may
            # be the EOS token itself, and without generate's stop support the row ran on past it.
            low, high = 1, end
            while low < high:
                mid = (low + high) // 2
                if _find_stop(decode(ids[:mid], skip_special_tokens=True), stop) >= 0:
                    high = mid
                else:
                    low = mid + 1
            end = low
            text, reason = text[:_find_stop(text, stop)], "stop"
        return text, reason, end

    @contextlib.contextmanager
    def _random_stream(self, sampled: bool) -> Iterator[None]:
        """Draw samples from the engine's own stream (seeded by --seed), leaving torch's global RNG alone."""
        if not sampled:
            yield
            return
        import torch

        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            assert self._rng_state is not None
            torch.set_rng_state(self._rng_state["cpu"])
            if cuda:
                if "cuda" in self._rng_state:
                    torch.cuda.set_rng_state(self._rng_state["cuda"], cuda[0])
                else:
                    torch.cuda.manual_seed(self.args.seed)
            yield
            self._rng_state = {"cpu": torch.get_rng_state()}
            if cuda:
                self._rng_state["cuda"] = torch.cuda.get_rng_state(cuda[0])


def _take_batch(pending: collections.deque[_Request], max_rows: int) -> list[_Request]:
    """The oldest request and the following ones with its settings, up to `max_rows` rows."""
    key = pending[0].key
    batch: list[_Request] = []
    rows = 0
    keep: list[_Request] = []
    while pending:
        request = pending.popleft()
        if request.key == key and (not batch or rows + request.rows <= max_rows):
            batch.append(request)
            rows += request.rows
        else:
            keep.append(request)
    pending.extend(keep)
    return batch


def _length_chunks(lengths: list[int], max_padded_tokens: int) -> list[list[int]]:
    """Indices grouped shortest first so each group's rows x longest length stays within the budget
    (a prompt longer than the budget goes alone)."""
    chunks: list[list[int]] = []
    current: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if current and (len(current) + 1) * lengths[index] > max_padded_tokens:
            chunks.append(current)
            current = []
        current.append(index)
    if current:
        chunks.append(current)
    return chunks


def _find_stop(text: str, stop: list[str]) -> int:
    """Index of the earliest stop string in `text`, or -1."""
    return min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)


def _fail(request: _Request, exc: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(exc)


def _eos_ids(*candidates: Any) -> frozenset[int]:
    ids: set[int] = set()
    for candidate in candidates:
        if candidate is None:
            continue
        ids.update(candidate if isinstance(candidate, (list, tuple)) else [candidate])
    return frozenset(int(i) for i in ids)


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_dtype(dtype: str) -> Any:
    if dtype == "auto":
        return "auto"
    import torch

    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise EngineError(f"--dtype {dtype!r} is not a torch dtype; use auto, float32, bfloat16 or float16")
    return value
