"""Self-consistency: `parallel_num` independent samples of one prompt, majority vote over their answers."""
from __future__ import annotations

from dataclasses import dataclass

from data.schema import Sample
from data.task_prompts import answer_instruction, format_question, task_prompt
from eval.grading import answer_key, majority_vote, vote_counts
from methods.base import ConfigError, Method, MethodConfig, Solution, Trajectory, Turn, final_solution
from methods.self_consistency.prompts import AGGREGATOR_PROMPT, CANDIDATE


@dataclass
class SelfConsistencyConfig(MethodConfig):
    parallel_num: int = 5
    temperature: float | None = None  # solvers' temperature; None: the engine's --model_temperature
    use_aggregator: bool = False  # an extra LLM turn reads every sample and gives the final answer

    def __post_init__(self) -> None:
        if self.parallel_num < 1:
            raise ConfigError(f"key parallel_num must be at least 1, got {self.parallel_num}")


class SelfConsistency(Method):
    """Sample the same chain-of-thought prompt `parallel_num` times and keep the most common answer."""

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
        voted = majority_vote(answers, self.task_type)
        info = {"answers": answers, "vote_counts": vote_counts(answers, self.task_type), "vote_answer": voted,
                "answer_source": "vote"}
        response = response_for_answer(solvers, voted, self.task_type)
        answer = voted

        aggregator = await self._aggregate(traj, sample, solvers) if self.config.use_aggregator else None
        return final_solution(traj, response, answer, info, aggregator)

    async def _aggregate(self, traj: Trajectory, sample: Sample, solvers: list[Turn]) -> Turn:
        candidates = "\n\n".join(CANDIDATE.format(number=i + 1, text=turn.text.strip())
                                 for i, turn in enumerate(solvers))
        prompt = AGGREGATOR_PROMPT.format(question=format_question(sample), candidates=candidates,
                                          answer_instruction=answer_instruction(self.task_type))
        turn = await traj.chat([{"role": "user", "content": prompt}], agent=len(solvers), role="aggregator",
                               round=1)
        return turn


def response_for_answer(turns: list[Turn], answer: str | None, task_type: str) -> str:
    """The first response that gave `answer` (the first response when `answer` is None)."""
    winner = answer_key(answer, task_type)
    for turn in turns:
        if winner is not None and answer_key(turn.answer, task_type) == winner:
            return turn.text
    return turns[0].text
