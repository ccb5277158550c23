"""PAD on a Ray cluster: build and run `python -m openrlhf.cli.train_ppo_ray` with its namespaced flags.

Our flags (the seed's flat OpenRLHF names) map onto OpenRLHF's current ones (as of openrlhf 0.11
train_ppo_ray). The prompts are written as chat messages (the `cot` prompt, so OpenRLHF applies the student's
chat template) with a JSON label holding the reference; the reward is `distill/openrlhf_reward.py`.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from data.atomic import atomic_write_text
from data.records import write_records
from distill.grpo_args import OPENRLHF_ESTIMATORS, PadArguments, UsageError
from distill.openrlhf_reward import CONFIG_ENV
from distill.pad_data import PromptRow
from distill.rewards import RewardSettings

logger = logging.getLogger("agentark.pad")

OPENRLHF_MODULE = "openrlhf.cli.train_ppo_ray"
REWARD_FILE = Path(__file__).resolve().parent / "openrlhf_reward.py"
REPO_ROOT = Path(__file__).resolve().parents[1]


def check_openrlhf_flags(args: PadArguments) -> None:
    """Flags that mean nothing to OpenRLHF are one-line errors, never dropped."""
    if args.advantage_estimator not in OPENRLHF_ESTIMATORS:
        raise UsageError(f"--advantage_estimator must be one of {', '.join(OPENRLHF_ESTIMATORS)} on --engine "
                         f"openrlhf, got {args.advantage_estimator}")
    if args.reward_baseline is not None:
        raise UsageError("--reward_baseline is an --engine trl flag: OpenRLHF baselines the scalar reward itself "
                         "(--advantage_estimator)")
    if args.vllm != "auto":
        raise UsageError("--vllm is an --engine trl flag: OpenRLHF generates with --vllm_num_engines engines")
    if args.max_steps != -1:
        raise UsageError("--max_steps is an --engine trl flag: OpenRLHF runs --num_episodes over the prompts "
                         "(--max_samples limits them)")


def write_inputs(args: PadArguments, rows: list[PromptRow], task_type: str) -> tuple[Path, Path]:
    """The prompt file and the reward settings file the OpenRLHF run reads, under --save_path."""
    out = Path(args.save_path)
    prompts = out / "openrlhf_prompts.jsonl"
    write_records(prompts, [{"messages": row.prompt,
                             "label": json.dumps({"gt": row.gt, "prm_query": row.prm_query, "choices": row.choices})}
                            for row in rows])
    settings = RewardSettings(args.reward_mode, task_type,
                              str(Path(args.reward_pretrain).resolve()) if args.reward_pretrain else None,
                              args.verifiable_reward_coef, args.prm_aggregate, args.prm_batch_size)
    config = out / "pad_reward.json"
    atomic_write_text(config, [json.dumps(dataclasses.asdict(settings), indent=2)])
    return prompts.resolve(), config.resolve()


def build_command(args: PadArguments, prompts: Path, reward_config: Path) -> tuple[dict[str, str], list[str]]:
    """(extra environment, argv) of the OpenRLHF run."""
    save = Path(args.save_path).resolve()
    argv = [sys.executable, "-m", OPENRLHF_MODULE,
            "--actor.model_name_or_path", args.pretrain,
            "--reward.remote_url", str(REWARD_FILE),
            "--data.prompt_dataset", str(prompts),
            "--data.input_key", "messages",
            "--data.label_key", "label",
            "--data.apply_chat_template",
            "--data.max_len", str(args.prompt_max_len + args.generate_max_len),
            "--rollout.max_new_tokens", str(args.generate_max_len),
            "--rollout.temperature", str(args.temperature),
            "--rollout.top_p", str(args.top_p),
            "--rollout.n_samples_per_prompt", str(args.n_samples_per_prompt),
            "--rollout.batch_size", str(args.rollout_batch_size),
            "--rollout.micro_batch_size", str(args.micro_rollout_batch_size),
            "--train.batch_size", str(args.train_batch_size),
            "--train.micro_batch_size", str(args.micro_train_batch_size),
            "--train.max_epochs", str(args.max_epochs),
            "--train.num_episodes", str(args.num_episodes),
            "--train.seed", str(args.seed),
            "--actor.adam.lr", str(args.actor_learning_rate),
            "--algo.kl.init_coef", str(args.init_kl_coef),
            "--algo.advantage.estimator", args.advantage_estimator,
            "--ckpt.output_dir", str(save),
            "--ckpt.path", str(save / "ckpt"),
            "--ckpt.save_steps", str(args.save_steps),
            "--ckpt.load_enable",  # a rerun resumes from the last checkpoint under --ckpt.path
            "--logger.logging_steps", str(args.logging_steps),
            "--ds.attn_implementation", "flash_attention_2" if args.flash_attn else "sdpa"]
    if args.max_samples is not None:
        argv += ["--data.max_samples", str(args.max_samples)]
    if args.zero_stage is not None:
        argv += ["--ds.zero_stage", str(args.zero_stage)]
    if args.bf16:
        argv += ["--ds.param_dtype", "bf16"]
    if args.gradient_checkpointing:
        argv.append("--actor.gradient_checkpointing_enable")
    layout = {"--actor.num_nodes": args.actor_num_nodes, "--actor.num_gpus_per_node": args.actor_num_gpus_per_node,
              "--vllm.num_engines": args.vllm_num_engines,
              "--vllm.tensor_parallel_size": args.vllm_tensor_parallel_size}
    if args.init_kl_coef > 0:  # the reference model sits where the actor does
        layout["--ref.num_nodes"] = args.actor_num_nodes
        layout["--ref.num_gpus_per_node"] = args.actor_num_gpus_per_node
    for flag, value in layout.items():
        if value is not None:
            argv += [flag, str(value)]
    if args.colocate_all_models:
        argv.append("--train.colocate_all")
    if args.report_to == "tensorboard":
        argv += ["--logger.tensorboard_dir", str(save / "tensorboard")]
    elif args.report_to == "wandb":
        # The key only ever comes from the environment; printed commands show the variable, not its value.
        argv += ["--logger.wandb.key", "$WANDB_API_KEY", "--logger.wandb.run_name", save.name]
    elif args.report_to != "none":
        raise UsageError(f"--report_to {args.report_to}: --engine openrlhf logs to none, wandb or tensorboard")
    env = {CONFIG_ENV: str(reward_config), "PYTHONPATH": str(REPO_ROOT)}
    return env, argv


def shell_line(env: dict[str, str], argv: list[str]) -> str:
    """The command as one copy-pasteable shell line."""
    words = [f"{key}={shlex.quote(value)}" for key, value in env.items()]
    words += [word if word == "$WANDB_API_KEY" else shlex.quote(word) for word in argv]
    return " ".join(words).replace(" --", " \\\n    --")


def run_openrlhf(args: PadArguments, rows: list[PromptRow], task_type: str) -> dict[str, Any]:
    """Write the inputs, then print (--dry_run) or run the OpenRLHF command."""
    check_openrlhf_flags(args)
    prompts, reward_config = write_inputs(args, rows, task_type)
    env, argv = build_command(args, prompts, reward_config)
    if args.dry_run:
        print(shell_line(env, argv))
        return {"returncode": 0}
    if importlib.util.find_spec("openrlhf") is None:
        raise UsageError("--engine openrlhf needs OpenRLHF on a GPU node: pip install openrlhf (see "
                         "requirements-gpu.txt); --dry_run prints the command")
    if "$WANDB_API_KEY" in argv:
        key = os.environ.get("WANDB_API_KEY")
        if not key:
            raise UsageError("--report_to wandb needs WANDB_API_KEY in the environment")
        argv = [key if word == "$WANDB_API_KEY" else word for word in argv]
    full_env = dict(os.environ)
    full_env.update(env)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    logger.info("running %s", OPENRLHF_MODULE)
    return {"returncode": subprocess.run(argv, env=full_env, check=False).returncode}


__all__ = ["CONFIG_ENV", "OPENRLHF_MODULE", "build_command", "check_openrlhf_flags", "run_openrlhf", "shell_line",
           "write_inputs"]
