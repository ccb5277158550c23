#!/usr/bin/env bash
# Submit a sharded inference run and its merge in one go:
#   NUM_SHARDS=8 MODEL=Qwen/Qwen3-8B METHOD=llm_debate DATASET=GSM8K bash configs/slurm/submit_inference.sh
# The data selection goes in DATA_FLAGS (both jobs read it: the merge checks the same samples), e.g.
# DATA_FLAGS="--max_samples 500"; other arguments go to inference.py (e.g. --model_max_tokens 2048).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p logs
NUM_SHARDS=${NUM_SHARDS:-8}
export MODEL=${MODEL:-Qwen/Qwen3-8B} METHOD=${METHOD:-llm_debate} DATASET=${DATASET:-GSM8K} NUM_SHARDS
export DATA_FLAGS=${DATA_FLAGS:-}
ARRAY=$(sbatch --parsable --array="0-$((NUM_SHARDS - 1))" configs/slurm/inference_array.sbatch "$@")
MERGE=$(sbatch --parsable --dependency="afterany:${ARRAY%%;*}" configs/slurm/merge_shards.sbatch)
echo "inference array job $ARRAY ($NUM_SHARDS shards), merge job $MERGE: logs/ and results/$DATASET/$MODEL/"
