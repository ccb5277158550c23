"""The PAD rewards, one module for every engine (TRL reward functions, OpenRLHF's `reward_func`).

Modes (`--reward_mode`):
- `VR`: the verifiable reward, `solved - 1` (0 when eval's grader accepts the extracted answer, else -1),
  as in the paper's code; a record without a reference gets 0.
- `PRM`: the PRM's step scores of the completion (steps split by `data.steps.split_steps`, the splitter
  label.py and PRM training use), aggregated by `--prm_aggregate` (`min` by default).
- `PRMVR`: PRM + `verifiable_reward_coef` x VR. Each part has its own baseline (`pad_advantages`): the VR part
  a leave-one-out mean over the group, the PRM part the `--reward_baseline` one (`process_baselines`).
- `ORM`: the PRM's score of the whole answer read as one step.

The PRM is loaded once and scores a whole rollout batch with one `score_many` call.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from data.steps import split_steps

REWARD_MODES = ("VR", "PRM", "PRMVR", "ORM")
PRM_AGGREGATES = ("min", "mean", "last")
REWARD_BASELINES = ("token", "step")
SHORT_ANSWER_F1_THRESHOLD = 0.5  # label.py's rule judge default: the same bar for "solved"


class RewardConfigError(ValueError):
    """A reward setting that cannot work; one line naming the flag."""


# ---- the verifiable part ---------------------------------------------------------------------------

class AnswerGrader:
    """`solved` for (completion, reference) pairs by eval's extractors and graders; repeated pairs graded once."""

    def __init__(self, task_type: str, timeout_s: float = 5.0) -> None:
        if task_type not in ("math", "multiple_choice", "short_answer"):
            raise RewardConfigError(f"unknown task type {task_type!r}")
        self.task_type = task_type
        self.timeout_s = timeout_s
        self._cache: dict[tuple[str, str], bool] = {}

    def solved(self, completion: str, reference: str, choices: Sequence[str] | None = None) -> bool:
        from eval.grading import extract_answer

        answer = extract_answer(completion or "", self.task_type, choices=choices or None)
        if answer is None or not str(answer).strip():
            return False
        key = (str(answer), str(reference))
        if key not in self._cache:
            self._cache[key] = self._grade(str(answer), str(reference))
        return self._cache[key]

    def _grade(self, answer: str, reference: str) -> bool:
        from eval.grading import grade_math, quick_grade_math, token_f1

        if self.task_type == "math":
            # The cheap checks decide almost every pair; math-verify only for the rest.
            quick = quick_grade_math(answer, reference)
            return (quick if quick is not None else grade_math(answer, reference, self.timeout_s)).correct
        if self.task_type == "multiple_choice":
            return answer.strip().upper() == reference.strip().upper()
        return token_f1(answer, reference) >= SHORT_ANSWER_F1_THRESHOLD


def verifiable_rewards(grader: AnswerGrader, completions: Sequence[str], references: Sequence[str | None],
                       choices: Sequence[Sequence[str] | None] | None = None) -> list[float]:
    """`solved - 1` per completion (0 or -1); 0 where there is no reference to check against."""
    choices = choices or [None] * len(completions)
    out = []
    for completion, reference, options in zip(completions, references, choices):
        if reference is None or not str(reference).strip():
            out.append(0.0)
        else:
            out.append(float(grader.solved(completion, str(reference), options)) - 1.0)
    return out


# ---- the process part ------------------------------------------------------------------------------

def aggregate_step_scores(scores: Sequence[float], how: str = "min") -> float:
    """One number for a solution's step scores. NaN scores (steps the PRM could not read) are skipped;
    a solution with no readable step gets 0, the worst score."""
    if how not in PRM_AGGREGATES:
        raise RewardConfigError(f"--prm_aggregate must be one of {', '.join(PRM_AGGREGATES)}, got {how!r}")
    readable = [s for s in scores if not math.isnan(s)]
    if not readable:
        return 0.0
    if how == "min":
        return min(readable)
    if how == "mean":
        return sum(readable) / len(readable)
    return readable[-1]


@dataclass
class ProcessScores:
    """The PRM part of one rollout batch: aggregated score and number of steps per completion."""

    scores: list[float]
    num_steps: list[int]


def process_rewards(prm: Any, queries: Sequence[str], completions: Sequence[str], how: str = "min",
                    whole_answer: bool = False) -> ProcessScores:
    """The PRM's scores of a batch with ONE `score_many` call. `whole_answer` (ORM) reads each completion as
    one step. A completion with no text gets 0 and is not sent to the PRM."""
    steps = [([c.strip()] if c and c.strip() else []) if whole_answer else split_steps(c) for c in completions]
    items = [(q, s) for q, s in zip(queries, steps) if s]
    scored = iter(prm.score_many(items) if items else [])
    scores = [aggregate_step_scores(next(scored), how) if s else 0.0 for s in steps]
    return ProcessScores(scores, [len(s) for s in steps])


# ---- baselines (the paper's leave-one-out, one per part) --------------------------------------------

def _groups(values: Sequence[float], group_size: int) -> list[Sequence[float]]:
    if group_size < 2 or len(values) % group_size:
        raise RewardConfigError(f"{len(values)} completions do not split into groups of {group_size} (need >= 2)")
    return [values[i:i + group_size] for i in range(0, len(values), group_size)]


def leave_one_out_means(values: Sequence[float], group_size: int) -> list[float]:
    """Each completion's baseline: the mean of the other completions of its prompt."""
    out = []
    for group in _groups(values, group_size):
        total = sum(group)
        out.extend((total - v) / (group_size - 1) for v in group)
    return out


def process_baselines(scores: Sequence[float], num_tokens: Sequence[int], num_steps: Sequence[int],
                      group_size: int, kind: str = "token") -> list[float]:
    """Leave-one-out baselines of the PRM part, summed over a completion as the paper's code does per step.

    `step`: the others' mean score per step, times this completion's steps. `token`: the others' score per
    token (their summed scores over their summed lengths), times this completion's tokens. A long answer
    is thus compared with what the others earned for that much text.
    """
    if kind not in REWARD_BASELINES:
        raise RewardConfigError(f"--reward_baseline must be one of {', '.join(REWARD_BASELINES)}, got {kind!r}")
    if kind == "step":
        per_step = [s / max(n, 1) for s, n in zip(scores, num_steps)]
        return [max(n, 1) * b for n, b in zip(num_steps, leave_one_out_means(per_step, group_size))]
    out = []
    for group, lengths in zip(_groups(scores, group_size), _groups(num_tokens, group_size)):
        total, total_len = sum(group), sum(lengths)
        for score, length in zip(group, lengths):
            others_len = total_len - length
            out.append(length * (total - score) / others_len if others_len > 0 else 0.0)
    return out


def pad_advantages(prm_scores: Sequence[float] | None, vr: Sequence[float] | None, num_tokens: Sequence[int],
                   num_steps: Sequence[int], group_size: int, coef: float = 1.0,
                   baseline: str = "token") -> list[float]:
    """Per-completion advantage: (PRM - its baseline) + coef x (VR - VR's leave-one-out mean)."""
    size = len(prm_scores if prm_scores is not None else vr or [])
    out = [0.0] * size
    if prm_scores is not None:
        base = process_baselines(prm_scores, num_tokens, num_steps, group_size, baseline)
        out = [a + s - b for a, s, b in zip(out, prm_scores, base)]
    if vr is not None:
        base = leave_one_out_means(vr, group_size)
        out = [a + coef * (v - b) for a, v, b in zip(out, vr, base)]
    return out


# ---- the reward object both engines use ---------------------------------------------------------------

@dataclass
class RewardSettings:
    """What decides a reward; written next to an OpenRLHF run so its reward workers read the same."""

    reward_mode: str = "PRMVR"
    task_type: str = "math"
    reward_pretrain: str | None = None
    verifiable_reward_coef: float = 1.0
    prm_aggregate: str = "min"
    prm_batch_size: int = 16

    def __post_init__(self) -> None:
        if self.reward_mode not in REWARD_MODES:
            raise RewardConfigError(f"--reward_mode must be one of {', '.join(REWARD_MODES)}, got {self.reward_mode!r}")
        if self.prm_aggregate not in PRM_AGGREGATES:
            raise RewardConfigError(f"--prm_aggregate must be one of {', '.join(PRM_AGGREGATES)}, "
                                    f"got {self.prm_aggregate!r}")
        if self.uses_prm and not self.reward_pretrain:
            raise RewardConfigError(f"--reward_mode {self.reward_mode} needs --reward_pretrain (a PRM checkpoint "
                                    f"from prm/finetune2.py)")

    @property
    def uses_prm(self) -> bool:
        return self.reward_mode in ("PRM", "PRMVR", "ORM")

    @property
    def uses_vr(self) -> bool:
        return self.reward_mode in ("VR", "PRMVR")


@dataclass
class RewardParts:
    """Each part of a batch's reward (None where the mode has no such part) and their weighted sum."""

    process: list[float] | None
    verifiable: list[float] | None
    num_steps: list[int]
    total: list[float]
    extra: dict[str, list[float]] = field(default_factory=dict)


class PadReward:
    """Scores completions for one run: loads the PRM once (lazily), grades answers, logs each part."""

    def __init__(self, settings: RewardSettings, prm: Any = None) -> None:
        self.settings = settings
        self._prm = prm
        self.grader = AnswerGrader(settings.task_type)
        self.last: RewardParts | None = None  # the latest batch, read by the trainer's baseline correction

    @property
    def prm(self) -> Any:
        if self._prm is None:
            import prm as prm_package  # heavy (torch, transformers): only when a PRM is needed

            self._prm = _BatchedPRM(prm_package.load(self.settings.reward_pretrain), self.settings.prm_batch_size)
        return self._prm

    def process_part(self, queries: Sequence[str], completions: Sequence[str]) -> ProcessScores:
        return process_rewards(self.prm, queries, completions, self.settings.prm_aggregate,
                               whole_answer=self.settings.reward_mode == "ORM")

    def verifiable_part(self, completions: Sequence[str], references: Sequence[str | None],
                        choices: Sequence[Sequence[str] | None] | None = None) -> list[float]:
        return verifiable_rewards(self.grader, completions, references, choices)

    def __call__(self, queries: Sequence[str], completions: Sequence[str], references: Sequence[str | None],
                 choices: Sequence[Sequence[str] | None] | None = None) -> RewardParts:
        settings = self.settings
        process = self.process_part(queries, completions) if settings.uses_prm else None
        verifiable = self.verifiable_part(completions, references, choices) if settings.uses_vr else None
        total = [0.0] * len(completions)
        if process is not None:
            total = [t + s for t, s in zip(total, process.scores)]
        if verifiable is not None:
            total = [t + settings.verifiable_reward_coef * v for t, v in zip(total, verifiable)]
        self.last = RewardParts(process.scores if process else None, verifiable,
                                process.num_steps if process else [len(split_steps(c)) for c in completions], total)
        return self.last


class _BatchedPRM:
    """A loaded PRM whose `score_many` uses the run's batch size."""

    def __init__(self, model: Any, batch_size: int) -> None:
        self.model, self.batch_size = model, batch_size

    def score_many(self, items: list[tuple[str, list[str]]]) -> list[list[float]]:
        return self.model.score_many(items, batch_size=self.batch_size)


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a conversational list of messages."""
    if isinstance(completion, str):
        return completion
    return "".join(str(message.get("content") or "") for message in completion)


def trl_reward_functions(reward: PadReward) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """TRL reward functions, one per part so TRL logs each (`rewards/prm/mean`, `rewards/vr/mean`), and their
    weights. The dataset columns `prm_query`, `gt`, `choices` arrive as keyword lists."""
    settings = reward.settings
    functions: list[Callable[..., list[float]]] = []
    weights: list[float] = []
    if settings.uses_prm:
        def process(prompts, completions, completion_ids=None, prm_query=None, **_: Any) -> list[float]:
            texts = [completion_text(c) for c in completions]
            scores = reward.process_part(prm_query or [""] * len(texts), texts)
            num_tokens = [len(ids) for ids in completion_ids] if completion_ids is not None else \
                [len(t) for t in texts]
            reward.last = RewardParts(scores.scores, None, scores.num_steps, scores.scores,
                                      {"num_tokens": [float(n) for n in num_tokens]})
            return scores.scores

        process.__name__ = "orm" if settings.reward_mode == "ORM" else "prm"
        functions.append(process)
        weights.append(1.0)
    if settings.uses_vr:
        def verifiable(prompts, completions, gt=None, choices=None, **_: Any) -> list[float]:
            texts = [completion_text(c) for c in completions]
            return reward.verifiable_part(texts, gt or [None] * len(texts), choices)

        verifiable.__name__ = "vr"
        functions.append(verifiable)
        weights.append(settings.verifiable_reward_coef if settings.reward_mode == "PRMVR" else 1.0)
    return functions, weights


__all__ = [
    "PRM_AGGREGATES", "REWARD_BASELINES", "REWARD_MODES", "AnswerGrader", "PadReward", "ProcessScores",
    "RewardConfigError", "RewardParts", "RewardSettings", "aggregate_step_scores", "completion_text",
    "leave_one_out_means", "pad_advantages", "process_baselines", "process_rewards", "trl_reward_functions",
    "verifiable_rewards",
]
