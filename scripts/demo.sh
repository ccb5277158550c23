#!/usr/bin/env bash
# The offline demo: every multi-agent method on the GSM8K sample file with the embedded default model
# (CPU, no network), then grading and the report. Resumable: rerun to finish an interrupted demo.
#   bash scripts/demo.sh [max_samples=4] [max_tokens=96]   (30+ minutes on 2 CPU cores; agentverse and mav take longest)
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_SAMPLES=${1:-4}
MAX_TOKENS=${2:-96}
PY=${PYTHON:-python3}
MODEL=$($PY scripts/default_model.py)
for method in cot self_consistency llm_debate dylan agentverse mav; do
  echo "== $method"
  $PY inference.py --method_name "$method" --test_dataset_name GSM8K --data_path data/samples/gsm8k.jsonl \
    --max_samples "$MAX_SAMPLES" --model_name "$MODEL" --model_max_tokens "$MAX_TOKENS" --result_dir results
  $PY -m eval.math_eval --input_file "results/GSM8K/$(basename "$MODEL")/${method}_infer.jsonl" --dataset_name GSM8K
done
$PY -m eval.report --results_dir results --out reports/
echo "report: reports/report.md, reports/accuracy_vs_tokens.png, reports/accuracy_by_method.png"
