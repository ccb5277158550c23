"""Seconds per PAD step on CPU for the default model, split into generation, reward (PRM scoring and grading),
log-probs (old policy and reference) and update (forward, backward, optimizer).

    python scripts/bench_pad.py --num_steps 3 --num_prompts 2 --n_samples_per_prompt 4 --generate_max_len 64

The PRM is the default model with a fresh step head (its scores mean nothing, its cost is real) unless
--reward_pretrain names a trained one. Prompts are Arith train questions. Each PRM call scores the whole
rollout batch at once; the script counts the calls to show it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _rows(num_prompts: int) -> list[dict]:
    from data.registry import load_samples
    from data.task_prompts import format_question, task_prompt
    from distill.pad_data import cot_system_prompt

    system = cot_system_prompt()
    rows = []
    for sample in load_samples("Arith", split="train", max_samples=num_prompts):
        messages = [] if system is None else [{"role": "system", "content": system}]
        messages.append({"role": "user", "content": task_prompt(sample, "math")})
        rows.append({"prompt": messages, "prm_query": format_question(sample), "gt": sample.gt, "choices": []})
    return rows


def _fresh_prm(model_path: str, folder: Path) -> str:
    from prm.loading import build_prm

    build_prm(model_path).save_pretrained(folder)
    return str(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain", default=None, help="student (default: the embedded default model)")
    parser.add_argument("--reward_pretrain", default=None, help="a trained PRM (default: a fresh head on the student)")
    parser.add_argument("--reward_mode", default="PRMVR", help="VR, PRM, PRMVR or ORM")
    parser.add_argument("--advantage_estimator", default="rloo", help="rloo or group_norm")
    parser.add_argument("--num_steps", type=int, default=3, help="optimizer steps to time")
    parser.add_argument("--num_prompts", type=int, default=2, help="prompts per rollout")
    parser.add_argument("--n_samples_per_prompt", type=int, default=4, help="completions per prompt")
    parser.add_argument("--generate_max_len", type=int, default=64, help="new tokens per completion")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    options = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    from distill.grpo_args import PadArguments
    from distill.grpo_trl import build_trainer
    from engine.default_model import ensure_default_model

    if options.threads:
        torch.set_num_threads(options.threads)
    pretrain = options.pretrain or str(ensure_default_model())
    completions = options.num_prompts * options.n_samples_per_prompt
    with tempfile.TemporaryDirectory() as scratch:
        reward_pretrain = options.reward_pretrain
        if options.reward_mode != "VR" and reward_pretrain is None:
            reward_pretrain = _fresh_prm(pretrain, Path(scratch) / "prm")
        args = PadArguments(pretrain=pretrain, reward_pretrain=reward_pretrain, prompt_data="bench",
                            save_path=str(Path(scratch) / "out"), reward_mode=options.reward_mode,
                            advantage_estimator=options.advantage_estimator,
                            n_samples_per_prompt=options.n_samples_per_prompt, rollout_batch_size=options.num_prompts,
                            train_batch_size=completions, micro_train_batch_size=completions,
                            micro_rollout_batch_size=completions, generate_max_len=options.generate_max_len,
                            max_steps=options.num_steps, actor_learning_rate=1e-6, temperature=0.7)
        trainer = build_trainer(args, _rows(options.num_prompts), "math")
        prm_calls = 0
        if trainer.pad_reward is not None and trainer.pad_reward.settings.uses_prm:
            prm = trainer.pad_reward.prm
            score_many = prm.score_many

            def counted(items):
                nonlocal prm_calls
                prm_calls += 1
                return score_many(items)

            prm.score_many = counted
        start = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - start
    steps = [entry for entry in trainer.state.log_history if "time/step_s" in entry]
    keys = ["time/step_s", "time/generate_s", "time/reward_s", "time/logprob_s", "time/update_s"]
    per_step = {key: [round(entry.get(key, 0.0), 2) for entry in steps] for key in keys}
    rewards = [round(entry["reward"], 3) for entry in trainer.state.log_history if "reward" in entry]
    summary = {"model": pretrain, "reward_mode": options.reward_mode, "threads": torch.get_num_threads(),
               "completions_per_step": completions, "generate_max_len": options.generate_max_len,
               "wall_s": round(wall, 1), "prm_score_many_calls": prm_calls, "per_step": per_step, "reward": rewards}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
