"""Arith: seeded synthetic arithmetic word problems with a difficulty level, the offline demo task.

    python -m data.arith --level 3 --split test --num_problems 200 --output arith_l3_test.jsonl

A problem is a chain of operations (+, -, *, exact /) applied to a starting quantity and told as a short
story (buying, giving away, sharing equally, groups of, prices). Every intermediate result is a positive
integer (a division leaves at least 2), so answers are exact. Everything follows from (level, split,
index): each split draws from its own seeded stream, and a problem's (numbers, operations) signature
also decides by hash which split may hold it, so train and test never share a problem; repeats within a
split are skipped.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.atomic import atomic_write_text
from data.errors import DataError
from data.loaders import RawRecord

SPLITS = ("train", "test")
DEFAULT_SIZES = {"train": 5000, "test": 1000}  # problems a split holds when generated in process
TEST_SHARE = 3  # one signature in TEST_SHARE belongs to test, the rest to train
# A split whose signature space is used up (level 1 is small) ends after this many draws in a row
# that give nothing new; the stream is seeded, so where it ends is deterministic too.
MAX_MISSES = 20_000

Step = tuple[str, int]  # (operation, operand)


@dataclass(frozen=True)
class Level:
    """The difficulty of one level: chain length and the ranges numbers are drawn from."""

    number: int
    description: str
    num_ops: tuple[int, int]  # inclusive range of the chain's length
    start: tuple[int, int]  # starting quantity
    addend: tuple[int, int]  # numbers added or taken away
    factor: tuple[int, int]  # multipliers and divisors
    max_value: int  # no intermediate result may exceed it
    operations: str = "+-*/"  # drawn from uniformly
    # The story ends with its calculation ("Calculate (12 + 7) * 3.") instead of a question: nothing to
    # translate into arithmetic. The default model needs this to get a fair share right (README).
    spell_out: bool = False


LEVELS: dict[int, Level] = {level.number: level for level in (
    Level(1, "one addition or multiplication, result up to 60, the calculation stated", (1, 1), (2, 30), (2, 30),
          (2, 9), 60, operations="+*", spell_out=True),
    Level(2, "one operation on numbers up to 20", (1, 1), (2, 20), (2, 20), (2, 9), 180),
    Level(3, "two operations on numbers up to 20", (2, 2), (2, 20), (2, 20), (2, 5), 200),
    Level(4, "three operations on two-digit numbers", (3, 3), (10, 99), (10, 99), (2, 9), 2_000),
    Level(5, "four or five operations on numbers up to 999", (4, 5), (10, 999), (10, 999), (2, 12), 50_000),
)}
CALIBRATED_LEVEL = 1  # the level behind the dataset name `Arith` (see README: the calibration table)


def apply(value: int, operation: str, operand: int) -> int:
    """One step of a chain; division must be exact."""
    if operation == "+":
        return value + operand
    if operation == "-":
        return value - operand
    if operation == "*":
        return value * operand
    if operation == "/":
        if operand == 0 or value % operand:
            raise ValueError(f"{value} / {operand} is not an exact division")
        return value // operand
    raise ValueError(f"unknown operation {operation!r}")


def evaluate(start: int, steps: Sequence[Step]) -> list[int]:
    """The running value after each step (the last one is the answer)."""
    values, value = [], start
    for operation, operand in steps:
        value = apply(value, operation, operand)
        values.append(value)
    return values


def expression(start: int, steps: Sequence[Step]) -> str:
    """The chain as one arithmetic expression, parenthesised where precedence needs it: (12 + 7) * 3."""
    text, precedence = str(start), 3
    for operation, operand in steps:
        step_precedence = 1 if operation in "+-" else 2
        if step_precedence > precedence:
            text = f"({text})"
        text, precedence = f"{text} {operation} {operand}", step_precedence
    return text


def signature_split(start: int, steps: Sequence[Step]) -> str:
    """The split a (numbers, operations) signature belongs to: fixed by its hash, so splits never overlap."""
    digest = hashlib.sha256(repr((start, tuple(steps))).encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") % TEST_SHARE == 0 else "train"


# ---- story ---------------------------------------------------------------------------------------

NAMES = (("Sam", "he"), ("Mia", "she"), ("Leo", "he"), ("Ava", "she"), ("Tom", "he"), ("Zoe", "she"),
         ("Ben", "he"), ("Lily", "she"), ("Omar", "he"), ("Nora", "she"), ("Ravi", "he"), ("Emma", "she"),
         ("Jack", "he"), ("Sara", "she"), ("Luis", "he"), ("Hana", "she"))
FRIENDS = ("a friend", "a classmate", "a neighbour", "a cousin", "a teacher")
ITEMS = ("apples", "marbles", "stickers", "pencils", "cookies", "cards", "shells", "stamps", "beads", "books",
         "balloons", "crayons")
CONTAINERS = ("bags", "boxes", "jars", "baskets", "packs")
GOODS = (("notebook", "notebooks"), ("toy car", "toy cars"), ("ticket", "tickets"), ("sandwich", "sandwiches"),
         ("plant", "plants"), ("book", "books"), ("ball", "balls"))
EXTRAS = ("delivery", "a gift bag", "gift wrapping", "a carry bag")

# Phrasings per theme: how the story opens (plain, or "groups of" / "prices" when the chain opens with *),
# one list per operation, and the question. Fields: name, He/he, his/her (pos), him/her (obj), friend,
# items / container / good / goods / extra, a (the running value before a step), b (the operand).
THEMES: dict[str, dict[str, Any]] = {
    "objects": {
        "open": ["{name} has {a} {items}.", "{name} starts with {a} {items}."],
        "open*": ["{name} has {a} {container} with {b} {items} in each.",
                  "{name} buys {a} {container} of {items}, and each holds {b} {items}."],
        "+": ["{He} buys {b} more {items}.", "{Friend} gives {obj} {b} more {items}.", "{He} finds {b} more {items}."],
        "-": ["{He} gives {b} {items} to {friend}.", "{He} sells {b} of the {items}.", "{He} loses {b} {items}."],
        "*": ["Then {he} ends up with {b} times as many {items} as {he} had.",
              "{He} trades them and gets {b} times as many {items} back."],
        "/": ["{He} shares the {items} equally among {b} friends and keeps one share for {obj}self.",
              "{He} splits the {items} into {b} equal groups and keeps one group."],
        "question": ["How many {items} does {name} have now?", "How many {items} does {name} have in the end?"],
    },
    "money": {
        "open": ["{name} has {a} dollars.", "{name} has saved {a} dollars."],
        "open*": ["{name} works {a} hours and earns {b} dollars an hour."],
        "+": ["{He} earns {b} more dollars.", "{Friend} gives {obj} {b} dollars."],
        "-": ["{He} spends {b} dollars on a {good}.", "{He} pays {b} dollars for a {good}."],
        "*": ["Then {his} money grows to {b} times as much as {he} had."],
        "/": ["{He} splits {his} money equally into {b} envelopes and keeps one envelope."],
        "question": ["How many dollars does {name} have now?", "How much money, in dollars, does {name} have now?"],
    },
    "prices": {  # only for chains that open with *: a price times a count
        "open*": ["A {good} costs {a} dollars. {name} buys {b} {goods}.",
                  "{name} buys {b} {goods} that cost {a} dollars each."],
        "+": ["{He} also pays {b} dollars for {extra}.", "A fee of {b} dollars is added to the bill."],
        "-": ["{He} uses a coupon that takes {b} dollars off.", "The shop gives {obj} a discount of {b} dollars."],
        "*": ["Then {he} places the same order {b} times in total."],
        "/": ["{He} splits the bill equally among {b} people and pays one share."],
        "question": ["How many dollars does {name} pay?", "How much does {name} pay, in dollars?"],
    },
}

_SYMBOLS = {"+": "+", "-": "-", "*": "*", "/": "/"}


@dataclass(frozen=True)
class ArithProblem:
    """One generated problem: its story, its chain and its exact answer."""

    level: int
    split: str
    index: int
    question: str
    start: int
    steps: tuple[Step, ...]
    answer: int

    @property
    def id(self) -> str:
        return f"Arith-L{self.level}-{self.split}-{self.index}"

    @property
    def solution(self) -> str:
        """Worked solution: one line per operation, then the boxed answer (the format `cot` asks for)."""
        lines, value = [], self.start
        for (operation, operand), result in zip(self.steps, evaluate(self.start, self.steps)):
            lines.append(f"{value} {_SYMBOLS[operation]} {operand} = {result}")
            value = result
        lines.append(f"The answer is \\boxed{{{self.answer}}}.")
        return "\n".join(lines)

    def to_record(self) -> dict[str, Any]:
        """The dataset's own schema: what `python -m data.arith` writes and the registry's mapper reads."""
        return {"id": self.id, "question": self.question, "answer": self.answer, "level": self.level,
                "split": self.split, "index": self.index, "start": self.start,
                "steps": [list(step) for step in self.steps], "solution": self.solution}


def _draw_chain(level: Level, rng: random.Random) -> tuple[int, tuple[Step, ...]] | None:
    """A random chain of the level, or None when the draw breaks a rule (the caller draws again)."""
    operations = [rng.choice(level.operations) for _ in range(rng.randint(*level.num_ops))]
    start = rng.randint(*level.start)
    steps, value = [], start
    for operation in operations:
        if operation == "+":
            operand = rng.randint(*level.addend)
        elif operation == "-":
            high = min(level.addend[1], value - 1)  # something is always left
            if high < level.addend[0]:
                return None
            operand = rng.randint(level.addend[0], high)
        elif operation == "*":
            operand = rng.randint(*level.factor)
        else:
            divisors = [d for d in range(level.factor[0], min(level.factor[1], value - 1) + 1) if value % d == 0]
            if not divisors:
                return None
            operand = rng.choice(divisors)
        value = apply(value, operation, operand)
        if value > level.max_value:
            return None
        steps.append((operation, operand))
    return start, tuple(steps)


def _tell(start: int, steps: tuple[Step, ...], spell_out: bool, rng: random.Random) -> str:
    """The chain as a word problem."""
    opens_with_product = steps[0][0] == "*"
    theme = THEMES[rng.choice(["objects", "money", "prices"] if opens_with_product else ["objects", "money"])]
    name, he = rng.choice(NAMES)
    friend = rng.choice(FRIENDS)
    singular, plural = rng.choice(GOODS)
    fields = {"name": name, "he": he, "He": he.capitalize(), "his": "his" if he == "he" else "her",
              "obj": "him" if he == "he" else "her", "friend": friend, "Friend": friend[0].upper() + friend[1:],
              "items": rng.choice(ITEMS), "container": rng.choice(CONTAINERS), "good": singular, "goods": plural,
              "extra": rng.choice(EXTRAS)}
    rest = steps
    if opens_with_product and (theme is THEMES["prices"] or rng.random() < 0.5):
        sentences = [rng.choice(theme["open*"]).format(a=start, b=steps[0][1], **fields)]
        rest = steps[1:]
    else:
        sentences = [rng.choice(theme["open"]).format(a=start, **fields)]
    for operation, operand in rest:
        sentences.append(rng.choice(theme[operation]).format(b=operand, **fields))
    if spell_out:
        sentences.append(f"Calculate {expression(start, steps)}.")
    else:
        sentences.append(rng.choice(theme["question"]).format(**fields))
    return " ".join(sentences)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"Arith has splits {', '.join(SPLITS)}; got --split {split!r}")


def _level(level: int) -> Level:
    if level not in LEVELS:
        raise DataError(f"Arith has levels {min(LEVELS)}-{max(LEVELS)}; got {level!r}")
    return LEVELS[level]


def generate(level: int, split: str, num_problems: int | None = None) -> Iterator[ArithProblem]:
    """The split's problems in order, lazily: the first `num_problems` (default: DEFAULT_SIZES[split]).

    Fewer come out when the level's signature space is used up (level 1 holds a few hundred in all).
    """
    spec = _level(level)
    _check_split(split)
    num_problems = DEFAULT_SIZES[split] if num_problems is None else num_problems
    rng = random.Random(f"agentark-arith-L{level}-{split}")  # a str seed hashes the same in every process
    seen_signatures: set[tuple[int, tuple[Step, ...]]] = set()
    seen_questions: set[str] = set()
    index = misses = 0
    while index < num_problems and misses < MAX_MISSES:
        chain = _draw_chain(spec, rng)
        if chain is None or chain in seen_signatures or signature_split(*chain) != split:
            misses += 1
            continue
        question = _tell(*chain, spec.spell_out, rng)
        if question in seen_questions:
            misses += 1
            continue
        seen_signatures.add(chain)
        seen_questions.add(question)
        misses = 0
        start, steps = chain
        yield ArithProblem(level, split, index, question, start, steps, evaluate(start, steps)[-1])
        index += 1


def problem(level: int, split: str, index: int) -> ArithProblem:
    """Problem `index` of a split (0-based)."""
    for item in generate(level, split, index + 1):
        if item.index == index:
            return item
    raise DataError(f"Arith level {level} {split} holds fewer than {index + 1} problems")


def iter_raw_records(level: int, split: str) -> Iterator[RawRecord]:
    """A generated split as raw records, the same schema a written file has (for `data.registry`)."""
    _check_split(split)
    for item in generate(level, split):
        yield RawRecord(item.to_record(), f"Arith level {level} ({split}) problem {item.index}", item.index)


def write_jsonl(path: str | Path, problems: Iterator[ArithProblem] | Sequence[ArithProblem]) -> int:
    """Write problems as JSON lines in one atomic step; returns how many."""
    lines = [json.dumps(item.to_record(), ensure_ascii=False) + "\n" for item in problems]
    atomic_write_text(path, lines)
    return len(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data.arith", description=__doc__.split("\n\n")[0])
    parser.add_argument("--level", type=int, default=CALIBRATED_LEVEL,
                        help="; ".join(f"{n}: {spec.description}" for n, spec in LEVELS.items()))
    parser.add_argument("--split", default="test", choices=SPLITS, help="which split to generate")
    parser.add_argument("--num_problems", type=int, default=None,
                        help=f"how many (default: {DEFAULT_SIZES['test']} test, {DEFAULT_SIZES['train']} train)")
    parser.add_argument("--output", required=True, help="the JSONL file to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.num_problems is not None and args.num_problems < 0:
            raise DataError(f"--num_problems must be >= 0, got {args.num_problems}")
        count = write_jsonl(args.output, generate(args.level, args.split, args.num_problems))
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {count} Arith level {args.level} {args.split} problems to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
