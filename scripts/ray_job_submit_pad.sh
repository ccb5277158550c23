#!/usr/bin/env bash
# PAD on a multi-node Ray cluster with OpenRLHF (an example: edit the paths and the layout).
#
# 1. On the head node:     ray start --head --node-ip-address "$HEAD_IP" --num-gpus 8
#    On every other node:  ray start --address "$HEAD_IP:6379" --num-gpus 8
# 2. From the repository root on the head node:
#      bash scripts/ray_job_submit_pad.sh
#
# distill.grpo --dry_run writes the prompt file and the reward settings under $SAVE_PATH and prints the
# OpenRLHF command; this script submits that command as a Ray job. The reward workers import
# distill/openrlhf_reward.py by path, so $SAVE_PATH and the repository must be on storage every node sees.
# Secrets stay in the environment: wandb reads WANDB_API_KEY (passed to the job via --runtime-env-json).
set -euo pipefail

PRETRAIN=${PRETRAIN:-Qwen/Qwen3-0.6B}
REWARD_PRETRAIN=${REWARD_PRETRAIN:-outputs/prm_qmsum}
PROMPT_DATA=${PROMPT_DATA:-results/QMSum/labeled.jsonl}
SAVE_PATH=${SAVE_PATH:-outputs/grpo_qmsum}
RAY_ADDRESS=${RAY_ADDRESS:-http://127.0.0.1:8265}
NUM_NODES=${NUM_NODES:-2}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}

# The command, one argument per line (the dry run prints it with shell quoting and line continuations).
COMMAND=$(python -m distill.grpo --engine openrlhf --dry_run \
    --pretrain "$PRETRAIN" --reward_pretrain "$REWARD_PRETRAIN" --prompt_data "$PROMPT_DATA" \
    --save_path "$SAVE_PATH" --temperature 0.5 --n_samples_per_prompt 8 --advantage_estimator rloo \
    --reward_mode PRMVR --verifiable_reward_coef 1.0 --micro_rollout_batch_size 4 --rollout_batch_size 64 \
    --micro_train_batch_size 2 --train_batch_size 128 --actor_learning_rate 5e-7 --init_kl_coef 0.001 \
    --max_epochs 1 --num_episodes 1 --prompt_max_len 40960 --generate_max_len 2048 --zero_stage 2 --bf16 \
    --flash_attn --gradient_checkpointing --save_steps 20 --logging_steps 1 \
    --actor_num_nodes "$NUM_NODES" --actor_num_gpus_per_node "$GPUS_PER_NODE" \
    --vllm_num_engines "$((NUM_NODES * GPUS_PER_NODE / 2))" --vllm_tensor_parallel_size 2)

ENV_JSON=$(python - "$SAVE_PATH" <<'PY'
import json, os, sys
env = {"AGENTARK_PAD_REWARD_CONFIG": os.path.abspath(os.path.join(sys.argv[1], "pad_reward.json")),
       "PYTHONPATH": os.getcwd()}
if os.environ.get("WANDB_API_KEY"):
    env["WANDB_API_KEY"] = os.environ["WANDB_API_KEY"]
print(json.dumps({"working_dir": os.getcwd(), "env_vars": env}))
PY
)

# The environment assignments at the head of the printed command go in --runtime-env-json instead.
ray job submit --address "$RAY_ADDRESS" --runtime-env-json "$ENV_JSON" -- \
    bash -c "$(echo "$COMMAND" | sed -e 's/^[A-Z_]*=[^ ]* //' -e 's/^[A-Z_]*=[^ ]* //')"
