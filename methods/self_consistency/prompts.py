"""Prompts of self-consistency. The solvers get the shared task prompt; only the aggregator has its own."""
from __future__ import annotations

AGGREGATOR_PROMPT = """{question}

Several solutions to this problem were written independently. They may disagree, and any of them may be wrong.

{candidates}

Check the solutions against each other and against the problem: find the steps where they part ways and \
decide which reasoning holds. Then write your own final solution. {answer_instruction}"""

CANDIDATE = "### Solution {number}\n{text}"
