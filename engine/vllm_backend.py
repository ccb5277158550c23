"""The `vllm` backend: vLLM's async engine (AsyncLLM) with prefix caching, on GPU or, via vllm-cpu, on CPU.

Every `chat` call becomes one vLLM request submitted as soon as it arrives, so the many calls that
concurrent samples and parallel agents make are batched continuously by vLLM's scheduler, and the
prompt prefixes they share (system prompt, question, earlier debate rounds) are computed once.
The engine core runs in vLLM's own worker processes; on CPU vLLM spawns them, so a script that
starts this backend needs an `if __name__ == "__main__":` guard.

Per-request seeds (methods give each parallel agent its own) are sent where vLLM honours them (CUDA).
On CPU, vllm-cpu's sampler kills the engine core on a seeded request at temperature > 0 once a batch
is big enough ("CPU Generator does not use offset"), so there the engine is seeded once (`--seed`) and
requests carry none: unseeded requests draw from the engine's one generator, so identical prompts
still come back as different samples.

`choose` is a greedy request under structured outputs with a choice: vLLM's grammar lets the model
write nothing but one of the options.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

from engine.args import EngineArgs
from engine.base import ChatResult, ChoiceResult, Engine, EngineError, Message, SamplingParams, parse_choice

logger = logging.getLogger(__name__)

# On CPU, vLLM reads --gpu_memory_utilization as a fraction of *host* RAM to reserve, which fails or
# starves other processes on a shared machine; a fixed KV cache is predictable instead. One GiB holds
# ~45k tokens of SmolLM2-135M. vLLM's own VLLM_CPU_KVCACHE_SPACE (GiB) still overrides it.
CPU_KV_CACHE_BYTES = 1 << 30


def _install_hint() -> str:
    try:
        import torch

        on_gpu = torch.cuda.is_available()
    except ImportError:
        on_gpu = False
    return "pip install vllm" if on_gpu else "bash scripts/install_vllm_cpu.sh"


def cpu_auto_dtype() -> str:
    """The dtype `--dtype auto` means on CPU: bf16 where the CPU computes it natively, else fp32.

    vLLM's own "auto" casts to bf16 on every x86 CPU, but without AVX512-BF16/AMX the bf16 matmuls are
    emulated: SmolLM2-135M decoded ~6x slower in bf16 than in fp32 on an AVX2-only machine.
    """
    import platform

    import torch

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return "auto"  # vLLM chooses per architecture (e.g. bf16 on ARM cores that have it)
    native_bf16 = (getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)()
                   or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    return "bfloat16" if native_bf16 else "float32"


def _shut_down(llm: Any) -> None:
    llm.shutdown()
    # AsyncLLM.__del__ shuts down again, and when that runs at interpreter exit vLLM's module globals
    # are already gone, printing a TypeError traceback; the engine is down, so make it a no-op.
    llm.shutdown = lambda *args, **kwargs: None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


class VLLMEngine(Engine):
    """AsyncLLM backend: concurrent calls go straight to vLLM, which batches them continuously."""

    backend_name = "vllm"

    def __init__(self, model_name: str, args: EngineArgs):
        super().__init__(model_name, args.sampling_defaults())
        self.args = args
        self.llm: Any = None
        self.tokenizer: Any = None
        self._vllm: dict[str, Any] = {}
        self._start_lock = asyncio.Lock()
        self._per_request_seeds: bool | None = None
        self._told_seeds_off = False

    def engine_args(self) -> Any:
        """The `AsyncEngineArgs` this backend starts vLLM with (imports vLLM)."""
        vllm = self._import_vllm()
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        dtype = self.args.dtype
        if on_cpu and dtype == "auto":
            dtype = cpu_auto_dtype()
        kwargs: dict[str, Any] = {
            "model": self.model_name,
            "enable_prefix_caching": True,
            "tensor_parallel_size": self.args.tensor_parallel_size,
            # Each copy takes --tensor_parallel_size GPUs; AsyncLLM balances requests over the copies.
            "data_parallel_size": self.args.data_parallel_size,
            "gpu_memory_utilization": self.args.gpu_memory_utilization,
            "max_model_len": self.args.max_model_len,
            "dtype": dtype,
            "enforce_eager": self.args.enforce_eager,
            "seed": self.args.seed,
            # The periodic stats logger is for servers; an embedded engine reports through our own bars.
            "disable_log_stats": True,
        }
        if on_cpu:
            kwargs["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
        if self.args.trust_remote_code:
            kwargs["trust_remote_code"] = True
        return vllm["AsyncEngineArgs"](**kwargs)

    def _import_vllm(self) -> dict[str, Any]:
        if self._vllm:
            return self._vllm
        try:
            from vllm import SamplingParams as VLLMSamplingParams
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.inputs import TokensPrompt
            from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams
            from vllm.v1.engine.async_llm import AsyncLLM
            from vllm.v1.engine.exceptions import EngineDeadError
        except ImportError as exc:
            if exc.name == "vllm":
                raise EngineError("--backend vllm needs the vllm package; "
                                  f"install it with `{_install_hint()}`") from None
            raise EngineError(f"--backend vllm: vllm failed to import ({_first_line(exc)}); "
                              f"reinstall it with `{_install_hint()}`") from None
        except RuntimeError as exc:
            # A torchvision built for another torch fails at import with "operator torchvision::nms does not exist".
            raise EngineError(f"--backend vllm: vllm failed to import ({_first_line(exc)}); "
                              f"reinstall it with `{_install_hint()}`") from None
        self._vllm = {"AsyncEngineArgs": AsyncEngineArgs, "AsyncLLM": AsyncLLM, "TokensPrompt": TokensPrompt,
                      "SamplingParams": VLLMSamplingParams, "RequestOutputKind": RequestOutputKind,
                      "StructuredOutputsParams": StructuredOutputsParams, "EngineDeadError": EngineDeadError}
        return self._vllm

    async def start(self) -> None:
        async with self._start_lock:
            if self.llm is not None:
                return
            self._import_vllm()
            model_path = Path(self.model_name).expanduser()
            if (model_path.is_absolute() or self.model_name.startswith(".")) and not model_path.exists():
                raise EngineError(f"--model_name {self.model_name!r}: no such model directory")
            # Created inside the running loop on purpose: AsyncLLM binds its output handler to this loop.
            try:
                llm = self._vllm["AsyncLLM"].from_engine_args(self.engine_args())
            except EngineError:
                raise
            except (OSError, ValueError) as exc:
                raise EngineError(f"--model_name {self.model_name!r}: "
                                  f"vLLM could not load it ({_first_line(exc)})") from None
            except RuntimeError as exc:
                # Engine-core start failures (too little memory, a bad kernel) are detailed in vLLM's log.
                raise EngineError(f"--model_name {self.model_name!r}: vLLM could not start it "
                                  f"({_first_line(exc)}); see vLLM's log above") from None
            tokenizer = llm.get_tokenizer()
            if not getattr(tokenizer, "chat_template", None):
                _shut_down(llm)
                raise EngineError(f"--model_name {self.model_name!r}: its tokenizer has no chat template")
            self.llm, self.tokenizer = llm, tokenizer
            config = llm.vllm_config
            logger.info("vllm engine: %s (%s, max_model_len %d, prefix caching %s)", self.model_name,
                        config.model_config.dtype, config.model_config.max_model_len,
                        config.cache_config.enable_prefix_caching)

    @property
    def max_model_len(self) -> int | None:
        """vLLM's context length for this model (--max_model_len, else the model's), once started."""
        return None if self.llm is None else int(self.llm.vllm_config.model_config.max_model_len)

    async def close(self) -> None:
        llm, self.llm, self.tokenizer = self.llm, None, None
        if llm is not None:
            # Shutdown waits for the engine processes to exit (seconds); keep the loop responsive meanwhile.
            await asyncio.to_thread(_shut_down, llm)

    def per_request_seeds(self) -> bool:
        """Whether this platform's vLLM takes a `seed` per request (CUDA does; vllm-cpu crashes on it)."""
        if self._per_request_seeds is None:
            self._import_vllm()
            from vllm.platforms import current_platform

            self._per_request_seeds = not current_platform.is_cpu()
        return self._per_request_seeds

    def prompt_token_ids(self, messages: list[Message]) -> list[int]:
        """The conversation rendered with the model's chat template, as token ids ready for generation."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # The template already writes every special token it wants (BOS included, if any).
        return self.tokenizer.encode(text, add_special_tokens=False)

    def sampling_params(self, params: SamplingParams) -> Any:
        """Our sampling options as vLLM's; greedy asks for one sequence since all n would be identical."""
        vllm = self._import_vllm()
        common = {
            "max_tokens": params.max_tokens,
            "stop": list(params.stop) if params.stop else None,
            # Only the finished output is needed: skip building a partial RequestOutput every step.
            "output_kind": vllm["RequestOutputKind"].FINAL_ONLY,
        }
        if params.greedy:
            return vllm["SamplingParams"](n=1, temperature=0.0, top_p=1.0, **common)
        seed = params.seed
        if seed is not None and not self.per_request_seeds():
            seed = None
            if not self._told_seeds_off:
                self._told_seeds_off = True
                logger.warning("vllm backend: per-request seeds are off on this platform (vLLM on CPU crashes "
                               "on them); the engine is seeded once with --seed %d", self.args.seed)
        return vllm["SamplingParams"](n=params.n, temperature=params.temperature, top_p=params.top_p,
                                      seed=seed, **common)

    async def _chat(self, messages: list[Message], params: SamplingParams) -> ChatResult:
        if self.llm is None:
            await self.start()
        return await self._generate(self.prompt_token_ids(messages), params)

    async def _complete(self, prompt: str, params: SamplingParams) -> ChatResult:
        if self.llm is None:
            await self.start()
        # No chat template: the tokenizer's own special tokens (a BOS, for models that want one) and the text.
        return await self._generate(self.tokenizer.encode(prompt), params)

    async def _choose(self, messages: list[Message], options: tuple[str, ...]) -> ChoiceResult:
        if self.llm is None:
            await self.start()
        vllm = self._vllm
        # Room for the longest option written byte by byte, plus the end-of-sequence token.
        max_tokens = max(len(option.encode("utf-8")) for option in options) + 1
        sampling = vllm["SamplingParams"](
            n=1, temperature=0.0, top_p=1.0, max_tokens=max_tokens,
            structured_outputs=vllm["StructuredOutputsParams"](choice=list(options)),
            output_kind=vllm["RequestOutputKind"].FINAL_ONLY)
        result = await self._generate(self.prompt_token_ids(messages), None, sampling)
        text = result.text
        # The grammar allows the options only; the strict parse guards a reply cut off or left unconstrained.
        choice = text if text in options else parse_choice(text, options)
        return ChoiceResult(choice=choice, text=text, prompt_tokens=result.prompt_tokens,
                            completion_tokens=result.completion_tokens,
                            finish_reason=result.finish_reasons[0] if result.finish_reasons else "")

    async def _generate(self, prompt_token_ids: list[int], params: SamplingParams | None,
                        vllm_params: Any = None) -> ChatResult:
        """One request; `params` are ours (converted), or None with `vllm_params` given as vLLM's own."""
        prompt = self._vllm["TokensPrompt"](prompt_token_ids=prompt_token_ids)
        sampling = vllm_params if params is None else self.sampling_params(params)
        final = None
        try:
            async for output in self.llm.generate(prompt, sampling, request_id=uuid.uuid4().hex):
                final = output
        except self._vllm["EngineDeadError"] as exc:
            # Not this request's fault: every later request would fail too, so the run must stop.
            raise EngineError(f"the vLLM engine for {self.model_name!r} died ({_first_line(exc)}); "
                              "see vLLM's log above") from None
        if final is None or not final.outputs:
            raise EngineError(f"vLLM returned no output for a request to {self.model_name!r}")
        choices = sorted(final.outputs, key=lambda choice: choice.index)
        texts = [choice.text for choice in choices]
        reasons = [choice.finish_reason or "" for choice in choices]
        completion_tokens = sum(len(choice.token_ids) for choice in choices)
        if params is not None and params.greedy and params.n > 1:
            texts, reasons, completion_tokens = texts * params.n, reasons * params.n, completion_tokens * params.n
        return ChatResult(texts=texts, prompt_tokens=len(final.prompt_token_ids),
                          completion_tokens=completion_tokens, finish_reasons=reasons)
