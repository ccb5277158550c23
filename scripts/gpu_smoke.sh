#!/usr/bin/env bash
# GPU smoke check (one short run on a lent GPU machine; see DEVELOPERS notes):
#   - the hf engine, driver and method tests on CUDA;
#   - bench_inference on a SmolLM2-135M-shaped model (random weights: hub weights are unreachable there,
#     so every request runs to max tokens, which is what a throughput figure wants);
#   - inference.py llm_debate end to end on CUDA.
# Inputs carried beside the tree: .whl/ (pytest-asyncio) and .gpu/smollm2/ (config + tokenizer, no weights).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_smoke_out}
mkdir -p "$OUT"
PY=python3
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
nvidia-smi -L
$PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__)"

MODEL=/tmp/smollm2-random
$PY - <<'PY'
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
src, dst = ".gpu/smollm2", "/tmp/smollm2-random"
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src))
model.save_pretrained(dst)
AutoTokenizer.from_pretrained(src).save_pretrained(dst)
print("built", dst, sum(p.numel() for p in model.parameters()) / 1e6, "M params")
PY

echo "== tests on CUDA"
AGENTARK_TEST_DEVICE=cuda timeout 100 $PY -m pytest -q -p no:cacheprovider tests/test_engine_hf.py tests/test_runner.py tests/test_methods_basic.py 2>&1 | tail -5

echo "== bench: cot, 256 samples x 128 tokens"
timeout 80 $PY scripts/bench_inference.py --model_name $MODEL --device cuda --dtype bfloat16 --method_name cot \
  --num_samples 256 --num_sequential_samples 8 --model_max_tokens 128 2>&1 | tail -12 | tee "$OUT/bench_cot.txt"

echo "== bench: llm_debate, 64 samples x 64 tokens"
timeout 80 $PY scripts/bench_inference.py --model_name $MODEL --device cuda --dtype bfloat16 --method_name llm_debate \
  --num_samples 64 --num_sequential_samples 4 --model_max_tokens 64 2>&1 | tail -12 | tee "$OUT/bench_debate.txt"

echo "== inference.py llm_debate on CUDA"
timeout 60 $PY inference.py --method_name llm_debate --test_dataset_name GSM8K --data_path data/samples/gsm8k.jsonl \
  --max_samples 8 --model_name $MODEL --device cuda --model_max_tokens 64 --output_path "$OUT/debate.jsonl" --no_progress 2>&1 | tail -3
$PY -c "import json,sys; r=[json.loads(l) for l in open('$OUT/debate.jsonl')]; print(len(r), 'records,', sum(len(x['trajectory']) for x in r), 'turns')"
