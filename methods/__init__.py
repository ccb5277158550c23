"""Explicit method registry: exact names only, classes imported on first use."""
from __future__ import annotations

import importlib

from methods.base import ConfigError, Method, MethodConfig, Solution, Trajectory, Turn

# name -> "module:Class". Add a method here; nothing is discovered by substring or path tricks.
REGISTRY: dict[str, str] = {
    "cot": "methods.cot.cot:CoT",
    "self_consistency": "methods.self_consistency.self_consistency:SelfConsistency",
    "llm_debate": "methods.llm_debate.llm_debate:LLMDebate",
    "dylan": "methods.dylan.dylan:DyLAN",
    "agentverse": "methods.agentverse.agentverse:AgentVerse",
    "mav": "methods.mav.mav:MAV",
}


class UnknownMethodError(KeyError):
    def __str__(self) -> str:
        return f"unknown --method_name {self.args[0]!r}; available: {', '.join(sorted(REGISTRY))}"


def get_method_class(name: str) -> type[Method]:
    if name not in REGISTRY:
        raise UnknownMethodError(name)
    module_name, class_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


__all__ = ["REGISTRY", "ConfigError", "Method", "MethodConfig", "Solution", "Trajectory", "Turn",
           "UnknownMethodError", "get_method_class"]
