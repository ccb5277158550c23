"""AgentVerse prompts: role recruiting, solver and critics over a shared discussion, evaluator with advice."""
from __future__ import annotations

from collections.abc import Sequence

AGREE_TOKEN = "[Agree]"

# Used when the recruiter's list cannot be read: the solver first, then critics.
GENERIC_EXPERTS = (
    "an expert problem solver who works carefully step by step",
    "a meticulous reviewer who checks every step of a solution for errors",
    "a domain expert who knows the subject of the question in depth",
    "a critical thinker who looks for overlooked cases and wrong assumptions",
)


def advice_block(advice: str | None, previous_solution: str | None) -> str:
    if not advice:
        return ""
    return (f"\n\nAn earlier attempt was judged incorrect.\nEarlier solution:\n\"\"\"\n{previous_solution or ''}\n"
            f"\"\"\"\nEvaluator's advice (on the solution and on whom to recruit):\n{advice}")


def recruiter_prompt(question: str, count: int, advice: str | None, previous_solution: str | None) -> str:
    example = "\n".join(f"{i + 1}. <one-line description of expert {i + 1}>" for i in range(count))
    return (
        f"You lead a group of experts. Recruit {count} experts with different, complementary backgrounds "
        "to solve the problem below together: the first will write the solution, the others will review it."
        f"\n\nProblem:\n{question}{advice_block(advice, previous_solution)}\n\n"
        f"Reply with only a numbered list of {count} one-line expert descriptions:\n{example}"
    )


def expert_system(description: str) -> str:
    return f"You are {description}."


def discussion_block(messages: Sequence[tuple[str, str]]) -> str:
    """Discussion messages as the participants see them: who spoke, then what they said."""
    return "\n\n".join(f"[{speaker}]:\n\"\"\"\n{text.strip()}\n\"\"\"" for speaker, text in messages)


def solver_prompt(question_with_instruction: str, history: Sequence[tuple[str, str]]) -> str:
    """The solver: the problem, and the last messages of the group's discussion when there are any."""
    if not history:
        return question_with_instruction
    return (
        f"{question_with_instruction}\n\nThe latest messages of your group's discussion (your earlier solutions, "
        f"the reviewers' critiques, the evaluator's advice):\n\n{discussion_block(history)}\n\n"
        "Using this information, give the correct solution step by step, fixing every valid point, and follow "
        "the answer format above."
    )


def critic_prompt(question: str, earlier: Sequence[tuple[str, str]], solution: str, answer_instruction: str) -> str:
    """A critic solves the problem itself from the recent discussion and agrees only on the same final answer."""
    discussion = (f"Earlier in the discussion:\n\n{discussion_block(earlier)}\n\n" if earlier else "")
    return (
        f"You are in a discussion group, aiming to solve this problem together:\n{question}\n\n{discussion}"
        f"The latest solution proposed by the solver:\n\"\"\"\n{solution.strip()}\n\"\"\"\n\n"
        "Double-check the solutions in the discussion and give your critique, then solve the problem yourself "
        f"step by step. {answer_instruction}\n"
        f"If the final answer of your own solution is the same as the final answer of the latest solution, end "
        f"your response with {AGREE_TOKEN}. If it is different, do not write {AGREE_TOKEN}."
    )


def evaluator_prompt(question: str, solution: str) -> str:
    return (
        f"Problem:\n{question}\n\nProposed solution:\n\"\"\"\n{solution.strip()}\n\"\"\"\n\n"
        "Judge whether the solution is correct. Reply in exactly this format:\n"
        "Correctness: <1 if the solution is correct, 0 if not>\n"
        "Response: <if it is not correct, advice on how to correct the solution, and which experts the group "
        "should recruit for the next attempt>"
    )
