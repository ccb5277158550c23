"""The method contract: a method turns one Sample into a Solution, calling the engine for every agent turn."""
from __future__ import annotations

import asyncio
import contextvars
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from data.schema import Sample
from engine.base import ChatResult, Engine, Messages
from eval.grading import answer_key, extract_answer

METHODS_DIR = Path(__file__).resolve().parent


class ConfigError(ValueError):
    """A method config that cannot be used as written (unknown key, wrong type, missing file)."""


@dataclass
class Turn:
    """One LLM call in a trajectory; the field names are fixed by design.md (label.py and SFT read them)."""

    agent: int
    role: str
    round: int
    messages: list[dict[str, str]]
    text: str
    answer: str | None
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None  # "stop" or "length" (cut off by max_tokens); None until the call returns
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        extra = out.pop("extra")
        out.update(extra)  # method-specific fields (scores, verdicts) sit beside the fixed ones
        return out


@dataclass
class Solution:
    response: str
    answer: str | None
    trajectory: list[Turn]
    info: dict[str, Any] = field(default_factory=dict)


def final_solution(traj: Trajectory, response: str, answer: str | None, info: dict[str, Any],
                   aggregator: Turn | None = None, vote_source: str = "vote") -> Solution:
    """The voted solution, replaced by an aggregator turn's when one ran and stated an answer.

    An aggregator that states no answer, or one without a word or digit in it (a small model's "Answer: :"),
    does not erase the vote; `info["answer_source"]` says which won: "aggregator", or `vote_source` ("vote"
    for a majority vote, "medoid" for the free-form consensus).
    """
    info["answer_source"] = vote_source
    if aggregator is not None and answer_key(aggregator.answer, traj.task_type):
        response, answer = aggregator.text, aggregator.answer
        info["answer_source"] = "aggregator"
    return Solution(response=response, answer=answer, trajectory=traj.turns, info=info)


class TurnLog:
    """Every turn of every Trajectory made in one scope (one sample's solve), in call order.

    When solve raises (one request refused), the driver still has the turns that got a result.
    """

    def __init__(self) -> None:
        self._turns: list[Turn] = []
        self._answered: set[int] = set()

    def reserve(self, turn: Turn) -> None:
        self._turns.append(turn)

    def answered(self, turn: Turn) -> None:
        self._answered.add(id(turn))

    def completed_turns(self) -> list[Turn]:
        """The turns that got a result, in call order (a call still in flight or failed is left out)."""
        return [t for t in self._turns if id(t) in self._answered]


# Like engine.base's usage meter: the driver opens a log per sample task, and every Trajectory that
# the sample's solve makes (in that task or its subtasks) writes to it, so methods pass nothing extra.
_current_turn_log: contextvars.ContextVar[TurnLog | None] = contextvars.ContextVar("agentark_turns", default=None)


def track_turns() -> TurnLog:
    """Start a fresh turn log for the current task; Trajectories made later in it record into it."""
    log = TurnLog()
    _current_turn_log.set(log)
    return log


class Trajectory:
    """Records every engine call of one sample, in call order, with its extracted answer.

    A method makes one per `solve` call (the Method object is shared by concurrent samples).
    """

    def __init__(self, llm: Engine, task_type: str, choices: Sequence[str] | None = None):
        self.llm = llm
        self.task_type = task_type
        self.choices = list(choices) if choices else None
        self.turns: list[Turn] = []
        self._log = _current_turn_log.get()

    def extract(self, text: str) -> str | None:
        """The answer stated in `text`, read as this sample's task type (and options, if any) demands."""
        return extract_answer(text, self.task_type, choices=self.choices)

    def _reserve(self, agent: int, role: str, round: int, messages: Messages) -> Turn:
        # The slot is appended when the call is issued, so turns stay in call order even when
        # concurrent calls finish out of order.
        turn = Turn(agent=agent, role=role, round=round, messages=[dict(m) for m in messages],
                    text="", answer=None, prompt_tokens=0, completion_tokens=0)
        self.turns.append(turn)
        if self._log is not None:
            self._log.reserve(turn)
        return turn

    def _fill(self, turn: Turn, result: ChatResult, extract: bool) -> Turn:
        turn.text = result.text
        turn.prompt_tokens = result.prompt_tokens
        turn.completion_tokens = result.completion_tokens
        turn.finish_reason = result.finish_reasons[0] if result.finish_reasons else None
        if extract:
            turn.answer = self.extract(result.text)
        if len(result.texts) > 1:
            turn.extra["texts"] = list(result.texts)
            turn.extra["finish_reasons"] = list(result.finish_reasons)
        if self._log is not None:
            self._log.answered(turn)
        return turn

    async def chat(self, messages: Messages, *, agent: int = 0, role: str = "agent", round: int = 0,
                   extract: bool = True, **sampling: Any) -> Turn:
        """Call the engine once and record the turn; `extract=False` for turns that give no answer."""
        turn = self._reserve(agent, role, round, messages)
        return self._fill(turn, await self.llm.chat(messages, **sampling), extract)

    async def chat_many(self, conversations: Sequence[Messages], *, agents: Sequence[int] | None = None,
                        role: str | Sequence[str] = "agent", round: int = 0, extract: bool = True,
                        seeds: Sequence[int | None] | None = None, **sampling: Any) -> list[Turn]:
        """Parallel agents: one call per conversation, all in flight at once.

        `seeds` gives each call its own sampling seed: identical prompts sent with one seed come back
        identical from seeded backends (vLLM, OpenAI), which would make parallel samples copies.
        """
        agents = list(agents) if agents is not None else list(range(len(conversations)))
        roles = [role] * len(conversations) if isinstance(role, str) else list(role)
        shared_seed = sampling.pop("seed", None)
        seeds = list(seeds) if seeds is not None else [shared_seed] * len(conversations)
        turns = [self._reserve(a, r, round, m) for a, r, m in zip(agents, roles, conversations)]

        async def call(turn: Turn, messages: Messages, seed: int | None) -> Turn:
            # Filled as each result arrives: if a sibling call fails, the finished ones still count.
            return self._fill(turn, await self.llm.chat(messages, seed=seed, **sampling), extract)

        return list(await asyncio.gather(*(call(t, m, s) for t, m, s in zip(turns, conversations, seeds))))


@dataclass
class MethodConfig:
    """Base for a method's config dataclass: every YAML key must be a field, every field has a default."""

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "<config>") -> MethodConfig:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; "
                              f"{cls.__name__} accepts: {', '.join(known)}")
        checked = {}
        for key, value in values.items():
            checked[key] = _coerce(value, known[key], source)
        try:
            return cls(**checked)
        except ConfigError as exc:  # range checks in __post_init__ know the key, not the file
            message = str(exc)
            raise ConfigError(message if message.startswith(source) else f"{source}: {message}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, f: dataclasses.Field, source: str) -> Any:
    expected = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    # YAML gives ints for floats written as "1"; accept those, reject everything else that mismatches.
    base = expected.split("|")[0].strip()
    optional = "None" in expected
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: key {f.name} must be {expected}, got null")
    checks = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "bool": lambda v: isinstance(v, bool),
              "str": lambda v: isinstance(v, str)}
    if base in checks:
        if not checks[base](value):
            raise ConfigError(f"{source}: key {f.name} must be {base}, got {value!r}")
        return float(value) if base == "float" else value
    if base.startswith("list") and not isinstance(value, list):
        raise ConfigError(f"{source}: key {f.name} must be a list, got {value!r}")
    return value


class Method:
    """Base class of every multi-agent method.

    Subclasses set `name` and `Config`, and implement `async def solve(sample) -> Solution`,
    calling the engine only through a `Trajectory` (so every turn is recorded) and never looping
    over samples or batching by hand: the driver runs many samples' `solve` concurrently.
    """

    name: ClassVar[str] = "base"
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    # Roles of turns about other turns (reviews, votes, rankings, recruiting): label.py never makes them
    # solutions. Every other turn answers the question (solver, debater, aggregator; role names are fixed,
    # a persona such as DyLAN's goes in the turn's `persona` field). A method with another reviewing role
    # extends the set in its class:
    # `non_solution_roles = Method.non_solution_roles | {"judge"}`.
    non_solution_roles: ClassVar[frozenset[str]] = frozenset(
        {"critic", "verifier", "ranker", "evaluator", "role_assigner"})

    def __init__(self, llm: Engine, config: MethodConfig | None = None, task_type: str = "math", seed: int = 0):
        self.llm = llm
        self.config = config if config is not None else self.Config()
        self.task_type = task_type
        self.seed = seed

    def trajectory(self, sample: Sample | None = None) -> Trajectory:
        """A recorder for one sample's calls; given the sample, answers are read against its options."""
        return Trajectory(self.llm, self.task_type, choices=sample.choices if sample else None)

    async def solve(self, sample: Sample) -> Solution:  # pragma: no cover - contract
        raise NotImplementedError

    @classmethod
    def config_path(cls, config_name: str) -> Path:
        """A config name resolves under `methods/<name>/configs/`; a path to a .yaml file is used as is."""
        if config_name.endswith((".yaml", ".yml")):
            return Path(config_name)
        return METHODS_DIR / cls.name / "configs" / f"{config_name}.yaml"

    @classmethod
    def load_config(cls, config_name: str = "config_main") -> MethodConfig:
        """Read `methods/<name>/configs/<config_name>.yaml` (or a .yaml path) strictly: unknown keys are errors."""
        path = cls.config_path(config_name)
        if not path.is_file():
            available = sorted(p.stem for p in path.parent.glob("*.yaml"))
            raise ConfigError(f"{path}: no such method config; available for {cls.name}: "
                              f"{', '.join(available) or 'none'}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys")
        return cls.Config.from_dict(values, source=str(path))
