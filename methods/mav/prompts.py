"""MAV prompts: the aspect verifiers (each a system prompt plus what to examine) and the two verifier turns."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AspectVerifier:
    system: str  # who the verifier is
    task: str  # what to examine in the first turn


_CRITICAL = "You are a critical verifier. You judge whether a proposed solution to a problem is correct."

# Configs choose a pool of these by name; each sample draws `n_max_verifiers` of the pool (seeded).
VERIFIERS: dict[str, AspectVerifier] = {
    "math_steps": AspectVerifier(
        f"{_CRITICAL} You focus on mathematical correctness.",
        "Go through the solution step by step and recompute every calculation, algebraic manipulation and "
        "formula. Point out the first step that is wrong, if any."),
    "logic_steps": AspectVerifier(
        f"{_CRITICAL} You focus on logical soundness.",
        "Go through the solution step by step and check that every step follows from the problem statement "
        "and the previous steps, with no unjustified leaps, circular arguments or misread conditions."),
    "units_steps": AspectVerifier(
        f"{_CRITICAL} You focus on quantities and units.",
        "Check every quantity in the solution: that its units are consistent, conversions are right, and "
        "the final answer is expressed in the unit and form the question asks for."),
    "facts_steps": AspectVerifier(
        f"{_CRITICAL} You focus on factual accuracy.",
        "List each factual claim the solution relies on (definitions, laws, data, domain knowledge) and "
        "check whether each one is true."),
    "general_summarize": AspectVerifier(
        _CRITICAL,
        "Summarize the solution's approach and result in a few sentences, then judge whether that approach "
        "really answers the question that was asked."),
    "general_diff": AspectVerifier(
        _CRITICAL,
        "Solve the problem yourself, independently and by a different route where possible, then compare "
        "your result with the proposed solution's and explain any difference."),
    "general_edge": AspectVerifier(
        _CRITICAL,
        "Look for special and edge cases the solution may have overlooked (boundary values, zero, negative "
        "numbers, exceptions, alternative readings of the question) and check whether they change the answer."),
    "general_mistakes": AspectVerifier(
        _CRITICAL,
        "Look for the mistakes most often made on problems like this one (sign errors, off-by-one counts, "
        "misread quantities, wrong option letters, answering a different question) in the solution."),
    "general_domain": AspectVerifier(
        f"{_CRITICAL} You are an expert in the subject of the problem.",
        "Judge the solution as an expert in the problem's field would: is the method appropriate, are the "
        "concepts applied correctly, and is the conclusion what an expert would reach?"),
    "general_direct": AspectVerifier(
        _CRITICAL,
        "Read the solution and state directly, in a few sentences, whether its final answer is correct and why."),
}

VERDICT_TAG = "FINAL VERIFICATION ANSWER"


def analysis_prompt(question: str, solution: str, verifier: AspectVerifier) -> str:
    return (f"Problem:\n{question}\n\nProposed solution:\n\"\"\"\n{solution.strip()}\n\"\"\"\n\n{verifier.task}\n"
            "Do not give your final verdict yet.")


VERDICT_PROMPT = (
    "Based on your analysis, is the proposed solution correct? Answer on the last line with exactly "
    f"\"{VERDICT_TAG}: True\" if it is correct or \"{VERDICT_TAG}: False\" if it is not."
)
