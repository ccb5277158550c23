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

    @property
    def system_message(self) -> str | None:
        return None if self.config.system_prompt is None else SYSTEM_PROMPTS[self.config.system_prompt]

    async def solve(self, sample: Sample) -> Solution:
        messages = cot_messages(sample, self.task_type, self.system_message)
        traj = self.trajectory(sample)
        turn = await traj.chat(messages, agent=0, role="solver", round=0, temperature=self.config.temperature)
        return Solution(response=turn.text, answer=turn.answer, trajectory=traj.turns)


def cot_messages(sample: Sample, task_type: str, system_message: str | None) -> list[dict[str, str]]:
    """What `cot` sends for a sample; distillation builds its students' prompts with it, so a student trains
    on the prompt it is evaluated with."""
    messages = [] if system_message is None else [{"role": "system", "content": system_message}]
    messages.append({"role": "user", "content": task_prompt(sample, task_type)})
    return messages


def cot_system_message(config_name: str = "config_main") -> str | None:
    """The system message of the cot config `inference.py --method_config_name` would load (ConfigError if bad)."""
    config = CoT.load_config(config_name)
    return None if config.system_prompt is None else SYSTEM_PROMPTS[config.system_prompt]
