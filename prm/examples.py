"""Labeled records (label.py's output) -> PRM training examples with labels at step separators only."""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from data.errors import DataError
from data.loaders import iter_json_objects
from data.steps import split_steps
from prm.model import IGNORE_INDEX
from prm.template import Template, question_text

LABEL_MODES = ("outcome", "last", "solution")


@dataclass
class Solution:
    """One judged solution of a question, as the PRM sees it."""

    question_id: str
    solution_id: str
    question: str
    text: str
    steps: list[str]
    is_correct: bool | None
    answer: str | None = None


@dataclass
class Question:
    id: str
    source: str | None
    solutions: list[Solution] = field(default_factory=list)

    def judged(self) -> list[Solution]:
        return [s for s in self.solutions if s.is_correct is not None]

    def is_mixed(self) -> bool:
        verdicts = {s.is_correct for s in self.judged()}
        return verdicts == {True, False}


def read_labeled(path: str | Path) -> list[Question]:
    """Every question of a labeled file; anything that is not a labeled record fails with file:line: field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    questions = [_question(record, where) for record, where in iter_json_objects(path)]
    if not questions:
        raise DataError(f"{path}: no labeled records (empty file)")
    return questions


def _question(record: Any, where: str) -> Question:
    if not isinstance(record, dict):
        raise DataError(f"{where}: not a JSON object")
    if not isinstance(record.get("query"), str):
        raise DataError(f"{where}: no string field 'query' (is this a labeled file from label.py?)")
    solutions = record.get("solutions")
    if not isinstance(solutions, list):
        raise DataError(f"{where}: no list field 'solutions' (is this a labeled file from label.py?)")
    qid = str(record.get("id", where))
    question = Question(id=qid, source=record.get("source"))
    text_of_question = question_text(record)
    for number, solution in enumerate(solutions):
        if not isinstance(solution, dict):
            raise DataError(f"{where}: solutions[{number}] is not an object")
        text = solution.get("text")
        steps = solution.get("steps")
        if not isinstance(text, str) and not isinstance(steps, list):
            raise DataError(f"{where}: solutions[{number}] has neither a string 'text' nor a list 'steps'")
        if steps is not None and (not isinstance(steps, list) or not all(isinstance(s, str) for s in steps)):
            raise DataError(f"{where}: solutions[{number}].steps is not a list of strings")
        if "is_correct" not in solution:
            raise DataError(f"{where}: solutions[{number}] has no field 'is_correct'")
        is_correct = solution["is_correct"]
        if is_correct is not None and not isinstance(is_correct, bool):
            raise DataError(f"{where}: solutions[{number}].is_correct must be true, false or null, "
                            f"got {is_correct!r}")
        if not steps:
            steps = split_steps(text)  # only a solution written without label.py's steps needs splitting
        answer = solution.get("answer")
        question.solutions.append(Solution(
            question_id=qid, solution_id=str(solution.get("id", number + 1)), question=text_of_question,
            text=text if isinstance(text, str) else "\n\n".join(steps), steps=list(steps), is_correct=is_correct,
            answer=None if answer is None else str(answer)))
    return question


def steps_and_labels(solution: Solution, label_mode: str) -> tuple[list[str], list[int | None]]:
    """The steps the PRM reads and one label per step (None: not labelled) under `label_mode`."""
    label = int(bool(solution.is_correct))
    if label_mode == "solution":
        text = solution.text.strip() or "\n\n".join(solution.steps)
        return ([text], [label]) if text else ([], [])
    steps = solution.steps
    if label_mode == "outcome":
        return steps, [label] * len(steps)
    if label_mode == "last":
        if not steps:
            return [], []
        return steps, [None] * (len(steps) - 1) + [label]
    raise ValueError(f"unknown label mode {label_mode!r} (choose from {', '.join(LABEL_MODES)})")


@dataclass
class Selection:
    """The questions kept for training, and what was left out and why (printed by the script)."""

    questions: list[Question]
    questions_in: int = 0
    dropped_not_mixed: int = 0
    dropped_no_judged: int = 0
    solutions_unjudged: int = 0


def select_questions(questions: Sequence[Question], require_mixed: bool) -> Selection:
    selection = Selection(questions=[], questions_in=len(questions))
    for question in questions:
        selection.solutions_unjudged += len(question.solutions) - len(question.judged())
        if not question.judged():
            selection.dropped_no_judged += 1
        elif require_mixed and not question.is_mixed():
            selection.dropped_not_mixed += 1
        else:
            selection.questions.append(question)
    return selection


def split_questions(questions: Sequence[Question], eval_ratio: float, seed: int) -> tuple[list, list]:
    """A held-out share of questions (never of solutions: a question's solutions stay together)."""
    if not 0.0 <= eval_ratio < 1.0:
        raise ValueError(f"--eval_split_ratio must be in [0, 1), got {eval_ratio}")
    order = list(questions)
    random.Random(seed).shuffle(order)
    num_eval = round(len(order) * eval_ratio)
    if eval_ratio > 0 and num_eval == 0 and len(order) > 1:
        num_eval = 1
    return order[num_eval:], order[:num_eval]


@dataclass
class EncodeSummary:
    solutions: int = 0
    steps_labelled: int = 0
    positive_labels: int = 0
    did_not_fit: int = 0  # solutions whose steps alone exceed max_length: left out
    prompt_truncated: int = 0
    empty: int = 0  # solutions with no steps at all


class PRMDataset(torch.utils.data.Dataset):
    """Tokenised examples: input_ids, labels (IGNORE_INDEX except at labelled separators), example_id."""

    def __init__(self, examples: list[dict[str, Any]], summary: EncodeSummary):
        self.examples = examples
        self.summary = summary

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.examples[index]


def encode_questions(questions: Sequence[Question], template: Template, label_mode: str,
                     max_length: int | None) -> PRMDataset:
    summary = EncodeSummary()
    examples = []
    for question in questions:
        for solution in question.judged():
            steps, labels = steps_and_labels(solution, label_mode)
            if not steps:
                summary.empty += 1
                continue
            encoded = template.encode(solution.question, steps, max_length)
            if encoded.steps_cut:
                summary.did_not_fit += 1
                continue
            summary.prompt_truncated += bool(encoded.prompt_tokens_cut)
            label_ids = [IGNORE_INDEX] * len(encoded.input_ids)
            for position, label in zip(encoded.step_positions, labels):
                if label is not None:
                    label_ids[position] = label
                    summary.steps_labelled += 1
                    summary.positive_labels += label
            summary.solutions += 1
            examples.append({"input_ids": encoded.input_ids, "labels": label_ids,
                             "example_id": f"{solution.question_id}/{solution.solution_id}"})
    return PRMDataset(examples, summary)


class PRMCollator:
    """Right-pads a batch; keeps the example ids so a bad (NaN) step can name its inputs."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        longest = max(len(row["input_ids"]) for row in rows)
        input_ids = torch.full((len(rows), longest), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
        labels = torch.full((len(rows), longest), IGNORE_INDEX, dtype=torch.long)
        for i, row in enumerate(rows):
            length = len(row["input_ids"])
            input_ids[i, :length] = torch.tensor(row["input_ids"], dtype=torch.long)
            attention_mask[i, :length] = 1
            labels[i, :length] = torch.tensor(row["labels"], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
                "example_ids": [row["example_id"] for row in rows]}


__all__ = ["LABEL_MODES", "EncodeSummary", "PRMCollator", "PRMDataset", "Question", "Selection", "Solution",
           "encode_questions", "read_labeled", "select_questions", "split_questions", "steps_and_labels"]
