"""AgentVerse prompts: role recruiting, solver, critics with [Agree], evaluator with Correctness and advice."""
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
            f"\"\"\"\nEvaluator's advice:\n{advice}")


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


def solver_prompt(question_with_instruction: str, advice: str | None, previous_solution: str | None) -> str:
    return f"{question_with_instruction}{advice_block(advice, previous_solution)}"


def revision_prompt(question_with_instruction: str, solution: str, critiques: Sequence[tuple[str, str]]) -> str:
    listed = "\n\n".join(f"Reviewer ({role}):\n{text.strip()}" for role, text in critiques)
    return (
        f"{question_with_instruction}\n\nYour current solution:\n\"\"\"\n{solution.strip()}\n\"\"\"\n\n"
        f"Reviewers raised these points:\n\n{listed}\n\n"
        "Revise your solution, fixing every valid point, and follow the answer format above."
    )


def critic_prompt(question: str, solution: str) -> str:
    return (
        f"Problem:\n{question}\n\nA solver proposed this solution:\n\"\"\"\n{solution.strip()}\n\"\"\"\n\n"
        "Check the solution carefully, step by step. If it is fully correct, end your reply with "
        f"{AGREE_TOKEN}. Otherwise explain what is wrong and how to fix it, and do not write {AGREE_TOKEN}."
    )


def evaluator_prompt(question: str, solution: str) -> str:
    return (
        f"Problem:\n{question}\n\nProposed solution:\n\"\"\"\n{solution.strip()}\n\"\"\"\n\n"
        "Judge whether the solution is correct. Reply in exactly this format:\n"
        "Correctness: <1 if the solution is correct, 0 if not>\n"
        "Response: <if it is not correct, advice on how to solve the problem correctly>"
    )
