"""A Modal app serving one model with vLLM's OpenAI-compatible server on Modal GPUs.

    AGENTARK_MODAL_MODEL=Qwen/Qwen3-8B AGENTARK_MODAL_GPU=H100 AGENTARK_MODAL_GPU_COUNT=1 \\
        modal deploy modal/launch_modal.py
    python inference.py --use_modal_batch --model_name Qwen/Qwen3-8B --method_name llm_debate ...

Settings come from AGENTARK_MODAL_* variables (modal/agentark_modal_config.py lists them all). The
weights download once into a persistent Modal Volume; later cold starts read them from there. The URL
is https://<workspace>--<app>-serve.modal.run; inference.py finds it by the app name.

This folder has no __init__.py on purpose: a `modal` package here would shadow Modal's own.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import modal

# `modal deploy` puts this folder on sys.path; importing the file another way (tests, the container)
# may not, and the config module sits beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import agentark_modal_config as serve_config  # noqa: E402

config = serve_config.read_config()

image = (
    modal.Image.debian_slim(python_version="3.12")
    .uv_pip_install(config.vllm_requirement)
    # The config module travels with the app so the container reads the settings the same way.
    .add_local_python_source("agentark_modal_config")
)

volumes = {
    serve_config.HF_CACHE_DIR: modal.Volume.from_name(config.volume, create_if_missing=True),
    serve_config.VLLM_CACHE_DIR: modal.Volume.from_name(config.vllm_cache_volume, create_if_missing=True),
}
# Secrets are looked up by name at deploy time; only the ones configured are attached.
secrets = [modal.Secret.from_name(name) for name in (config.api_key_secret, config.hf_secret) if name]

app = modal.App(config.app_name)

MINUTES = 60


@app.function(
    image=image,
    gpu=config.gpu_spec,
    volumes=volumes,
    secrets=secrets,
    env=config.container_env(),
    max_containers=config.max_containers,
    scaledown_window=config.scaledown_s,
    # One HTTP request is one input: a long generation behind a full batch must not be cut off.
    timeout=60 * MINUTES,
)
@modal.concurrent(max_inputs=config.max_inputs)  # vLLM batches whatever arrives; Modal need not queue it
@modal.web_server(port=serve_config.VLLM_PORT, startup_timeout=30 * MINUTES)  # first start downloads weights
def serve() -> None:
    """Start `vllm serve` in the background; Modal routes requests once the port answers."""
    command = config.serve_command()
    print("starting:", " ".join(command), flush=True)
    subprocess.Popen(command)
