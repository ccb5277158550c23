"""SFT data builders on hand-made labeled files whose outcomes are known."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill import build_data
from distill.corrections import TRANSITION

BOX = "\\boxed{{{}}}"


def sol(sid, answer, correct, agent=0, round_=0, role="debater", method="llm_debate", text=None, **extra):
    if text is None:
        text = f"Agent {agent} round {round_} works it out.\n\nSo the answer is {BOX.format(answer)}."
    return {"id": sid, "text": text, "steps": text.split("\n\n"), "is_correct": correct, "answer": str(answer),
            "agent": agent, "role": role, "round": round_, "method": method, "model": "m", "judge": "rule",
            **extra}


def record(qid, solutions, gt="5", query="What is 2 + 3?", source="Arith", **extra):
    return {"id": qid, "query": query, "gt": gt, "source": source, "solutions": solutions,
            "labels": [s.get("is_correct") for s in solutions], **extra}


def write_labeled(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def run(tmp_path, records, *flags, out="out.jsonl", monkeypatch=None):
    labeled = write_labeled(tmp_path / "labeled.jsonl", records)
    out_path = tmp_path / out
    code = build_data.main(["--input", str(labeled), "--out", str(out_path), *flags])
    rows = [json.loads(line) for line in out_path.read_text().splitlines()] if out_path.exists() else None
    return code, rows, out_path


def targets(rows):
    return [row["completion"][0]["content"] for row in rows]


def test_rsft_picks_the_aggregators_correct_solution(tmp_path):
    solutions = [sol(1, 5, True, agent=0), sol(2, 4, False, agent=1), sol(3, 5, True, agent=2),
                 sol(4, 5, True, agent=0, round_=1, role="aggregator", text="Aggregating: \\boxed{5}")]
    code, rows, _ = run(tmp_path, [record("q1", solutions)], "--strategy", "rsft")
    assert code == 0 and len(rows) == 1
    assert targets(rows) == ["Aggregating: \\boxed{5}"]
    assert rows[0]["meta"]["picked_by"] == "aggregator" and rows[0]["meta"]["solution_id"] == 4
    assert rows[0]["completion"][0]["role"] == "assistant"


def test_rsft_without_aggregator_takes_the_majority_and_says_when_the_majority_was_wrong(tmp_path):
    majority = record("q1", [sol(1, 4, False, agent=0), sol(2, 5, True, agent=1), sol(3, 5, True, agent=2)])
    minority = record("q2", [sol(1, 4, False, agent=0), sol(2, 4, False, agent=1), sol(3, 5, True, agent=2)])
    code, rows, out = run(tmp_path, [majority, minority], "--strategy", "rsft")
    assert code == 0
    assert [(r["meta"]["question_id"], r["meta"]["solution_id"], r["meta"]["picked_by"]) for r in rows] == \
        [("q1", 2, "majority"), ("q2", 3, "minority")]
    stats = json.loads(out.with_name("out.stats.json").read_text())
    assert stats["picked_by"] == {"majority": 1, "minority": 1}
    assert stats["solutions_dropped"] == {"incorrect": 3, "not_best": 1}


def test_rsft_prefers_the_later_round(tmp_path):
    solutions = [sol(1, 5, True, agent=0, round_=0), sol(2, 5, True, agent=1, round_=1)]
    _, rows, _ = run(tmp_path, [record("q1", solutions)], "--strategy", "rsft")
    assert rows[0]["meta"]["solution_id"] == 2


class FakePRM:
    """Scores each step 0.9, except steps containing 'shaky' (0.1); records what it was asked."""

    def __init__(self):
        self.calls = []

    def score_many(self, items, batch_size=16):
        self.calls.append(items)
        return [[0.1 if "shaky" in step else 0.9 for step in steps] for _, steps in items]


def test_rsft_with_a_prm_picks_its_top_scored_correct_solution(tmp_path):
    fake = FakePRM()
    solutions = [sol(1, 5, True, agent=0, round_=0, role="aggregator",
                     text="A shaky guess.\n\nSo \\boxed{5}"),
                 sol(2, 5, True, agent=1, text="Two plus three.\n\nThat is five, \\boxed{5}"),
                 sol(3, 7, False, agent=2, text="Solid steps.\n\n\\boxed{7}")]
    labeled = write_labeled(tmp_path / "labeled.jsonl", [record("q1", solutions)])
    opts = build_data.BuildOptions(strategy="rsft", input=str(labeled), out=str(tmp_path / "o.jsonl"),
                                   prm="outputs/prm")
    result = build_data.build(opts, load_prm=lambda path: fake)
    assert [r["meta"]["solution_id"] for r in result.rows] == [2]
    assert result.rows[0]["meta"]["picked_by"] == "prm" and result.rows[0]["meta"]["prm_score"] == pytest.approx(0.9)
    # Only correct solutions are scored; the PRM reads the question as the agents saw it, and each solution's steps.
    (items,) = fake.calls
    assert [steps for _, steps in items] == [solutions[0]["steps"], solutions[1]["steps"]]
    assert items[0][0].startswith("What is 2 + 3?")


def test_prm_flag_goes_through_the_lazy_loader(tmp_path, monkeypatch):
    fake = FakePRM()
    import prm

    monkeypatch.setattr(prm, "load", lambda path: fake)
    solutions = [sol(1, 5, True, agent=0, text="shaky\n\n\\boxed{5}"),
                 sol(2, 5, True, agent=1, text="ok\n\n\\boxed{5}")]
    code, rows, _ = run(tmp_path, [record("q1", solutions)], "--strategy", "rsft", "--prm", "some/prm")
    assert code == 0 and rows[0]["meta"]["solution_id"] == 2 and fake.calls


def test_da_removes_near_duplicates_and_caps_per_question(tmp_path):
    base = "First add two and three to get five. Then check it by counting up from two."
    solutions = [sol(1, 5, True, agent=0, text=f"{base} \\boxed{{5}}"),
                 sol(2, 5, True, agent=1, text=f"{base} Done. \\boxed{{5}}"),  # near-duplicate of 1
                 sol(3, 5, True, agent=2, text="Count: 3, 4, 5. \\boxed{5}"),
                 sol(4, 5, True, agent=3, text="Five is two more than three, \\boxed{5}"),
                 sol(5, 5, True, agent=4, text="Using a number line we land on \\boxed{5}"),
                 sol(6, 4, False, agent=5)]
    code, rows, out = run(tmp_path, [record("q1", solutions)], "--strategy", "da", "--max_per_question", "2",
                          "--dedup_threshold", "0.9")
    assert code == 0
    assert [r["meta"]["solution_id"] for r in rows] == [1, 3]
    stats = json.loads(out.with_name("out.stats.json").read_text())
    assert stats["solutions_dropped"] == {"incorrect": 1, "near_duplicate": 1, "over_max_per_question": 2}
    assert stats["examples"] == 2 and stats["questions_covered"] == 1


def test_da_corrections_render_one_agent_checking_its_first_attempt(tmp_path):
    debate = record("q1", [sol(1, 4, False, agent=0, round_=0, text="2 + 3 = 4, so \\boxed{4}"),
                           sol(2, 5, True, agent=1, round_=0, text="Adding gives \\boxed{5}"),
                           sol(3, 5, True, agent=0, round_=1, text="Recounting: 2 + 3 = 5, \\boxed{5}"),
                           sol(4, 5, True, agent=1, round_=1, text="Still \\boxed{5}")])
    one_round = record("q2", [sol(1, 5, True, agent=0), sol(2, 5, True, agent=1, text="Yes \\boxed{5}")])
    never_wrong = record("q3", [sol(1, 5, True, agent=0, round_=0), sol(2, 5, True, agent=0, round_=1,
                                                                      text="Again \\boxed{5}")])
    code, rows, out = run(tmp_path, [debate, one_round, never_wrong], "--strategy", "da", "--include_corrections")
    assert code == 0
    corrections = [r for r in rows if r["meta"]["kind"] == "correction"]
    assert len(corrections) == 1
    assert corrections[0]["completion"][0]["content"] == \
        f"2 + 3 = 4, so \\boxed{{4}}\n\n{TRANSITION}\n\nRecounting: 2 + 3 = 5, \\boxed{{5}}"
    assert corrections[0]["meta"]["question_id"] == "q1" and corrections[0]["meta"]["wrong_round"] == 0
    stats = json.loads(out.with_name("out.stats.json").read_text())
    assert stats["corrections"]["examples"] == 1
    assert stats["corrections"]["questions_no_rounds_to_compare"] == 1
    assert stats["corrections"]["questions_no_wrong_to_right"] == 1
    assert stats["correction_examples"] == 1


def test_wrong_unjudged_truncated_and_unreadable_solutions_never_enter(tmp_path):
    solutions = [sol(1, 4, False, agent=0),
                 sol(2, 5, None, agent=1),
                 sol(3, 5, True, agent=2, truncated=True),
                 sol(4, 5, True, agent=3, text="I think it is 5 but let me see \\boxed{6}"),  # text disagrees
                 sol(5, 5, True, agent=4, text="The sum is \\boxed{5}"),  # record disagrees (set below)
                 sol(6, 5, True, agent=5, text="   "),
                 sol(7, 5, True, agent=6, text="no number here at all"),
                 sol(8, 6, True, agent=7, text="Adding gives \\boxed{6}")]  # a judge's mistake: regrades wrong
    solutions[4]["answer"] = "6"
    code, rows, out = run(tmp_path, [record("q1", solutions)], "--strategy", "da")
    assert code == 0 and rows == []
    stats = json.loads(out.with_name("out.stats.json").read_text())
    assert stats["solutions_dropped"] == {"answer_mismatch": 2, "empty_text": 1, "incorrect": 1,
                                          "no_final_answer": 1, "no_verdict": 1, "regrade_incorrect": 1,
                                          "truncated": 1}
    assert stats["questions_without_example"] == {"no_correct_solution": 1}


def test_cot_solutions_are_left_out_unless_asked(tmp_path):
    solutions = [sol(1, 5, True, agent=0, role="solver", method="cot")]
    _, rows, out = run(tmp_path, [record("q1", solutions)], "--strategy", "rsft")
    assert rows == [] and json.loads(out.with_name("out.stats.json").read_text())["solutions_dropped"] == \
        {"method_excluded": 1}
    _, rows, _ = run(tmp_path, [record("q1", solutions)], "--strategy", "rsft", "--exclude_methods", "")
    assert len(rows) == 1


async def _cot_sent(sample, task_type, config):
    from engine.scripted_backend import ScriptedEngine
    from methods.cot.cot import CoT

    engine = ScriptedEngine(lambda messages, params: "\\boxed{5}")
    await CoT(engine, config, task_type=task_type).solve(sample)
    return engine.calls[0][0]


@pytest.mark.parametrize("cot_config", ["config_main", "careful"])
async def test_prompts_are_what_cot_sends(tmp_path, cot_config):
    from data.schema import Sample
    from methods.cot.cot import CoT, CoTConfig

    config_flag = cot_config
    config = CoT.load_config("config_main")
    if cot_config == "careful":
        path = tmp_path / "careful.yaml"
        path.write_text("system_prompt: careful_solver\ntemperature: null\n")
        config_flag, config = str(path), CoTConfig(system_prompt="careful_solver")
    math_q = record("m1", [sol(1, 5, True)])
    choice_q = record("c1", [sol(1, "B", True, text="Two is right. The answer is (B)")], gt="B",
                      query="Which is even?", source="MedMCQA", choices=["one", "two", "three", "five"])
    _, rows, _ = run(tmp_path, [math_q, choice_q], "--strategy", "rsft", "--cot_config", config_flag)
    assert len(rows) == 2
    for row, (rec, task_type) in zip(rows, [(math_q, "math"), (choice_q, "multiple_choice")]):
        sample = Sample(id=rec["id"], query=rec["query"], gt=rec["gt"], source=rec["source"],
                        choices=rec.get("choices"))
        assert row["prompt"] == await _cot_sent(sample, task_type, config)
    assert ("system" in [m["role"] for m in rows[0]["prompt"]]) == (cot_config == "careful")


@pytest.mark.parametrize("bad, message", [
    ({"gt": None}, "field 'gt'"),
    ({"solutions": "nope"}, "field 'solutions'"),
    ({"source": "NoSuchSet"}, "field 'source'"),
    ({"solutions": [{"text": "x", "is_correct": "yes", "agent": 0, "round": 0, "role": "r", "method": "m"}]},
     "field 'solutions'[0].is_correct"),
])
def test_bad_input_names_file_line_and_field_and_writes_nothing(tmp_path, capsys, bad, message):
    good = record("q1", [sol(1, 5, True)])
    broken = {**record("q2", [sol(1, 5, True)]), **bad}
    code, rows, out = run(tmp_path, [good, broken], "--strategy", "da")
    assert code == 2 and rows is None and not out.with_name("out.stats.json").exists()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"labeled.jsonl:2: {message}" in err


def test_bad_flags_exit_2(tmp_path, capsys):
    code, rows, _ = run(tmp_path, [record("q1", [sol(1, 5, True)])], "--strategy", "da", "--dedup_threshold", "1.5")
    assert code == 2 and rows is None and "--dedup_threshold" in capsys.readouterr().err


def test_stats_are_printed_and_written(tmp_path, capsys):
    code, rows, out = run(tmp_path, [record("q1", [sol(1, 5, True), sol(2, 4, False, agent=1)]),
                                     record("q2", [sol(1, 4, False)])], "--strategy", "rsft")
    printed = capsys.readouterr().out
    stats = json.loads(out.with_name("out.stats.json").read_text())
    assert code == 0 and stats["questions"] == 2 and stats["questions_covered"] == 1 and stats["examples"] == 1
    assert stats["mean_completion_chars"] == len(rows[0]["completion"][0]["content"])
    assert "1 examples from 1 of 2 questions" in printed and "incorrect 2" in printed
