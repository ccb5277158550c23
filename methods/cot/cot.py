"""Chain-of-thought: one agent, one call, answer extracted from its response."""
from __future__ import annotations

from dataclasses import dataclass

from data.schema import Sample
from data.task_prompts import task_prompt
from methods.base import ConfigError, Method, MethodConfig, Solution
from methods.cot.prompts import SYSTEM_PROMPTS


@dataclass
class CoTConfig(MethodConfig):
    system_prompt: str | None = None  # a name in methods/cot/prompts.py SYSTEM_PROMPTS; None sends no system message
    temperature: float | None = None  # None: the engine's --model_temperature

    def __post_init__(self) -> None:
        if self.system_prompt is not None and self.system_prompt not in SYSTEM_PROMPTS:
            raise ConfigError(f"key system_prompt: unknown prompt {self.system_prompt!r}; "
                              f"choose one of {', '.join(SYSTEM_PROMPTS)} or null")


class CoT(Method):
    """The single-agent baseline every multi-agent method is compared against."""

    name = "cot"
    Config = CoTConfig
    config: CoTConfig

    async def solve(self, sample: Sample) -> Solution:
        messages = []
        if self.config.system_prompt is not None:
            messages.append({"role": "system", "content": SYSTEM_PROMPTS[self.config.system_prompt]})
        messages.append({"role": "user", "content": task_prompt(sample, self.task_type)})
        traj = self.trajectory(sample)
        turn = await traj.chat(messages, agent=0, role="solver", round=0, temperature=self.config.temperature)
        return Solution(response=turn.text, answer=turn.answer, trajectory=traj.turns)
