"""Prompts of LLM debate. Round 0 is the shared task prompt; later rounds and the aggregator are ours."""
from __future__ import annotations

DEBATE_ROUND_PROMPT = """Other agents solved the same problem. Their latest solutions:

{peers}

Use their reasoning as evidence, not as authority: go through your previous solution and theirs step by \
step, keep what is right, fix what is wrong, and give your updated solution. {answer_instruction}"""

PEER = "### Agent {agent}\n{text}"

# With a single agent there are no peers: a later round is a self-review.
REFLECTION_PROMPT = """Review your previous solution step by step, fix any mistake you find, and give your \
updated solution. {answer_instruction}"""

AGGREGATOR_PROMPT = """{question}

Several agents debated this problem. Their final solutions:

{candidates}

Weigh the solutions against each other and against the problem, decide which reasoning holds, and write \
the final solution. {answer_instruction}"""
