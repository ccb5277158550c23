"""MAV (multi-agent verification): candidate solutions judged by aspect verifiers, best-approved answer wins.

`n_solutions` candidates are sampled. `n_max_verifiers` aspect verifiers are drawn from the config's
pool (seeded by the config seed, the run seed and the sample id) and each judges each candidate in two
turns: an analysis, then `FINAL VERIFICATION ANSWER: True|False`. A candidate's score is the fraction of
verifiers that approve it; the answer is the best candidate's, and among tied candidates the majority of
their extracted answers (free-form short answers: the tied answer with the highest mean token F1 to all
candidates' answers).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from data.schema import Sample
from data.task_prompts import format_question, task_prompt
from methods.base import ConfigError, Method, MethodConfig, Solution, Turn
from methods.consensus import consensus_vote, is_free_form, medoid_index
from methods.mav.prompts import VERDICT_PROMPT, VERDICT_TAG, VERIFIERS, analysis_prompt

_VERDICT = re.compile(rf"{VERDICT_TAG}\W*(true|false)\b", re.I)


@dataclass
class MAVConfig(MethodConfig):
    n_solutions: int = 4  # candidate solutions sampled per question
    n_max_verifiers: int = 4  # verifiers drawn from `verifiers` per question (all of them if fewer)
    verifier_temperature: float | None = 0.0  # 0 is greedy; null: the engine's --model_temperature
    seed: int = 0  # draws the verifiers (with the run seed and the sample id)
    verifiers: list[str] = field(default_factory=lambda: list(VERIFIERS))  # the pool, names from prompts.py

    def __post_init__(self) -> None:
        for key in ("n_solutions", "n_max_verifiers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"key {key} must be at least 1, got {getattr(self, key)}")
        if self.verifier_temperature is not None and self.verifier_temperature < 0:
            raise ConfigError(f"key verifier_temperature must be >= 0, got {self.verifier_temperature}")
        unknown = [name for name in self.verifiers if name not in VERIFIERS]
        if unknown or not self.verifiers:
            raise ConfigError(f"key verifiers has unknown or no names ({', '.join(map(str, unknown))}); "
                              f"known: {', '.join(VERIFIERS)}")
        if len(set(self.verifiers)) != len(self.verifiers):
            raise ConfigError("key verifiers lists a verifier twice")


def parse_verdict(text: str) -> bool | None:
    """The last `FINAL VERIFICATION ANSWER: True|False` in a reply; None when there is none."""
    found = _VERDICT.findall(text)
    return found[-1].lower() == "true" if found else None


class MAV(Method):
    """Best-of-n with aspect verifiers: the solution most verifiers approve gives the answer."""

    name = "mav"
    Config = MAVConfig
    config: MAVConfig

    def draw_verifiers(self, sample: Sample) -> list[str]:
        """The verifiers for this sample, in pool order: same seeds and sample, same verifiers."""
        pool = self.config.verifiers
        rng = random.Random(f"mav:{self.config.seed}:{self.seed}:{sample.id}")
        drawn = set(rng.sample(pool, min(self.config.n_max_verifiers, len(pool))))
        return [name for name in pool if name in drawn]

    async def solve(self, sample: Sample) -> Solution:
        cfg = self.config
        traj = self.trajectory(sample)
        prompt = [{"role": "user", "content": task_prompt(sample, self.task_type)}]
        # Identical prompts: distinct seeds, or a seeded backend would return the same candidate n times.
        solutions = await traj.chat_many([prompt] * cfg.n_solutions, agents=range(cfg.n_solutions),
                                         role="solver", round=0,
                                         seeds=[self.seed + i for i in range(cfg.n_solutions)])

        names = self.draw_verifiers(sample)
        pairs = [(v, s) for v in range(len(names)) for s in range(cfg.n_solutions)]
        question = format_question(sample)
        first = [[{"role": "system", "content": VERIFIERS[names[v]].system},
                  {"role": "user", "content": analysis_prompt(question, solutions[s].text, VERIFIERS[names[v]])}]
                 for v, s in pairs]
        analyses = await traj.chat_many(first, agents=[cfg.n_solutions + v for v, _ in pairs], role="verifier",
                                        round=1, extract=False, temperature=cfg.verifier_temperature)
        second = [messages + [{"role": "assistant", "content": analysis.text},
                              {"role": "user", "content": VERDICT_PROMPT}]
                  for messages, analysis in zip(first, analyses)]
        verdicts = await traj.chat_many(second, agents=[cfg.n_solutions + v for v, _ in pairs], role="verifier",
                                        round=2, extract=False, temperature=cfg.verifier_temperature)

        approvals = [0] * cfg.n_solutions
        unparsed = 0
        for (v, s), analysis, verdict_turn in zip(pairs, analyses, verdicts):
            verdict = parse_verdict(verdict_turn.text)
            # An unreadable verdict is no approval: a solution must earn its score.
            approvals[s] += verdict is True
            unparsed += verdict is None
            analysis.extra.update(verifier=names[v], solution=s)
            verdict_turn.extra.update(verifier=names[v], solution=s, verdict=verdict,
                                      verdict_parsed=verdict is not None)
        scores = [count / len(names) for count in approvals]
        chosen, answer, tie_break = self._select(solutions, scores)
        info = {"verifiers": names, "approvals": approvals, "scores": scores,
                "answers": [t.answer for t in solutions], "selected_solution": chosen,
                "tie_break_by_majority": tie_break, "unparsed_verdicts": unparsed}
        return Solution(response=solutions[chosen].text, answer=answer, trajectory=traj.turns, info=info)

    def _select(self, solutions: list[Turn], scores: list[float]) -> tuple[int, str | None, bool]:
        """(chosen solution, its answer, whether a tie was broken by majority)."""
        best = max(scores)
        tied = [i for i, score in enumerate(scores) if score == best]
        if len(tied) == 1:
            return tied[0], solutions[tied[0]].answer, False
        answers = [solutions[i].answer for i in tied]
        if is_free_form(self.task_type):
            # Free text never repeats word for word: the tied answer closest to all candidates' answers.
            position = medoid_index(answers, pool=[t.answer for t in solutions])
        else:
            position = consensus_vote(answers, self.task_type).index
        chosen = tied[position] if position is not None else tied[0]
        return chosen, solutions[chosen].answer, True
