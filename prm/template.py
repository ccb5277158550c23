"""How a question and its steps become the token sequence the PRM reads; training and scoring share it.

Layout: `<prompt> <step 1> SEP <step 2> SEP ...`, where the prompt is the question (through the
tokenizer's chat template when it has one) and SEP is a fixed separator. A step's label sits on the last
token of the separator that follows it: a causal backbone has read the whole step there and nothing after.

Each piece (prompt, every step, the separator) is tokenised on its own and the ids are concatenated. Why:
a BPE tokenizer run over the joined text can merge the separator with a neighbouring character ("\\n\\n"
then " 5" may become one token), which would move or erase a label position; separate pieces make the
separator's ids identical in every example and at training and scoring time alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from data.schema import Sample
from data.task_prompts import format_question

# A blank line: how the teachers' solutions separate steps already (data.steps splits on it), so the
# frozen backbone reads natural text; tokenised alone, it is one or two tokens in common tokenizers.
DEFAULT_SEPARATOR = "\n\n"


def question_text(record: dict[str, Any]) -> str:
    """The question as the agents saw it (context, query, lettered options), from a labeled record."""
    sample = Sample(id=str(record.get("id", "")), query=str(record.get("query", "")), gt="",
                    source=str(record.get("source", "")), choices=record.get("choices"),
                    context=record.get("context"))
    return format_question(sample)


@dataclass
class Encoded:
    """One solution as token ids, with the position of each step's label token."""

    input_ids: list[int]
    step_positions: list[int]  # one per kept step, in step order
    steps_cut: int = 0  # leading steps that did not fit in max_length (their positions are absent)
    prompt_tokens_cut: int = 0  # prompt tokens dropped from the left to make room


class Template:
    """Turns (question, steps) into token ids for one tokenizer; caches prompt ids per question."""

    def __init__(self, tokenizer: Any, separator: str = DEFAULT_SEPARATOR, use_chat_template: bool | None = None):
        if not separator:
            raise ValueError("the step separator must be a non-empty string")
        self.tokenizer = tokenizer
        self.separator = separator
        self.separator_ids = tokenizer(separator, add_special_tokens=False)["input_ids"]
        if not self.separator_ids:
            raise ValueError(f"the separator {separator!r} tokenises to nothing")
        self.use_chat_template = bool(tokenizer.chat_template) if use_chat_template is None else use_chat_template
        self._prompt_cache: dict[str, list[int]] = {}

    def prompt_ids(self, question: str) -> list[int]:
        cached = self._prompt_cache.get(question)
        if cached is not None:
            return cached
        if self.use_chat_template:
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                      add_generation_prompt=True)
            # The template writes any BOS itself; adding special tokens again would double it.
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = self.tokenizer(question, add_special_tokens=True)["input_ids"] + self.separator_ids
        if len(self._prompt_cache) > 10_000:  # scoring a stream of questions must not grow without bound
            self._prompt_cache.clear()
        self._prompt_cache[question] = ids
        return ids

    def step_ids(self, steps: list[str]) -> list[list[int]]:
        if not steps:
            return []
        encoded = self.tokenizer(list(steps), add_special_tokens=False)["input_ids"]
        return [ids + self.separator_ids for ids in encoded]

    def encode(self, question: str, steps: list[str], max_length: int | None = None) -> Encoded:
        """Token ids of the question and steps; over `max_length`, the prompt is cut from the left first,
        then whole leading steps (counted in `steps_cut`), so a kept label position is never lost."""
        prompt = self.prompt_ids(question)
        pieces = self.step_ids(steps)
        steps_cut = 0
        prompt_cut = 0
        if max_length is not None:
            step_total = sum(len(piece) for piece in pieces)
            while pieces and step_total > max_length:
                step_total -= len(pieces[0])
                pieces = pieces[1:]
                steps_cut += 1
            room = max_length - step_total
            if len(prompt) > room:
                prompt_cut = len(prompt) - room
                prompt = prompt[prompt_cut:]
        input_ids = list(prompt)
        positions = []
        for piece in pieces:
            input_ids.extend(piece)
            positions.append(len(input_ids) - 1)
        return Encoded(input_ids=input_ids, step_positions=positions, steps_cut=steps_cut,
                       prompt_tokens_cut=prompt_cut)


__all__ = ["DEFAULT_SEPARATOR", "Encoded", "Template", "question_text"]
