"""Self-correction examples from debate traces: one agent's wrong attempt, a check, then its right answer.

Only the same agent (one method's agent number and role) counts, only from a wrong round to a later right
one, and only when label.py kept every round (`--all_rounds`). The wrong attempt stays as the agent wrote
it; what changed its mind (its peers' answers) is not shown, so the rendering says only that it checked again.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection

from distill.labeled import LabeledQuestion, LabeledSolution

TRANSITION = "Let me check this again."

# Why a question gave no correction example (counted per question in the stats).
NO_ROUNDS_TO_COMPARE = "no_rounds_to_compare"
NO_WRONG_TO_RIGHT = "no_wrong_to_right"


def _chains(question: LabeledQuestion) -> list[list[LabeledSolution]]:
    by_chain: dict[tuple[str, int, str], list[LabeledSolution]] = defaultdict(list)
    for solution in question.solutions:
        by_chain[solution.chain].append(solution)
    return [sorted(chain, key=lambda s: (s.round, s.position)) for chain in by_chain.values()]


def _usable_wrong(solution: LabeledSolution) -> bool:
    return solution.is_correct is False and not solution.truncated and bool(solution.text.strip())


def find_corrections(question: LabeledQuestion, right_positions: Collection[int]
                     ) -> tuple[list[tuple[LabeledSolution, LabeledSolution]], str | None]:
    """(wrong, right) pairs, at most one per agent, and why there are none when there are none.

    `right_positions` are the solutions that may be targets. Each agent's first right round after a wrong one
    is paired with the latest wrong round before it: the attempt it actually revised.
    """
    chains = [chain for chain in _chains(question) if len({s.round for s in chain}) >= 2]
    if not chains:
        return [], NO_ROUNDS_TO_COMPARE
    pairs = []
    for chain in chains:
        for index, right in enumerate(chain):
            if right.position not in right_positions:
                continue
            wrong = [s for s in chain[:index] if s.round < right.round and _usable_wrong(s)]
            if wrong:
                pairs.append((wrong[-1], right))
                break
    return pairs, None if pairs else NO_WRONG_TO_RIGHT


def render_correction(wrong: LabeledSolution, right: LabeledSolution) -> str:
    """The pair as one agent's reasoning: the first attempt, the transition, the revised solution."""
    return f"{wrong.text.strip()}\n\n{TRANSITION}\n\n{right.text.strip()}"


__all__ = ["NO_ROUNDS_TO_COMPARE", "NO_WRONG_TO_RIGHT", "TRANSITION", "find_corrections", "render_correction"]
