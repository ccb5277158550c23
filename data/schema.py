"""The canonical sample every loader produces and every method consumes."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# How a dataset's answers are written and graded; methods pick prompts and answer extraction by it.
TASK_TYPES = ("math", "multiple_choice", "short_answer")


@dataclass
class Sample:
    id: str
    query: str
    gt: str
    source: str
    choices: list[str] | None = None
    context: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The record form: optional fields only when set, as design.md's canonical sample."""
        out = {k: v for k, v in asdict(self).items() if v not in (None, {}) or k in ("id", "query", "gt", "source")}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sample:
        return cls(
            id=str(d["id"]), query=d["query"], gt=str(d.get("gt", "")), source=d.get("source", ""),
            choices=d.get("choices"), context=d.get("context"), meta=dict(d.get("meta") or {}),
        )
