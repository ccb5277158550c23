"""Arith: deterministic, exact, train/test disjoint, and loadable through the registry with or without a file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from data import arith
from data.loaders import DataError
from data.registry import get_dataset_spec, load_samples

SAMPLE_FILE = Path(__file__).resolve().parents[1] / "data" / "samples" / "arith.jsonl"


@pytest.mark.parametrize("level", sorted(arith.LEVELS))
def test_same_level_split_index_gives_the_same_problem(level):
    first = list(arith.generate(level, "test", 30))
    again = list(arith.generate(level, "test", 30))
    assert first == again
    assert arith.problem(level, "test", 7) == first[7]
    assert [p.index for p in first] == list(range(len(first)))
    assert first != list(arith.generate(level, "train", 30))


@pytest.mark.parametrize("level", sorted(arith.LEVELS))
def test_answers_are_exact_and_every_intermediate_a_positive_integer(level):
    spec = arith.LEVELS[level]
    for item in arith.generate(level, "train", 300):
        values = arith.evaluate(item.start, item.steps)
        assert values[-1] == item.answer
        assert all(isinstance(v, int) and 1 <= v <= spec.max_value for v in values)
        assert spec.num_ops[0] <= len(item.steps) <= spec.num_ops[1]
        assert item.solution.endswith(f"\\boxed{{{item.answer}}}.")
        assert all(str(operand) in item.question for _, operand in item.steps)


def test_spelled_out_levels_end_with_their_calculation():
    assert arith.expression(12, [("+", 7), ("*", 3), ("-", 2), ("/", 5)]) == "((12 + 7) * 3 - 2) / 5"
    assert arith.expression(4, [("*", 3), ("+", 2)]) == "4 * 3 + 2"
    for level, spec in arith.LEVELS.items():
        for item in arith.generate(level, "test", 50):
            calculation = f"Calculate {arith.expression(item.start, item.steps)}."
            assert item.question.endswith(calculation) == spec.spell_out
            if spec.spell_out:
                assert eval(calculation.removeprefix("Calculate ").rstrip(".")) == item.answer


def test_apply_refuses_inexact_division():
    assert arith.apply(12, "/", 4) == 3
    with pytest.raises(ValueError):
        arith.apply(12, "/", 5)


@pytest.mark.parametrize("level", sorted(arith.LEVELS))
def test_train_and_test_never_share_a_question_or_a_chain(level):
    test = list(arith.generate(level, "test", 1000))
    train = list(arith.generate(level, "train", 3000))
    for items in (test, train):
        assert len({p.question for p in items}) == len(items)
        assert len({(p.start, p.steps) for p in items}) == len(items)
    assert not {p.question for p in test} & {p.question for p in train}
    assert not {(p.start, p.steps) for p in test} & {(p.start, p.steps) for p in train}
    assert all(arith.signature_split(p.start, p.steps) == "test" for p in test)


def test_levels_grow_harder():
    longest = [arith.LEVELS[n].num_ops[1] for n in sorted(arith.LEVELS)]
    largest = [arith.LEVELS[n].max_value for n in sorted(arith.LEVELS)]
    assert longest == sorted(longest) and largest == sorted(largest)
    assert longest[0] == 1 and longest[-1] >= 4
    assert [arith.LEVELS[n].spell_out for n in sorted(arith.LEVELS)] == [True, False, False, False, False]


def test_calibrated_level_has_enough_test_questions():
    assert len(list(arith.generate(arith.CALIBRATED_LEVEL, "test", 200))) == 200


@pytest.mark.parametrize("name", ["Arith", "Arith-L3"])
def test_registry_generates_samples_in_process(name):
    spec = get_dataset_spec(name)
    assert spec.task_type == "math" and spec.hub_id is None and spec.default_split == "test"
    samples = load_samples(name, max_samples=50)
    level = arith.CALIBRATED_LEVEL if name == "Arith" else 3
    assert [s.id for s in samples[:2]] == [f"Arith-L{level}-test-0", f"Arith-L{level}-test-1"]
    for sample, item in zip(samples, arith.generate(level, "test", 50)):
        assert (sample.query, sample.gt, sample.source) == (item.question, str(item.answer), spec.name)
        assert sample.meta["level"] == level and sample.meta["solution"] == item.solution
        assert arith.evaluate(sample.meta["start"], [tuple(s) for s in sample.meta["steps"]])[-1] == int(sample.gt)
    assert len(load_samples(name, split="train", max_samples=20)) == 20
    assert len(load_samples(name, max_samples=100, num_shards=2, shard_id=1)) == 50
    with pytest.raises(DataError, match="splits train, test"):
        load_samples(name, split="validation", max_samples=1)


def test_generated_split_sizes_default_to_1000_test_and_5000_train():
    assert len(load_samples("Arith-L3")) == 1000
    assert len(load_samples("Arith-L3", split="train")) == 5000


@pytest.mark.parametrize("name", ["Arith", "Arith-L3"])
def test_cli_file_loads_back_as_the_generated_samples(tmp_path, name):
    level = arith.CALIBRATED_LEVEL if name == "Arith" else 3
    path = tmp_path / "arith.jsonl"
    assert arith.main(["--level", str(level), "--split", "test", "--num_problems", "25", "--output", str(path)]) == 0
    assert len(path.read_text(encoding="utf-8").splitlines()) == 25
    from_file = load_samples(name, data_path=path)
    assert [s.to_dict() for s in from_file] == [s.to_dict() for s in load_samples(name, max_samples=25)]


def test_cli_refuses_bad_arguments(tmp_path, capsys):
    assert arith.main(["--level", "9", "--output", str(tmp_path / "x.jsonl")]) == 2
    assert "levels 1-5" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_a_file_whose_answer_disagrees_with_its_chain_is_refused(tmp_path):
    record = arith.problem(3, "test", 0).to_record()
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({**record, "answer": record["answer"] + 1}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:1: field 'answer' is .* but the chain"):
        load_samples("Arith-L3", data_path=path)


def test_sample_file_is_the_first_problems_of_the_calibrated_level():
    rows = [json.loads(line) for line in SAMPLE_FILE.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 20
    expected = [p.to_record() for p in arith.generate(arith.CALIBRATED_LEVEL, "test", len(rows))]
    assert rows == expected
    assert get_dataset_spec("Arith").sample_file == SAMPLE_FILE
