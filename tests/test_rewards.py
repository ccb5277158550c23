"""distill.rewards: exact values of every reward part, the aggregations, the per-part baselines, batching."""
import math

import pytest

from distill.rewards import (
    AnswerGrader,
    PadReward,
    RewardConfigError,
    RewardSettings,
    aggregate_step_scores,
    leave_one_out_means,
    pad_advantages,
    process_baselines,
    process_rewards,
    trl_reward_functions,
    verifiable_rewards,
)


class FakePRM:
    """Scores step k of a solution 0.9 unless the step says "wrong" (0.1); records each score_many call."""

    def __init__(self):
        self.calls = []

    def score_many(self, items):
        self.calls.append(list(items))
        return [[0.1 if "wrong" in step else 0.9 for step in steps] for _, steps in items]


def test_verifiable_reward_is_solved_minus_one():
    grader = AnswerGrader("math")
    completions = ["2 + 3 = 5\n\nThe answer is \\boxed{5}.", "The answer is \\boxed{6}.", "no number here",
                   "\\boxed{5.0}"]
    assert verifiable_rewards(grader, completions, ["5", "5", "5", "5"]) == [0.0, -1.0, -1.0, 0.0]
    assert verifiable_rewards(grader, ["\\boxed{1}"], [None]) == [0.0]  # nothing to check: no penalty


def test_verifiable_reward_choice_and_short_answer():
    choice = AnswerGrader("multiple_choice")
    assert verifiable_rewards(choice, ["The answer is (B)", "The answer is (C)"], ["B", "B"]) == [0.0, -1.0]
    short = AnswerGrader("short_answer")
    assert verifiable_rewards(short, ["Answer: the red house", "Answer: blue car"], ["red house"] * 2) == [0.0, -1.0]


def test_aggregate_min_mean_last_and_nan():
    scores = [0.8, 0.2, 0.5]
    assert aggregate_step_scores(scores, "min") == 0.2
    assert aggregate_step_scores(scores, "mean") == pytest.approx(0.5)
    assert aggregate_step_scores(scores, "last") == 0.5
    assert aggregate_step_scores([math.nan, 0.7, 0.3], "min") == 0.3  # an unreadable (cut) step is skipped
    assert aggregate_step_scores([], "min") == 0.0
    with pytest.raises(RewardConfigError, match="--prm_aggregate"):
        aggregate_step_scores(scores, "max")


def test_process_rewards_one_call_per_batch_and_split_steps():
    prm = FakePRM()
    completions = ["Step one.\n\nwrong step.\n\n\\boxed{3}", "Step one.\n\n\\boxed{3}", ""]
    scores = process_rewards(prm, ["q1", "q1", "q2"], completions, "min")
    assert len(prm.calls) == 1  # the whole rollout batch in one call; the empty completion is not sent
    assert prm.calls[0] == [("q1", ["Step one.", "wrong step.", "\\boxed{3}"]), ("q1", ["Step one.", "\\boxed{3}"])]
    assert scores.scores == [0.1, 0.9, 0.0]
    assert scores.num_steps == [3, 2, 0]
    assert process_rewards(prm, ["q"] * 2, completions[:2], "last").scores == [0.9, 0.9]
    assert process_rewards(prm, ["q"] * 2, completions[:2], "mean").scores == pytest.approx([1.9 / 3, 0.9])


def test_orm_reads_the_whole_answer_as_one_step():
    prm = FakePRM()
    scores = process_rewards(prm, ["q"], ["a\n\nb wrong\n\nc"], "min", whole_answer=True)
    assert prm.calls == [[("q", ["a\n\nb wrong\n\nc"])]]
    assert scores.scores == [0.1] and scores.num_steps == [1]


def test_leave_one_out_means():
    assert leave_one_out_means([1.0, 2.0, 3.0, 10.0, 20.0, 30.0], 3) == [2.5, 2.0, 1.5, 25.0, 20.0, 15.0]
    with pytest.raises(RewardConfigError):
        leave_one_out_means([1.0, 2.0, 3.0], 2)


def test_process_baselines_token_and_step():
    scores, tokens, steps = [0.8, 0.4, 0.6], [10, 20, 30], [2, 4, 3]
    # token: the others' score per token x own length
    assert process_baselines(scores, tokens, steps, 3, "token") == pytest.approx(
        [10 * 1.0 / 50, 20 * 1.4 / 40, 30 * 1.2 / 30])
    # step: the others' mean score per step (0.4, 0.1, 0.2) x own steps
    assert process_baselines(scores, tokens, steps, 3, "step") == pytest.approx(
        [2 * (0.1 + 0.2) / 2, 4 * (0.4 + 0.2) / 2, 3 * (0.4 + 0.1) / 2])


def test_prmvr_advantages_follow_the_paper():
    """PRM part minus its token baseline, plus coef x (VR - VR's own leave-one-out mean); VR = solved - 1."""
    prm_scores, vr = [0.9, 0.3, 0.5, 0.7], [0.0, -1.0, -1.0, 0.0]
    tokens, steps = [4, 4, 4, 4], [1, 1, 1, 1]
    got = pad_advantages(prm_scores, vr, tokens, steps, group_size=2, coef=0.5, baseline="token")
    # equal lengths: the token baseline is the other's score; VR baselines: -1, 0, 0, -1
    assert got == pytest.approx([(0.9 - 0.3) + 0.5 * (0 + 1), (0.3 - 0.9) + 0.5 * (-1 - 0),
                                 (0.5 - 0.7) + 0.5 * (-1 - 0), (0.7 - 0.5) + 0.5 * (0 + 1)])
    assert pad_advantages(None, vr, tokens, steps, 2) == pytest.approx([1.0, -1.0, -1.0, 1.0])


def test_pad_reward_modes_and_total():
    prm = FakePRM()
    settings = RewardSettings("PRMVR", "math", "unused", verifiable_reward_coef=2.0)
    reward = PadReward(settings, prm=prm)
    parts = reward(["q", "q"], ["ok.\n\n\\boxed{4}", "wrong.\n\n\\boxed{5}"], ["4", "4"])
    assert parts.process == [0.9, 0.1] and parts.verifiable == [0.0, -1.0]
    assert parts.total == pytest.approx([0.9, 0.1 - 2.0])
    assert len(prm.calls) == 1
    vr_only = PadReward(RewardSettings("VR", "math"))(["q"], ["\\boxed{4}"], ["4"])
    assert vr_only.process is None and vr_only.total == [0.0]
    with pytest.raises(RewardConfigError, match="--reward_pretrain"):
        RewardSettings("PRM", "math")
    with pytest.raises(RewardConfigError, match="--reward_mode"):
        RewardSettings("XYZ", "math")


def test_trl_reward_functions_are_named_per_part_and_weighted():
    prm = FakePRM()
    reward = PadReward(RewardSettings("PRMVR", "math", "unused", verifiable_reward_coef=0.5), prm=prm)
    functions, weights = trl_reward_functions(reward)
    assert [f.__name__ for f in functions] == ["prm", "vr"] and weights == [1.0, 0.5]
    completions = [[{"role": "assistant", "content": "wrong.\n\n\\boxed{2}"}],
                   [{"role": "assistant", "content": "\\boxed{3}"}]]
    prm_scores = functions[0](prompts=[None] * 2, completions=completions, completion_ids=[[1, 2, 3], [4]],
                              prm_query=["q", "q"], gt=["3", "3"])
    assert prm_scores == [0.1, 0.9] and len(prm.calls) == 1
    assert reward.last.extra["num_tokens"] == [3.0, 1.0]
    assert functions[1](prompts=[None] * 2, completions=completions, gt=["3", "3"], choices=[[], []]) == [-1.0, 0.0]
    orm_functions, _ = trl_reward_functions(PadReward(RewardSettings("ORM", "math", "unused"), prm=prm))
    assert [f.__name__ for f in orm_functions] == ["orm"]
