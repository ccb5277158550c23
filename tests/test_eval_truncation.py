"""Answers cut off at the token limit are counted and shown; metrics files are strict JSON (issue 7, part 5)."""
import json
import math

import pytest

from eval import math_eval, medmcqa_eval, short_answer_eval
from eval.common import InferenceRecord, strict_json, truncation_of, truncation_summary
from tests.test_eval_cli import read_jsonl, record, write_jsonl


def turn(text, finish_reason=None):
    """A trajectory turn; `finish_reason=None` leaves the field out, as records written before it do."""
    out = {"agent": 0, "role": "solver", "round": 0, "messages": [], "text": text, "answer": None,
           "prompt_tokens": 5, "completion_tokens": 5}
    if finish_reason is not None:
        out["finish_reason"] = finish_reason
    return out


def with_turns(base, turns, count=True):
    """`base` with these turns and (unless count=False) the `num_truncated_turns` inference.py writes."""
    base["trajectory"] = turns
    if count:
        base["num_truncated_turns"] = sum(1 for t in turns if t.get("finish_reason") == "length")
    return base


def as_record(data):
    return InferenceRecord(data, path="x_infer.jsonl", line=1)


def test_the_final_answers_turn_decides_whether_the_answer_was_truncated():
    cut = with_turns(record("a", "1", "1", response="long ... \\boxed{1}"),
                     [turn("first", "stop"), turn("long ... \\boxed{1}", "length")])
    assert truncation_of(as_record(cut)) == (True, True)
    # A voted answer that came from a complete turn, while a later turn was cut off.
    voted = with_turns(record("b", "1", "1", response="ok \\boxed{1}"),
                       [turn("ok \\boxed{1}", "stop"), turn("cut", "length")])
    assert truncation_of(as_record(voted)) == (False, True)
    # The response matches no turn (an aggregate written by the method): the last turn stands for it.
    unmatched = with_turns(record("c", "1", "1", response="aggregate"), [turn("x", "stop"), turn("y", "length")])
    assert truncation_of(as_record(unmatched)) == (True, True)
    # The same text in two turns: the last one is the final answer's turn.
    repeated = with_turns(record("d", "1", "1", response="same"),
                          [turn("same", "length"), turn("same", "stop")])
    assert truncation_of(as_record(repeated)) == (False, True)
    clean = with_turns(record("e", "1", "1"), [turn("t", "stop")])
    assert truncation_of(as_record(clean)) == (False, False)


def test_records_without_finish_reasons_are_unknown_not_untruncated():
    old = with_turns(record("a", "1", "1"), [turn("t"), turn("u")], count=False)
    assert truncation_of(as_record(old)) == (None, None)
    assert truncation_of(as_record(record("b", "1", "1"))) == (None, None)  # no turns, no count
    # Only a count (no per-turn reasons): zero is known; a nonzero count cannot place the answer.
    assert truncation_of(as_record({**old, "num_truncated_turns": 0})) == (False, False)
    assert truncation_of(as_record({**old, "num_truncated_turns": 2})) == (None, True)
    # Per-turn reasons without the count (a writer that adds only turns): counted from the turns.
    assert truncation_of(as_record(with_turns(record("c", "1", "1", response="u"),
                                              [turn("t", "stop"), turn("u", "length")], count=False))) == (True, True)
    summary = truncation_summary([as_record(old), as_record(record("b", "1", "1"))])
    assert summary == {"num_truncated_answers": None, "num_records_with_truncated_turns": None,
                       "truncation_known": 0}


def test_a_failed_record_has_no_truncated_answer_but_counts_its_truncated_turns():
    failed = with_turns(record("a", "1", None, response="", error="EngineError: boom"), [turn("cut", "length")])
    assert truncation_of(as_record(failed)) == (False, True)


def _math_records():
    return [
        with_turns(record("a", "4", "4"), [turn("... \\boxed{4}", "stop")]),
        with_turns(record("b", "5", None, response="Let me compute 2+3 step by step and"),
                   [turn("Let me compute 2+3 step by step and", "length")]),
        with_turns(record("c", "6", "6", response="\\boxed{6}"),
                   [turn("\\boxed{6}", "stop"), turn("a critic who ran out of", "length")]),
        record("d", "7", "7"),  # written before finish reasons were recorded
    ]


def test_math_eval_counts_truncated_answers_in_metrics_scores_and_output(tmp_path, capsys):
    infer = write_jsonl(tmp_path / "cot_infer.jsonl", _math_records())
    assert math_eval.main(["--input_file", str(infer), "--no_progress", "--num_workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 of 3 with finish reasons (of 4) final answers were cut off at the token limit " \
           "(raise --model_max_tokens)" in out
    assert "2 of 3 with finish reasons (of 4) records have a turn cut off" in out
    metrics = json.loads((tmp_path / "cot_infer_metrics.json").read_text())
    assert (metrics["num_truncated_answers"], metrics["num_records_with_truncated_turns"],
            metrics["truncation_known"]) == (1, 2, 3)
    rows = read_jsonl(tmp_path / "cot_infer_scores.jsonl")
    assert [r["truncated"] for r in rows] == [False, True, False, None]


def test_old_records_report_truncation_as_unknown(tmp_path, capsys):
    infer = write_jsonl(tmp_path / "cot_infer.jsonl", [record("a", "4", "4"), record("b", "5", "5")])
    math_eval.main(["--input_file", str(infer), "--no_progress", "--num_workers", "1"])
    out = capsys.readouterr().out
    assert "cut off" not in out and "truncation unknown" in out
    metrics = json.loads((tmp_path / "cot_infer_metrics.json").read_text())
    assert metrics["num_truncated_answers"] is None and metrics["truncation_known"] == 0
    assert [r["truncated"] for r in read_jsonl(tmp_path / "cot_infer_scores.jsonl")] == [None, None]


def test_no_truncation_prints_no_truncation_line(tmp_path, capsys):
    infer = write_jsonl(tmp_path / "cot_infer.jsonl", [with_turns(record("a", "4", "4"), [turn("t", "stop")])])
    math_eval.main(["--input_file", str(infer), "--no_progress", "--num_workers", "1"])
    out = capsys.readouterr().out
    assert "cut off" not in out and "truncation unknown" not in out
    metrics = json.loads((tmp_path / "cot_infer_metrics.json").read_text())
    assert (metrics["num_truncated_answers"], metrics["truncation_known"]) == (0, 1)


def test_medmcqa_and_short_answer_eval_count_truncated_answers(tmp_path, capsys):
    choices = ["w", "x", "y", "z"]
    infer = write_jsonl(tmp_path / "mc" / "cot_infer.jsonl", [
        with_turns(record("a", "B", "B", choices=choices), [turn("The answer is (B)", "stop")]),
        with_turns(record("b", "C", None, response="Option (A) looks", choices=choices),
                   [turn("Option (A) looks", "length")]),
    ])
    medmcqa_eval.main(["--input_file", str(infer)])
    assert "1 of 2 final answers were cut off at the token limit (raise --model_max_tokens)" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "mc" / "cot_infer_metrics.json").read_text())
    assert (metrics["num_truncated_answers"], metrics["num_records_with_truncated_turns"]) == (1, 1)
    assert [r["truncated"] for r in read_jsonl(tmp_path / "mc" / "cot_infer_scores.jsonl")] == [False, True]

    infer = write_jsonl(tmp_path / "sa" / "cot_infer.jsonl", [
        with_turns(record("a", "Paris", None, response="Answer: Paris"), [turn("Answer: Paris", "stop")]),
        with_turns(record("b", "Rome", None, response="The city is"), [turn("The city is", "length")]),
        record("c", "Oslo", "Oslo"),
    ])
    short_answer_eval.main(["--input_file", str(infer)])
    assert "1 of 2 with finish reasons (of 3) final answers were cut off" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "sa" / "cot_infer_metrics.json").read_text())
    assert (metrics["num_truncated_answers"], metrics["truncation_known"]) == (1, 2)
    assert [r["truncated"] for r in read_jsonl(tmp_path / "sa" / "cot_infer_scores.jsonl")] == [False, True, None]


# ---- strict JSON -------------------------------------------------------------------------------------------

def _strict_loads(text):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("tool", ["math", "medmcqa", "short_answer"])
def test_metrics_file_is_strict_json_when_latency_is_missing(tmp_path, tool):
    base = record("a", "B", "B", choices=["w", "x", "y", "z"])
    del base["latency_s"]  # no latency anywhere: the mean latency is NaN in memory
    infer = write_jsonl(tmp_path / "cot_infer.jsonl", [base])
    if tool == "math":
        math_eval.main(["--input_file", str(infer), "--no_progress", "--num_workers", "1"])
    elif tool == "medmcqa":
        medmcqa_eval.main(["--input_file", str(infer)])
    else:
        short_answer_eval.main(["--input_file", str(infer)])
    metrics = _strict_loads((tmp_path / "cot_infer_metrics.json").read_text())
    assert metrics["cost"]["latency_s_per_question"] is None
    for line in (tmp_path / "cot_infer_scores.jsonl").read_text().splitlines():
        _strict_loads(line)


def test_strict_json_writes_null_for_non_finite_numbers():
    import numpy as np

    data = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": {"d": (np.float64("nan"), 2)}, "e": "NaN"}
    assert _strict_loads(strict_json(data)) == {"a": None, "b": [None, None, 1.5], "c": {"d": [None, 2]}, "e": "NaN"}
