"""OpenRLHF's custom reward hook for PAD: `--reward.remote_url <this file>` makes OpenRLHF call `reward_func`.

The settings (mode, PRM path, coefficient, task type) come from the JSON file named by the environment
variable AGENTARK_PAD_REWARD_CONFIG, which `python -m distill.grpo --engine openrlhf` writes and sets. Each
label is the JSON that command wrote for its prompt: the reference, the PRM's question text, the options.
The reward itself is `distill.rewards`, the same code the TRL engine runs.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

# OpenRLHF imports this file by path on its reward workers, where the repository may not be on sys.path.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from distill.rewards import PadReward, RewardConfigError, RewardSettings  # noqa: E402

CONFIG_ENV = "AGENTARK_PAD_REWARD_CONFIG"
_reward: PadReward | None = None


def configure(reward: PadReward | None) -> None:
    """Use `reward` instead of reading the config file (tests; None re-reads it on the next call)."""
    global _reward
    _reward = reward


def _current() -> PadReward:
    global _reward
    if _reward is None:
        path = os.environ.get(CONFIG_ENV)
        if not path:
            raise RewardConfigError(f"{CONFIG_ENV} is not set: start training with python -m distill.grpo "
                                    f"--engine openrlhf, which writes the reward settings and sets it")
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise RewardConfigError(f"{path}: cannot read the PAD reward settings ({error})") from None
        _reward = PadReward(RewardSettings(**values))
    return _reward


def _label(label: Any) -> dict[str, Any]:
    if isinstance(label, str) and label.lstrip().startswith("{"):
        try:
            return json.loads(label)
        except json.JSONDecodeError:
            pass
    return {"gt": label}


def reward_func(queries: list[str], prompts: list[str], labels: list[Any], **kwargs: Any) -> dict[str, Any]:
    """Rewards of a batch: prompt + completion texts in `queries`, prompt texts in `prompts`."""
    import torch

    reward = _current()
    completions = [query[len(prompt):] if query.startswith(prompt) else query
                   for query, prompt in zip(queries, prompts)]
    parsed = [_label(label) for label in labels]
    prm_queries = [item.get("prm_query") or prompt for item, prompt in zip(parsed, prompts)]
    parts = reward(prm_queries, completions, [item.get("gt") for item in parsed],
                   [item.get("choices") for item in parsed])
    rewards = torch.tensor(parts.total, dtype=torch.float32)
    extra: dict[str, torch.Tensor] = {}
    if parts.process is not None:
        extra["pad/prm"] = torch.tensor(parts.process, dtype=torch.float32)
    if parts.verifiable is not None:
        extra["pad/vr"] = torch.tensor(parts.verifiable, dtype=torch.float32)
    # OpenRLHF's dynamic filtering reads `scores` in [0, 1]: whether the answer is right, else the PRM's score.
    scores = extra["pad/vr"] + 1.0 if "pad/vr" in extra else extra.get("pad/prm", rewards)
    return {"rewards": rewards, "scores": scores, "extra_logs": extra}


__all__ = ["CONFIG_ENV", "configure", "reward_func"]
