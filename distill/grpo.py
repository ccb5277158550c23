"""Process-aware distillation (PAD): the student samples a group of solutions per question, each rewarded by the
PRM's step scores and whether its answer is right; GRPO or RLOO updates it.

    python -m distill.grpo --pretrain Qwen/Qwen3-0.6B --reward_pretrain outputs/prm_qmsum \\
        --prompt_data results/QMSum/labeled.jsonl --save_path outputs/grpo_qmsum --temperature 0.5 \\
        --n_samples_per_prompt 8 --advantage_estimator rloo --reward_baseline token --reward_mode PRMVR \\
        --verifiable_reward_coef 1.0 --micro_rollout_batch_size 4 --rollout_batch_size 64 \\
        --micro_train_batch_size 2 --train_batch_size 128 --actor_learning_rate 5e-7 --init_kl_coef 0.001 \\
        --max_epochs 1 --num_episodes 1 --prompt_max_len 40960 --generate_max_len 2048 --zero_stage 2 --bf16 \\
        --flash_attn --gradient_checkpointing --save_steps 20 --logging_steps 1 [--engine trl|openrlhf] [--dry_run]

`--engine trl` (default) trains here with TRL; `--engine openrlhf` launches OpenRLHF's Ray trainer with our
reward function (`--dry_run` prints the command). A rerun of the same command resumes from the last checkpoint.
"""
from __future__ import annotations

import logging
import sys

from data.errors import DataError
from distill.grpo_args import PadArguments, UsageError, check_common
from distill.rewards import RewardConfigError

logger = logging.getLogger("agentark.pad")


def parse_args(argv: list[str] | None = None) -> PadArguments:
    from transformers import HfArgumentParser

    parser = HfArgumentParser(PadArguments, description=__doc__)
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    return args


def run(args: PadArguments) -> dict:
    """Check the flags, read the prompts, train with the chosen engine."""
    from distill.pad_data import load_prompt_rows

    check_common(args)
    rows, task_type = load_prompt_rows(args.prompt_data, args.input_key, args.label_key, args.dataset_name,
                                       args.cot_config, args.max_samples)
    logger.info("%d prompts from %s (task type %s); flags: %s", len(rows), args.prompt_data, task_type, vars(args))
    if args.engine == "openrlhf":
        from distill.grpo_openrlhf import run_openrlhf

        return run_openrlhf(args, rows, task_type)
    from distill.grpo_trl import run_trl

    return run_trl(args, [row.to_dict() for row in rows], task_type)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = run(parse_args(argv))
    except (UsageError, DataError, RewardConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return int(result.get("returncode", 0))


if __name__ == "__main__":
    sys.exit(main())
