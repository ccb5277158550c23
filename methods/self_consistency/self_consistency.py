"""Self-consistency: `parallel_num` independent samples of one prompt, then a consensus over their answers.

The consensus is a majority vote for math and multiple choice and the medoid for free-form short answers
(methods.consensus). An aggregator turn, on by default for short-answer tasks, may replace it.
"""
from __future__ import annotations

from dataclasses import dataclass

from data.schema import Sample
from data.task_prompts import answer_instruction, format_question, task_prompt
from eval.grading import vote_counts
from methods.base import ConfigError, Method, MethodConfig, Solution, Trajectory, Turn, final_solution
from methods.consensus import consensus_vote, uses_aggregator
from methods.self_consistency.prompts import AGGREGATOR_PROMPT, CANDIDATE


@dataclass
class SelfConsistencyConfig(MethodConfig):
    parallel_num: int = 5
    temperature: float | None = None  # solvers' temperature; None: the engine's --model_temperature
    # An extra LLM turn reads every sample and gives the final answer. null: on for short-answer tasks
    # (free text has no countable vote; the paper's repository always aggregates), off otherwise.
    use_aggregator: bool | None = None

    def __post_init__(self) -> None:
        if self.parallel_num < 1:
            raise ConfigError(f"key parallel_num must be at least 1, got {self.parallel_num}")


class SelfConsistency(Method):
    """Sample the same chain-of-thought prompt `parallel_num` times and keep the consensus answer
    (the most common one; for free text the medoid), or the aggregator's."""

    name = "self_consistency"
    Config = SelfConsistencyConfig
    config: SelfConsistencyConfig

    async def solve(self, sample: Sample) -> Solution:
        num_samples = self.config.parallel_num
        traj = self.trajectory(sample)
        messages = [{"role": "user", "content": task_prompt(sample, self.task_type)}]
        # Separate calls rather than n>1, so each sample is its own recorded turn; distinct seeds,
        # or a seeded backend would return the same sample every time.
        solvers = await traj.chat_many([messages] * num_samples, agents=range(num_samples), role="solver",
                                       round=0, temperature=self.config.temperature,
                                       seeds=[self.seed + agent for agent in range(num_samples)])
        answers = [turn.answer for turn in solvers]
        vote = consensus_vote(answers, self.task_type)
        info = {"answers": answers, "vote_counts": vote_counts(answers, self.task_type), "vote_answer": vote.answer,
                **vote.info()}
        response = vote.response([turn.text for turn in solvers])

        use_aggregator = uses_aggregator(self.config.use_aggregator, self.task_type)
        aggregator = await self._aggregate(traj, sample, solvers) if use_aggregator else None
        return final_solution(traj, response, vote.answer, info, aggregator, vote_source=vote.source)

    async def _aggregate(self, traj: Trajectory, sample: Sample, solvers: list[Turn]) -> Turn:
        candidates = "\n\n".join(CANDIDATE.format(number=i + 1, text=turn.text.strip())
                                 for i, turn in enumerate(solvers))
        prompt = AGGREGATOR_PROMPT.format(question=format_question(sample), candidates=candidates,
                                          answer_instruction=answer_instruction(self.task_type))
        turn = await traj.chat([{"role": "user", "content": prompt}], agent=len(solvers), role="aggregator",
                               round=1)
        return turn
