"""LLM debate: `num_agents` agents over `num_rounds` rounds, each seeing its peers' previous responses."""
from __future__ import annotations

from dataclasses import dataclass

from data.schema import Sample
from data.task_prompts import answer_instruction, format_question, task_prompt
from eval.grading import vote_counts
from methods.base import ConfigError, Method, MethodConfig, Solution, Trajectory, Turn, final_solution
from methods.consensus import consensus_vote, uses_aggregator
from methods.llm_debate.prompts import AGGREGATOR_PROMPT, DEBATE_ROUND_PROMPT, PEER, REFLECTION_PROMPT


@dataclass
class LLMDebateConfig(MethodConfig):
    num_agents: int = 3
    num_rounds: int = 2  # rounds in all, the independent first answers included (round 0)
    temperature: float | None = None  # None: the engine's --model_temperature
    # An extra LLM turn reads the final round and gives the final answer. null: on for short-answer tasks
    # (free text has no countable vote; the paper's repository always aggregates), off otherwise.
    use_aggregator: bool | None = None

    def __post_init__(self) -> None:
        for key in ("num_agents", "num_rounds"):
            if getattr(self, key) < 1:
                raise ConfigError(f"key {key} must be at least 1, got {getattr(self, key)}")


class LLMDebate(Method):
    """Round 0: every agent answers alone. Round r > 0: every agent reads its peers' round r-1
    responses and updates its own answer in its ongoing conversation. Final: the consensus of the
    last round (majority vote; for free text the medoid) or an aggregator turn."""

    name = "llm_debate"
    Config = LLMDebateConfig
    config: LLMDebateConfig

    async def solve(self, sample: Sample) -> Solution:
        num_agents, num_rounds = self.config.num_agents, self.config.num_rounds
        instruction = answer_instruction(self.task_type)
        traj = self.trajectory(sample)
        # One growing conversation per agent: its own earlier answers stay in its context.
        conversations = [[{"role": "user", "content": task_prompt(sample, self.task_type)}]
                         for _ in range(num_agents)]
        agents = list(range(num_agents))
        latest: list[Turn] = []
        round_answers: list[list[str | None]] = []
        for round_index in range(num_rounds):
            if round_index > 0:
                for agent in agents:
                    conversations[agent].append({"role": "user",
                                                 "content": _update_prompt(latest, agent, instruction)})
            latest = await traj.chat_many(
                conversations, agents=agents, role="debater", round=round_index,
                temperature=self.config.temperature,
                # Round 0 prompts are identical: distinct seeds keep seeded backends from cloning answers.
                seeds=[self.seed + agent for agent in agents])
            for agent, turn in zip(agents, latest):
                conversations[agent].append({"role": "assistant", "content": turn.text})
            round_answers.append([turn.answer for turn in latest])

        final_answers = round_answers[-1]
        vote = consensus_vote(final_answers, self.task_type)
        info = {"round_answers": round_answers, "vote_counts": vote_counts(final_answers, self.task_type),
                "vote_answer": vote.answer, **vote.info()}
        response = vote.response([turn.text for turn in latest])

        use_aggregator = uses_aggregator(self.config.use_aggregator, self.task_type)
        aggregator = await self._aggregate(traj, sample, latest) if use_aggregator else None
        return final_solution(traj, response, vote.answer, info, aggregator, vote_source=vote.source)

    async def _aggregate(self, traj: Trajectory, sample: Sample, finals: list[Turn]) -> Turn:
        candidates = "\n\n".join(PEER.format(agent=turn.agent + 1, text=turn.text.strip()) for turn in finals)
        prompt = AGGREGATOR_PROMPT.format(question=format_question(sample), candidates=candidates,
                                          answer_instruction=answer_instruction(self.task_type))
        turn = await traj.chat([{"role": "user", "content": prompt}], agent=self.config.num_agents,
                               role="aggregator", round=self.config.num_rounds)
        return turn


def _update_prompt(previous: list[Turn], agent: int, instruction: str) -> str:
    """What `agent` reads at the start of a later round: every peer's full previous response."""
    peers = [turn for turn in previous if turn.agent != agent]
    if not peers:
        return REFLECTION_PROMPT.format(answer_instruction=instruction)
    block = "\n\n".join(PEER.format(agent=turn.agent + 1, text=turn.text.strip()) for turn in peers)
    return DEBATE_ROUND_PROMPT.format(peers=block, answer_instruction=instruction)

