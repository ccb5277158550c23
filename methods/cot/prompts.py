"""Prompts of the single-agent chain-of-thought baseline.

The user message itself is `data.task_prompts.task_prompt`, shared with every method, so the
baseline and the multi-agent methods ask the same question in the same words.
"""
from __future__ import annotations

# Named so a YAML config picks one by name and the wording stays in code; null in YAML sends none.
SYSTEM_PROMPTS: dict[str, str] = {
    "helpful_assistant": "You are a helpful assistant.",
    "careful_solver": "You are a careful problem solver. Work through the problem step by step, "
                      "check each step, and only then state your final answer.",
}
