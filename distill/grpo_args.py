"""`python -m distill.grpo` flags: the seed's OpenRLHF names, each with a default and a help string.

Batch arithmetic (OpenRLHF's meaning, kept on every engine):
- one rollout = `rollout_batch_size` prompts x `n_samples_per_prompt` completions;
- one optimizer step = `train_batch_size` completions, in micro batches of `micro_train_batch_size` per device;
- `max_epochs` passes over each rollout, so a rollout gives
  rollout_batch_size * n_samples_per_prompt / train_batch_size * max_epochs optimizer steps;
- `micro_rollout_batch_size` completions are generated at a time per device.
On TRL: per_device_train_batch_size = micro_train_batch_size, gradient_accumulation_steps =
train_batch_size / (micro_train_batch_size * devices), generation_batch_size = rollout_batch_size *
n_samples_per_prompt, num_iterations = max_epochs, num_train_epochs = num_episodes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from distill.rewards import PRM_AGGREGATES, REWARD_BASELINES, REWARD_MODES

ENGINES = ("trl", "openrlhf")
TRL_ESTIMATORS = {"group_norm": "grpo", "rloo": "rloo"}
# OpenRLHF's --algo.advantage.estimator choices (as of openrlhf 0.11 train_ppo_ray).
OPENRLHF_ESTIMATORS = ("gae", "reinforce", "rloo", "reinforce_baseline", "group_norm", "dr_grpo")


class UsageError(ValueError):
    """A flag or combination of flags that cannot work: one line naming the flag, exit status 2."""


def _f(default, help_text: str, **extra):
    return field(default=default, metadata={"help": help_text, **extra})


@dataclass
class PadArguments:
    """Every flag of `python -m distill.grpo`."""

    pretrain: str | None = _f(None, "student model to train (hub id or folder); required")
    reward_pretrain: str | None = _f(None, "PRM checkpoint from prm/finetune2.py (modes PRM, PRMVR, ORM)")
    prompt_data: str | None = _f(None, "prompts: labeled or inference records, or any JSONL with "
                                       "--input_key/--label_key; required")
    save_path: str = _f("outputs/pad", "where checkpoints and the final student go")
    engine: str = _f("trl", "trl: one node, CPU works; openrlhf: Ray + vLLM + DeepSpeed clusters",
                     choices=list(ENGINES))
    dry_run: bool = _f(False, "openrlhf: print the command instead of running it; trl: print the resolved config")
    max_steps: int = _f(-1, "stop after this many optimizer steps (-1: run --num_episodes)")
    input_key: str = _f("query", "field holding the question")
    label_key: str = _f("gt", "field holding the reference answer")
    dataset_name: str | None = _f(None, "dataset whose grader checks answers (default: the records' `source`)")
    cot_config: str = _f("config_main", "cot config whose system prompt the student is given, as in inference.py")
    max_samples: int | None = _f(None, "use only the first N prompts")
    reward_mode: str = _f("PRMVR", "VR, PRM, PRMVR (PRM + coef x VR) or ORM", choices=list(REWARD_MODES))
    verifiable_reward_coef: float = _f(1.0, "weight of the verifiable reward (solved - 1) in PRMVR")
    prm_aggregate: str = _f("min", "how a completion's step scores become one reward", choices=list(PRM_AGGREGATES))
    reward_baseline: str | None = _f(None, "baseline of the PRM part under rloo: token (the others' reward per "
                                           "token x this length) or step; default token",
                                     choices=list(REWARD_BASELINES))
    prm_batch_size: int = _f(16, "completions per PRM forward pass")
    advantage_estimator: str = _f("rloo", "rloo (RLOOTrainer) or group_norm (GRPOTrainer); openrlhf also takes "
                                          "gae, reinforce, reinforce_baseline, dr_grpo")
    n_samples_per_prompt: int = _f(8, "completions sampled per prompt (the group)")
    rollout_batch_size: int = _f(64, "prompts per rollout")
    micro_rollout_batch_size: int = _f(4, "completions generated at a time per device")
    train_batch_size: int = _f(128, "completions per optimizer step (global)")
    micro_train_batch_size: int = _f(2, "completions per forward/backward pass per device")
    actor_learning_rate: float = _f(5e-7, "learning rate of the student")
    init_kl_coef: float = _f(0.001, "KL coefficient against the initial student (TRL's beta)")
    max_epochs: int = _f(1, "passes over each rollout (TRL's num_iterations)")
    num_episodes: int = _f(1, "passes over the prompts (TRL's num_train_epochs)")
    prompt_max_len: int = _f(1024, "longest prompt in tokens; longer ones keep their end")
    generate_max_len: int = _f(1024, "most new tokens per completion")
    temperature: float = _f(1.0, "sampling temperature")
    top_p: float = _f(1.0, "nucleus sampling")
    zero_stage: int | None = _f(None, "DeepSpeed ZeRO stage when training on several GPUs")
    bf16: bool = _f(False, "train in bfloat16")
    flash_attn: bool = _f(False, "FlashAttention-2 (GPU; needs pip install flash-attn)")
    gradient_checkpointing: bool = _f(False, "recompute activations to save memory")
    save_steps: int = _f(-1, "checkpoint every N optimizer steps (-1: only the final model)")
    logging_steps: int = _f(1, "log every N optimizer steps")
    seed: int = _f(42, "random seed")
    vllm: str = _f("auto", "trl: generate with vLLM (colocated): auto = when on GPU with vllm installed",
                   choices=["auto", "on", "off"])
    report_to: str = _f("none", "none, wandb, tensorboard (wandb reads WANDB_API_KEY from the environment)")
    # Cluster layout (openrlhf only; the seed's flat names).
    actor_num_nodes: int | None = _f(None, "openrlhf: nodes for the actor")
    actor_num_gpus_per_node: int | None = _f(None, "openrlhf: GPUs per node for the actor")
    vllm_num_engines: int | None = _f(None, "openrlhf: vLLM engines for generation")
    vllm_tensor_parallel_size: int | None = _f(None, "openrlhf: tensor parallel size of each vLLM engine")
    colocate_all_models: bool = _f(False, "openrlhf: actor, reference and vLLM share GPUs")

    def resolved_baseline(self) -> str:
        return self.reward_baseline or "token"


def check_common(args: PadArguments) -> None:
    """Checks every engine shares; each failure is one line naming the flag."""
    if not args.prompt_data:
        raise UsageError("--prompt_data is required: labeled records (label.py output), inference records, "
                         "or a JSONL with --input_key/--label_key")
    if not args.pretrain:
        raise UsageError("--pretrain is required: the student model (hub id or folder)")
    if args.reward_mode in ("PRM", "PRMVR", "ORM") and not args.reward_pretrain:
        raise UsageError(f"--reward_mode {args.reward_mode} needs --reward_pretrain (a PRM from prm/finetune2.py)")
    if args.n_samples_per_prompt < 2:
        raise UsageError(f"--n_samples_per_prompt must be >= 2 for a group baseline, got {args.n_samples_per_prompt}")
    for name in ("rollout_batch_size", "micro_rollout_batch_size", "train_batch_size", "micro_train_batch_size",
                 "max_epochs", "num_episodes", "generate_max_len", "prompt_max_len", "logging_steps"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.save_steps == 0 or args.save_steps < -1:
        raise UsageError(f"--save_steps must be >= 1 or -1 (final model only), got {args.save_steps}")
    completions = args.rollout_batch_size * args.n_samples_per_prompt
    if completions % args.train_batch_size:
        raise UsageError(f"--rollout_batch_size {args.rollout_batch_size} x --n_samples_per_prompt "
                         f"{args.n_samples_per_prompt} = {completions} completions per rollout is not a multiple "
                         f"of --train_batch_size {args.train_batch_size}")
    if args.zero_stage is not None and args.zero_stage not in (0, 1, 2, 3):
        raise UsageError(f"--zero_stage must be 0, 1, 2 or 3, got {args.zero_stage}")


__all__ = ["ENGINES", "OPENRLHF_ESTIMATORS", "TRL_ESTIMATORS", "PadArguments", "UsageError", "check_common"]
