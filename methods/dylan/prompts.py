"""DyLAN prompts: role system prompts, the update prompt with peer ratings, the listwise ranker prompt."""
from __future__ import annotations

from collections.abc import Sequence

# A role's name picks its system prompt; configs choose roles per task (math, multiple choice, ...).
ROLE_SYSTEM_PROMPTS: dict[str, str] = {
    "Assistant": "You are a careful, helpful assistant. You think before you answer and check your work.",
    "Mathematician": "You are a mathematician. You reason rigorously, justify every step, and double-check "
                     "arithmetic and algebra before committing to an answer.",
    "MathSolver": "You are an expert at solving math word problems. You translate the problem into equations, "
                  "solve them step by step and verify the result against the question.",
    "Programmer": "You are a programmer. You break problems into precise, checkable steps as if writing code, "
                  "and you trace each step to make sure the result is exact.",
    "Economist": "You are an economist. You are good at quantitative reasoning, incentives, markets and "
                 "policy, and you state your assumptions explicitly.",
    "Doctor": "You are a medical doctor. You reason from anatomy, physiology, pharmacology and clinical "
              "practice, and you rule out distractor options one by one.",
    "Lawyer": "You are a lawyer. You read questions closely, separate facts from claims, and apply rules "
              "and precedents precisely.",
    "Psychologist": "You are a psychologist. You reason from empirical findings about behaviour, cognition "
                    "and development, and you weigh the evidence for each option.",
    "Historian": "You are a historian. You place events in context, check dates and causes, and weigh "
                 "sources critically.",
    "Scientist": "You are a natural scientist. You reason from first principles in physics, chemistry and "
                 "biology, and you check units and orders of magnitude.",
}


def solution_block(texts: Sequence[str]) -> str:
    return "\n\n".join(f"Solution {i + 1}:\n\"\"\"\n{text.strip()}\n\"\"\"" for i, text in enumerate(texts))


def update_prompt(question_with_instruction: str, previous_texts: Sequence[str]) -> str:
    """A later-round agent: the question, the previous round's active solutions, and a request to rate them."""
    count = len(previous_texts)
    return (
        f"{question_with_instruction}\n\n"
        f"Here are solutions to this problem from agents in the previous round:\n\n"
        f"{solution_block(previous_texts)}\n\n"
        "Use them as additional information: check each one critically, then write your own updated "
        "solution, following the answer format above.\n"
        f"After your solution, rate how correct and helpful each of the {count} solutions above is, from "
        "1 (poor) to 5 (excellent), on a last line of the form\n"
        f"Scores: [{', '.join(f's{i + 1}' for i in range(count))}]\n"
        f"with exactly {count} integers."
    )


def ranker_prompt(question: str, texts: Sequence[str], top_k: int) -> str:
    """The listwise ranker: pick the `top_k` best of the previous round's solutions."""
    return (
        f"Question:\n{question}\n\n"
        f"Here are {len(texts)} candidate solutions:\n\n{solution_block(texts)}\n\n"
        f"Compare the solutions and choose the {top_k} most correct and helpful ones. "
        f"Give their numbers, best first, on a last line of the form\n"
        f"Best: [{', '.join(f'n{i + 1}' for i in range(top_k))}]"
    )
