"""DyLAN: a dynamic network of agents over rounds, listwise pruning, early consensus, agent importance scores.

Round 0: every agent answers alone. Each later round: every active agent sees the previous round's active
solutions (in a seeded random order, against position bias), updates its own, and rates each one 1-5.
From the third round on (activation `listwise`), when more than `LISTWISE_MIN_ACTIVE` agents are active, a
ranker turn keeps only the best `LISTWISE_TOP_K` previous solutions, and only their agents stay active (as in
DyLAN's code, which ranks only networks of more than three agents). After every round the run stops early
when more than 2/3 of the active agents agree: the same answer, or for free-form short answers a token F1
of at least `methods.consensus.SIMILARITY_THRESHOLD` with the round's medoid answer. Importance flows
backwards as in DyLAN: the last round's agents whose answer matches the final answer share 1 (the others
get 0), and every agent passes its importance to the solutions it saw in proportion to the ratings it gave.

Every agent turn has the role `debater` (the fixed role names of design.md); the persona from the config's
`roles` list, which picks the system prompt, is kept in the turn's `persona` field.
"""
from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from data.schema import Sample
from data.task_prompts import format_question, task_prompt
from methods.base import ConfigError, Method, MethodConfig, Solution, Trajectory, Turn
from methods.consensus import Vote, agreement_count, consensus_vote, same_answer
from methods.dylan.prompts import ROLE_SYSTEM_PROMPTS, ranker_prompt, update_prompt

LISTWISE_TOP_K = 2
LISTWISE_MIN_ACTIVE = 3  # the ranker runs only when more agents than this are active
AGENT_ROLE = "debater"  # the trajectory role of every DyLAN agent turn; the persona goes to `persona`
ACTIVATIONS = ("listwise", "none")
NEUTRAL_SCORE = 3  # used for every peer when an agent's ratings cannot be read: equal weights

_SCORES_LINE = re.compile(r"^[\W_]*scores?[\W_]*:.*$", re.I | re.M)
_BRACKETS = re.compile(r"\[([^\[\]]*)\]")


@dataclass
class DyLANConfig(MethodConfig):
    num_agents: int = 4
    num_rounds: int = 3
    activation: str = "listwise"  # listwise: from the third round a ranker keeps the top 2 (of > 3); none: all
    # One persona per agent: it picks the agent's system prompt and is recorded as the turn's `persona`.
    roles: list[str] = field(default_factory=lambda: ["Assistant"] * 4)
    random_seed: int = 0  # orders the solutions each agent is shown

    def __post_init__(self) -> None:
        if self.num_agents < 1:
            raise ConfigError(f"key num_agents must be at least 1, got {self.num_agents}")
        if self.num_rounds < 1:
            raise ConfigError(f"key num_rounds must be at least 1, got {self.num_rounds}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"key activation must be one of {', '.join(ACTIVATIONS)}, "
                              f"got {self.activation!r}")
        if len(self.roles) != self.num_agents:
            raise ConfigError(f"key roles lists {len(self.roles)} roles but num_agents is "
                              f"{self.num_agents}")
        unknown = [role for role in self.roles if role not in ROLE_SYSTEM_PROMPTS]
        if unknown:
            raise ConfigError(f"key roles has unknown role(s) {', '.join(map(str, unknown))}; "
                              f"known: {', '.join(ROLE_SYSTEM_PROMPTS)}")


def parse_scores(text: str, count: int) -> list[int] | None:
    """The agent's 1-5 ratings of the `count` solutions it was shown: the last bracketed list that fits."""
    lines = _SCORES_LINE.findall(text)
    candidates = [inner for line in lines for inner in _BRACKETS.findall(line)] or _BRACKETS.findall(text)
    for inner in reversed(candidates):
        values = re.findall(r"-?\d+", inner)
        if len(values) == count and all(1 <= int(v) <= 5 for v in values):
            return [int(v) for v in values]
    return None


def parse_ranking(text: str, count: int, top_k: int) -> list[int] | None:
    """The ranker's `top_k` picks as 0-based positions, best first; None when no list names enough of them."""
    for inner in reversed(_BRACKETS.findall(text)):
        picked: list[int] = []
        for value in re.findall(r"\d+", inner):
            position = int(value) - 1
            if 0 <= position < count and position not in picked:
                picked.append(position)
        if len(picked) >= top_k:
            return picked[:top_k]
    return None


def strip_scores(text: str) -> str:
    """The solution without its ratings line: peers see solutions, and answers are read from them."""
    return _SCORES_LINE.sub("", text).strip()


def propagate_importance(rounds: list[list[Turn]], num_agents: int, final_answer: str | None = None,
                         task_type: str = "math") -> list[float]:
    """DyLAN's agent importance: backward pass over the rounds' turns, summed per agent.

    The last round's turns whose answer matches `final_answer` (`methods.consensus.same_answer`) share
    importance 1 equally and the others get 0; when none matches (no final answer at all), every last-round
    turn shares it. A turn gives each turn it was shown (`extra["shown_agents"]`, rated in
    `extra["scores"]`) its importance times that rating's share of its ratings. Sets `extra["importance"]`
    on every turn and returns each agent's total.
    """
    last = rounds[-1]
    credited = [turn for turn in last if same_answer(turn.answer, final_answer, task_type)] or last
    importance: dict[int, float] = {turn.agent: 0.0 for turn in last}
    for turn in credited:
        importance[turn.agent] = 1.0 / len(credited)
    for turn in last:
        turn.extra["importance"] = importance[turn.agent]
    for later, earlier in zip(reversed(rounds), reversed(rounds[:-1])):
        passed = {turn.agent: 0.0 for turn in earlier}
        for turn in later:
            scores = turn.extra["scores"]
            total = sum(scores)
            for agent, score in zip(turn.extra["shown_agents"], scores):
                passed[agent] += importance[turn.agent] * score / total
        for turn in earlier:
            turn.extra["importance"] = passed[turn.agent]
        importance = passed
    totals = [0.0] * num_agents
    for turns in rounds:
        for turn in turns:
            totals[turn.agent] += turn.extra["importance"]
    return totals


class DyLAN(Method):
    """Agents update over rounds on each other's solutions; a listwise ranker prunes, consensus stops early."""

    name = "dylan"
    Config = DyLANConfig
    config: DyLANConfig

    async def solve(self, sample: Sample) -> Solution:
        cfg = self.config
        rng = random.Random(f"dylan:{cfg.random_seed}:{self.seed}:{sample.id}")
        question = task_prompt(sample, self.task_type)
        traj = self.trajectory(sample)
        rounds: list[list[Turn]] = []
        rankings: list[dict] = []
        consensus: Vote | None = None
        early_stop_round: int | None = None
        previous: list[Turn] = []
        for round_index in range(cfg.num_rounds):
            if round_index >= 2 and cfg.activation == "listwise" and len(previous) > LISTWISE_MIN_ACTIVE:
                previous = await self._rank(traj, sample, previous, round_index, rng, rankings)
            active = [turn.agent for turn in previous] if previous else list(range(cfg.num_agents))
            conversations, shown = [], []
            for agent in active:
                order = rng.sample(previous, len(previous))
                shown.append([turn.agent for turn in order])
                user = update_prompt(question, [strip_scores(t.text) for t in order]) if order else question
                conversations.append([{"role": "system", "content": ROLE_SYSTEM_PROMPTS[cfg.roles[agent]]},
                                      {"role": "user", "content": user}])
            # Agents with the same role see the same prompt in round 0: distinct seeds keep them independent.
            turns = await traj.chat_many(conversations, agents=active, role=AGENT_ROLE,
                                         round=round_index, extract=False,
                                         seeds=[self.seed + round_index * cfg.num_agents + a for a in active])
            for turn, shown_agents in zip(turns, shown):
                turn.extra["persona"] = cfg.roles[turn.agent]
                turn.answer = traj.extract(strip_scores(turn.text))
                if shown_agents:
                    scores = parse_scores(turn.text, len(shown_agents))
                    turn.extra.update(shown_agents=shown_agents, scores_parsed=scores is not None,
                                      scores=scores or [NEUTRAL_SCORE] * len(shown_agents))
            rounds.append(turns)
            previous = turns
            consensus = self._consensus([t.answer for t in turns])
            if consensus is not None:
                early_stop_round = round_index
                break

        vote = consensus if consensus is not None else consensus_vote([t.answer for t in rounds[-1]],
                                                                       self.task_type)
        answer = vote.answer
        importance = propagate_importance(rounds, cfg.num_agents, answer, self.task_type)
        info = {
            "early_stop_round": early_stop_round,
            "consensus": consensus is not None,
            **vote.info(),
            "rounds_run": len(rounds),
            "active_agents": [[turn.agent for turn in turns] for turns in rounds],
            "importance_scores": importance,
            "rankings": rankings,
            "unparsed_scores": sum(1 for turns in rounds for t in turns if t.extra.get("scores_parsed") is False),
        }
        return Solution(response=strip_scores(vote.response([t.text for t in rounds[-1]])), answer=answer,
                        trajectory=traj.turns, info=info)

    def _consensus(self, answers: Sequence[str | None]) -> Vote | None:
        """The round's consensus answer when more than 2/3 of the active agents agree with it, else None.

        The candidate is the round's majority answer (for free text, its medoid); agreeing means the same
        answer, or for free text a token F1 of at least the similarity threshold (methods.consensus).
        """
        vote = consensus_vote(answers, self.task_type)
        if vote.answer is None:
            return None
        if 3 * agreement_count(answers, vote.answer, self.task_type) <= 2 * len(answers):
            return None
        return vote

    async def _rank(self, traj: Trajectory, sample: Sample, previous: list[Turn], round_index: int,
                    rng: random.Random, rankings: list[dict]) -> list[Turn]:
        """One listwise ranker turn over the previous round's solutions; returns the top ones, best first.

        Fallback when the ranking cannot be read: the solutions whose answer most others agree with (votes;
        for free text, answers within the similarity threshold), in agent order (what a consensus-seeking
        ranker would keep); recorded as `ranking_parsed: false`.
        """
        order = rng.sample(previous, len(previous))
        prompt = ranker_prompt(format_question(sample), [strip_scores(t.text) for t in order], LISTWISE_TOP_K)
        turn = await traj.chat([{"role": "user", "content": prompt}], agent=self.config.num_agents,
                               role="ranker", round=round_index, extract=False)
        positions = parse_ranking(turn.text, len(order), LISTWISE_TOP_K)
        if positions is not None:
            kept = [order[p] for p in positions]
        else:
            answers = [t.answer for t in previous]
            support = {t.agent: agreement_count(answers, t.answer, self.task_type) for t in previous}
            kept = sorted(previous, key=lambda t: (-support[t.agent], t.agent))[:LISTWISE_TOP_K]
        turn.extra.update(shown_agents=[t.agent for t in order], ranking_parsed=positions is not None,
                          kept_agents=[t.agent for t in kept])
        rankings.append({"round": round_index, "kept_agents": [t.agent for t in kept],
                         "parsed": positions is not None})
        return kept

