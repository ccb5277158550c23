"""Which turns of an inference record are solutions to label, and which of them label.py keeps.

A solution is a turn that answers the question. Each method says which of its roles only talk about
other turns (`Method.non_solution_roles`: critic, verifier, ranker, evaluator, role_assigner by default);
every other turn is a solution. The record's `method` picks the class through the registry.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from methods import REGISTRY, get_method_class
from methods.base import Method


@cache
def non_solution_roles(method_name: str) -> frozenset[str]:
    """The roles of `method_name`'s turns that are never solutions (the base set for an unregistered method)."""
    if method_name in REGISTRY:
        return get_method_class(method_name).non_solution_roles
    return Method.non_solution_roles


def is_solution_turn(turn: dict[str, Any], method_name: str) -> bool:
    return turn.get("role") not in non_solution_roles(method_name)


@dataclass
class Selection:
    """The solution turns chosen from one record, in call order, and how many were left out as truncated."""

    turns: list[dict[str, Any]] = field(default_factory=list)
    truncated_dropped: int = 0


def select_solutions(record: dict[str, Any], all_rounds: bool = False, keep_truncated: bool = False) -> Selection:
    """The record's solution turns: each agent's last one (every one with `all_rounds`).

    An agent is an (agent, role) pair, so an aggregator that shares an agent number stays apart. A turn cut
    off at the token limit (`finish_reason == "length"`) is left out unless `keep_truncated`; an agent whose
    last solution was cut off gives none (an earlier round's answer is not its final one).
    """
    method = record.get("method", "")
    turns = [turn for turn in record.get("trajectory") or [] if is_solution_turn(turn, method)]
    if not all_rounds:
        last: dict[tuple[Any, Any], int] = {}
        for index, turn in enumerate(turns):
            last[(turn.get("agent"), turn.get("role"))] = index
        keep = set(last.values())
        turns = [turn for index, turn in enumerate(turns) if index in keep]
    selection = Selection()
    for turn in turns:
        if turn.get("finish_reason") == "length" and not keep_truncated:
            selection.truncated_dropped += 1
        else:
            selection.turns.append(turn)
    return selection


__all__ = ["Selection", "is_solution_turn", "non_solution_roles", "select_solutions"]
