"""Engine options in one dataclass, the CLI flags that fill it, and the factory every entrypoint uses."""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from engine.base import Engine, EngineError, SamplingParams

logger = logging.getLogger(__name__)

BACKENDS = ("hf", "vllm", "openai")
# Flags read by some backends only; any flag not named here (sampling, seed, model, concurrency) serves all.
BACKEND_FLAGS: dict[str, tuple[str, ...]] = {
    "device": ("hf",),
    "max_batch_size": ("hf",),
    "batch_wait_ms": ("hf",),
    "tensor_parallel_size": ("vllm",),
    "data_parallel_size": ("vllm",),
    "gpu_memory_utilization": ("vllm",),
    "max_model_len": ("vllm",),
    "enforce_eager": ("vllm",),
    "model_api_config": ("openai",),
    "request_timeout": ("openai",),
    "max_retries": ("openai",),
    "modal_url": ("openai",),
    "modal_app": ("openai",),
    # The server loads the model for the openai backend: these say nothing to it.
    "dtype": ("hf", "vllm"),
    "trust_remote_code": ("hf", "vllm"),
}
# Where parse_args_with_explicit leaves the names of the options the command line gave.
EXPLICIT_ATTR = "explicit_flags"


@dataclass
class EngineArgs:
    """Everything needed to build an Engine. `model_name=None` means the embedded default model."""

    model_name: str | None = None
    backend: str = "hf"
    model_temperature: float = 0.5
    model_max_tokens: int = 4096
    top_p: float = 1.0
    seed: int = 0
    dtype: str = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    # hf
    max_batch_size: int | None = None  # None: 256 on GPU, 64 on CPU
    batch_wait_ms: float = 5.0
    # vllm
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    enforce_eager: bool = False
    # openai
    model_api_config: str = "configs/model_api_config.yaml"
    max_concurrency: int = 256
    request_timeout: float = 600.0
    max_retries: int = 5
    # openai, endpoint from a Modal deployment (modal/launch_modal.py) instead of --model_api_config
    use_modal_batch: bool = False
    modal_url: str | None = None
    modal_app: str = "agentark-vllm"
    # Options the user gave on the command line (dest names), even at their default values: a flag
    # given for another backend is warned about. Empty when not parsed with parse_args_with_explicit.
    explicit_flags: frozenset[str] = field(default_factory=frozenset, repr=False)

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> EngineArgs:
        values = {f.name: getattr(ns, f.name) for f in fields(cls) if hasattr(ns, f.name)}
        values["explicit_flags"] = frozenset(getattr(ns, EXPLICIT_ATTR, ()))
        modal_only = sorted(values["explicit_flags"] & {"modal_url", "modal_app"})
        if modal_only and not values.get("use_modal_batch"):
            raise EngineError(f"--{modal_only[0]} needs --use_modal_batch")
        if values.get("use_modal_batch"):
            # A Modal deployment is an OpenAI-compatible server: the openai backend talks to it.
            backend = values.get("backend", cls.backend)
            if getattr(ns, "use_vllm", False) or (backend != "openai" and "backend" in values["explicit_flags"]):
                other = "--use_vllm" if getattr(ns, "use_vllm", False) else f"--backend {backend}"
                raise EngineError(f"--use_modal_batch (the openai backend on a Modal deployment) conflicts with "
                                  f"{other}; give one of them")
            values["backend"] = "openai"
        elif getattr(ns, "use_vllm", False):
            backend = values.get("backend", cls.backend)
            if backend != "vllm" and (backend != cls.backend or "backend" in values["explicit_flags"]):
                raise EngineError(f"--use_vllm (an alias for --backend vllm) conflicts with --backend {backend}; "
                                  "give one of them")
            values["backend"] = "vllm"
        elif "backend" not in values["explicit_flags"]:
            # The seed's commands give `--tensor_parallel_size 4` and no backend: only vLLM reads that flag,
            # so it is taken to choose vLLM rather than warned about on the default hf backend.
            implying = sorted(values["explicit_flags"]
                              & {"tensor_parallel_size", "data_parallel_size", "gpu_memory_utilization"})
            if implying:
                logger.info("--%s implies --backend vllm", implying[0])
                values["backend"] = "vllm"
        return cls(**values)

    def unused_flags(self) -> list[str]:
        """One line for each flag given explicitly that the chosen backend does not read."""
        lines = []
        for name in sorted(self.explicit_flags & set(BACKEND_FLAGS)):
            owners = BACKEND_FLAGS[name]
            if self.backend not in owners:
                lines.append(f"--{name} is a flag of the {' and '.join(owners)} backend{'s' * (len(owners) > 1)}; "
                             f"it does nothing with --backend {self.backend}")
        if self.use_modal_batch and "model_api_config" in self.explicit_flags:
            lines.append("--model_api_config is not read with --use_modal_batch (the deployment is the endpoint)")
        return lines

    def sampling_defaults(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.model_temperature,
            top_p=self.top_p,
            max_tokens=self.model_max_tokens,
            seed=self.seed,
        )


def add_engine_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the shared engine flags (the paper's names kept) to an entrypoint's parser."""
    d = EngineArgs()
    g = parser.add_argument_group("engine")
    g.add_argument("--model_name", default=d.model_name,
                   help="hub id or local path of the model; default: the embedded SmolLM2-135M-Instruct")
    g.add_argument("--backend", choices=BACKENDS, default=d.backend,
                   help="hf (transformers, CPU or GPU), vllm (AsyncLLM), openai (OpenAI-compatible server)")
    g.add_argument("--use_vllm", action="store_true", help="alias for --backend vllm (the seed's flag)")
    g.add_argument("--model_temperature", type=float, default=d.model_temperature,
                   help="sampling temperature; 0 means greedy")
    g.add_argument("--model_max_tokens", type=int, default=d.model_max_tokens,
                   help="max new tokens per LLM call")
    g.add_argument("--top_p", type=float, default=d.top_p, help="nucleus sampling top-p")
    g.add_argument("--seed", type=int, default=d.seed, help="random seed for sampling and methods")
    g.add_argument("--dtype", default=d.dtype, help="model dtype: auto, float32, bfloat16, float16")
    g.add_argument("--device", default=d.device, help="hf backend device: auto, cpu, cuda, cuda:1, ...")
    g.add_argument("--trust_remote_code", action="store_true",
                   help="allow model repos to run their own code (off unless you pass it)")
    g.add_argument("--max_batch_size", type=int, default=d.max_batch_size,
                   help="hf backend: most sequences per padded batch (default: 256 on GPU, 64 on CPU)")
    g.add_argument("--batch_wait_ms", type=float, default=d.batch_wait_ms,
                   help="hf backend: how long the batcher waits for more requests before a batch starts")
    g.add_argument("--tensor_parallel_size", type=int, default=d.tensor_parallel_size,
                   help="vllm backend: GPUs per model")
    g.add_argument("--data_parallel_size", type=int, default=d.data_parallel_size,
                   help="vllm backend: model copies, each on --tensor_parallel_size GPUs of this node; "
                        "vLLM spreads requests over them")
    g.add_argument("--gpu_memory_utilization", type=float, default=d.gpu_memory_utilization,
                   help="vllm backend: fraction of GPU memory vLLM may take "
                        "(ignored on CPU: set VLLM_CPU_KVCACHE_SPACE in GiB)")
    g.add_argument("--max_model_len", type=int, default=d.max_model_len,
                   help="vllm backend: context length limit (default: the model's)")
    g.add_argument("--enforce_eager", action="store_true",
                   help="vllm backend: disable CUDA graphs / compilation (halves engine start on CPU)")
    g.add_argument("--model_api_config", default=d.model_api_config,
                   help="openai backend: YAML list of {model_name, base_url, api_key_env} endpoints")
    g.add_argument("--max_concurrency", type=int, default=d.max_concurrency,
                   help="most samples (and openai requests) in flight at once")
    g.add_argument("--request_timeout", type=float, default=d.request_timeout,
                   help="openai backend: seconds before a request times out")
    g.add_argument("--max_retries", type=int, default=d.max_retries,
                   help="openai backend: retries with backoff on 429/5xx/timeouts")
    g.add_argument("--use_modal_batch", action="store_true",
                   help="run on the Modal deployment of modal/launch_modal.py (the openai backend; "
                        "--model_api_config is not read)")
    g.add_argument("--modal_url", default=d.modal_url,
                   help="with --use_modal_batch: the deployment's URL (default: $AGENTARK_MODAL_URL, "
                        "else looked up by --modal_app with the modal package)")
    g.add_argument("--modal_app", default=d.modal_app,
                   help="with --use_modal_batch: the Modal app name the deployment was given (AGENTARK_MODAL_APP)")
    return parser


def parse_args_with_explicit(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """`parser.parse_args(argv)`, plus the set of options the command line gave in `ns.explicit_flags`.

    A second parse starts from a namespace where every option holds a sentinel: argparse only fills
    defaults into attributes that are missing, so whatever is no longer the sentinel was typed, even a
    value equal to the default (abbreviations and `--flag=value` included). Errors exit in the first parse.
    """
    ns = parser.parse_args(argv)
    # A fresh object per option, compared by identity: store actions replace it, append/extend actions
    # copy it (so a list), count actions add to it (so None, which they read as 0).
    sentinels: dict[str, Any] = {}
    for action in parser._actions:
        if action.dest != argparse.SUPPRESS:
            sentinels[action.dest] = None if isinstance(action, argparse._CountAction) else []
    probe = parser.parse_args(argv, namespace=argparse.Namespace(**sentinels))
    setattr(ns, EXPLICIT_ATTR, frozenset(d for d, unset in sentinels.items() if getattr(probe, d) is not unset))
    return ns


def resolve_model_name(model_name: str | None) -> str:
    if model_name:
        return model_name
    from engine.default_model import ensure_default_model

    return str(ensure_default_model())


def build_engine(args: EngineArgs) -> Engine:
    """Instantiate the backend named in `args` (imported lazily: vLLM and openai are optional).

    Flags given for another backend are logged as warnings here, so every entrypoint reports them.
    """
    for line in args.unused_flags():
        logger.warning(line)
    model_name = resolve_model_name(args.model_name) if args.backend != "openai" else args.model_name
    if args.use_modal_batch and not model_name:
        raise EngineError("--model_name is required with --use_modal_batch (the model the deployment serves)")
    if args.backend == "openai" and not model_name:
        raise EngineError("--model_name is required with --backend openai (it selects endpoints in --model_api_config)")
    if args.backend == "hf":
        from engine.hf_backend import HFEngine

        return HFEngine(model_name, args)
    if args.backend == "vllm":
        from engine.vllm_backend import VLLMEngine

        return VLLMEngine(model_name, args)
    if args.backend == "openai":
        from engine.openai_backend import OpenAIEngine

        return OpenAIEngine(model_name, args)
    raise EngineError(f"unknown --backend {args.backend!r}; choose one of {', '.join(BACKENDS)}")
