"""label.py with the rule judge: solutions, labels, several inputs, resume after kill, bad input, shards, stats."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

import label
from data.records import RecordStore, read_records, shard_path
from data.schema import Sample
from engine.base import SamplingParams
from engine.scripted_backend import ScriptedEngine
from labeling.judge import JudgeItem, Verdict
from labeling.labeler import LabelOptions, cohen_kappa, label_stats, run_labeling, stats_path
from labeling.rule_judge import RuleJudge
from labeling.solutions import non_solution_roles, select_solutions
from methods import REGISTRY, get_method_class
from methods.runner import run_method

ROOT = Path(__file__).resolve().parents[1]
NEVER_SOLUTIONS = {"critic", "verifier", "ranker", "evaluator", "role_assigner"}


# ---------------------------------------------------------------- helpers

def turn(agent: int, role: str, round_: int, text: str, answer: str | None = None, finish: str = "stop") -> dict:
    return {"agent": agent, "role": role, "round": round_, "messages": [{"role": "user", "content": "q"}],
            "text": text, "answer": answer, "prompt_tokens": 3, "completion_tokens": 5, "finish_reason": finish}


def record(qid: str, gt: str, trajectory: list[dict], method: str = "llm_debate", query: str | None = None,
           **extra) -> dict:
    out = {"id": qid, "query": query or f"question {qid}", "gt": gt, "source": "GSM8K", "method": method,
           "model": "teacher", "config": {}, "response": "", "answer": None, "trajectory": trajectory,
           "token_stats": {}, "latency_s": 0.1}
    out.update(extra)
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def run_label(*argv: str) -> int:
    return label.main([*map(str, argv), "--no_progress", "--log_level", "WARNING"])


def load(path: Path) -> list[dict]:
    return list(read_records(path))


def debate_record(qid: str, gt: str, answers: list[list[str]], **kwargs) -> dict:
    """answers[round][agent] -> llm_debate turns (texts with two paragraphs, answer field set)."""
    trajectory = [turn(agent, "debater", r, f"Agent {agent} thinks.\n\nThe answer is \\boxed{{{a}}}.", a)
                  for r, row in enumerate(answers) for agent, a in enumerate(row)]
    return record(qid, gt, trajectory, **kwargs)


# ---------------------------------------------------------------- the rule judge

def test_rule_judge_math_choice_and_short_answer():
    judge = RuleJudge(f1_threshold=0.5, num_workers=1)
    items = [
        JudgeItem("q", "12", "... \\boxed{12}", "12", "math"),
        JudgeItem("q", "12", "...", "12.0", "math"),
        JudgeItem("q", "1200", "...", "1,200", "math"),
        JudgeItem("q", "3\\sqrt{7}", "...", "\\sqrt{63}", "math"),  # only the symbolic check can tell
        JudgeItem("q", "12", "...", "13", "math"),
        JudgeItem("q", "12", "so the answer is \\boxed{12}", None, "math"),  # no answer field: extracted
        JudgeItem("q", "12", "I do not know", None, "math"),
        JudgeItem("q", "B", "...", "B", "multiple_choice", choices=["a", "b", "c", "d"]),
        JudgeItem("q", "B", "...", "C", "multiple_choice", choices=["a", "b", "c", "d"]),
        JudgeItem("q", "B", "The answer is (B).", None, "multiple_choice", choices=["a", "b", "c", "d"]),
        JudgeItem("q", "Paris", "...", "Paris", "short_answer"),
        JudgeItem("q", "the city of Paris", "...", "Paris city", "short_answer"),  # F1 0.8
        JudgeItem("q", "the city of Paris", "...", "Lyon", "short_answer"),
        JudgeItem("q", ["Paris", "Lutetia"], "...", "Lutetia", "short_answer"),  # any reference
    ]
    verdicts = asyncio.run(judge.judge_many(items))
    assert [v.is_correct for v in verdicts] == [True, True, True, True, False, True, False, True, False, True,
                                                True, True, False, True]
    assert {v.judge for v in verdicts} == {"rule"}
    assert verdicts[3].detail == "symbolic_equal" and verdicts[11].detail == "token_f1=0.800"


def test_rule_judge_threshold_is_inclusive_and_checked():
    item = JudgeItem("q", "red blue green pink", "...", "red blue", "short_answer")  # precision 1, recall 0.5: F1 0.667
    assert RuleJudge(f1_threshold=0.667).judge_many_sync([item])[0].is_correct is False
    assert RuleJudge(f1_threshold=2 / 3).judge_many_sync([item])[0].is_correct is True
    with pytest.raises(ValueError, match="f1_threshold"):
        RuleJudge(f1_threshold=1.5)


def test_rule_judge_grades_a_repeated_pair_once(monkeypatch):
    import labeling.rule_judge as rule_judge

    calls = []
    real = rule_judge.grade_math_many

    def counting(pairs, **kwargs):
        calls.append(list(pairs))
        return real(pairs, **kwargs)

    monkeypatch.setattr(rule_judge, "grade_math_many", counting)
    judge = RuleJudge(num_workers=1)
    items = [JudgeItem("q", "3\\sqrt{7}", "...", "\\sqrt{63}", "math")] * 5
    assert all(v.is_correct for v in judge.judge_many_sync(items))
    assert all(v.is_correct for v in judge.judge_many_sync(items[:2]))  # remembered across batches
    assert calls == [[("\\sqrt{63}", "3\\sqrt{7}")]]


# ---------------------------------------------------------------- labelling a file with known correctness

def test_math_file_labels_match_known_correctness(tmp_path, capsys):
    records = [
        debate_record("q1", "5", [["5", "6", "5"], ["5", "5", "5"]]),
        debate_record("q2", "1200", [["1,200", "1200.0", "12"], ["\\frac{2400}{2}", "1200", "120"]]),
        debate_record("q3", "7", [["1", "2", "3"], ["7", "8", "9"]]),
    ]
    source = write_jsonl(tmp_path / "run" / "llm_debate_infer.jsonl", records)
    assert run_label("--input", source, "--dataset_name", "GSM8K") == 0
    output = tmp_path / "run" / "llm_debate_labeled.jsonl"  # the default: beside the input
    labeled = load(output)
    assert [r["id"] for r in labeled] == ["q1", "q2", "q3"]
    expected = {"q1": [True, True, True], "q2": [True, True, False], "q3": [True, False, False]}
    for r in labeled:
        assert r["labels"] == expected[r["id"]] == [s["is_correct"] for s in r["solutions"]]
        assert set(r) >= {"id", "query", "gt", "solutions", "labels", "source"}
        for number, s in enumerate(r["solutions"], start=1):
            assert s["id"] == number
            assert (s["role"], s["round"], s["method"], s["model"]) == ("debater", 1, "llm_debate", "teacher")
            assert s["steps"] == s["text"].split("\n\n") and len(s["steps"]) == 2
            assert s["judge"] == "rule" and s["judge_detail"]
        assert [s["agent"] for s in r["solutions"]] == [0, 1, 2]
    out = capsys.readouterr().out
    assert "solutions: 9, correct: 6 (66.7%)" in out
    assert "both correct and incorrect solutions (PRM training can use): 2" in out
    stats = json.loads(stats_path(output).read_text())
    assert stats["labels"]["by_method"]["llm_debate"]["accuracy"] == round(6 / 9, 4)
    assert stats["labels"]["by_round"]["llm_debate"] == {"1": {"solutions": 9, "correct": 6, "unknown": 0,
                                                              "accuracy": round(6 / 9, 4)}}
    assert stats["labels"]["questions_mixed"] == 2 and stats["labels"]["questions_all_correct"] == 1
    assert stats["run"]["judge"] == "rule"


def test_multiple_choice_and_short_answer_files(tmp_path):
    choices = ["Aspirin", "Heparin", "Warfarin", "Insulin"]
    mc = [record("m1", "B", [turn(0, "solver", 0, "It thins blood. The answer is (B)."),
                             turn(1, "solver", 0, "The answer is C.", "C")], method="cot", choices=choices,
                 source="MedMCQA")]
    source = write_jsonl(tmp_path / "mc_infer.jsonl", mc)
    assert run_label("--input", source, "--dataset_name", "MedMCQA", "--output", tmp_path / "mc.jsonl") == 0
    [labeled] = load(tmp_path / "mc.jsonl")
    assert labeled["labels"] == [True, False] and labeled["choices"] == choices
    assert labeled["solutions"][0]["answer"] == "B"  # extracted when the turn had none

    qa = [record("s1", "the Eiffel tower", [turn(0, "solver", 0, "Answer: Eiffel tower", "Eiffel tower"),
                                            turn(1, "solver", 0, "Answer: the Louvre", "the Louvre")],
                 method="cot", source="HotpotQA", context="Paris has towers.")]
    source = write_jsonl(tmp_path / "qa_infer.jsonl", qa)
    out = tmp_path / "qa.jsonl"
    assert run_label("--input", source, "--dataset_name", "HotpotQA", "--judge", "rule", "--output", out) == 0
    [labeled] = load(out)
    assert labeled["labels"] == [True, False] and labeled["context"] == "Paris has towers."
    assert labeled["solutions"][0]["judge_detail"] == "token_f1=1.000"
    out.unlink()
    assert run_label("--input", source, "--dataset_name", "HotpotQA", "--judge", "rule", "--output", out,
                     "--f1_threshold", "1.0") == 0
    assert load(out)[0]["labels"] == [True, False]


# ---------------------------------------------------------------- which turns are solutions

# One reply every role can read: ratings and a ranking (DyLAN), agreement and a verdict (AgentVerse), a
# verification (MAV), and the final answer last, where answer extraction looks.
SCRIPTED_REPLY = ("Step 1: 2 + 3 = 5.\nScores: [5, 4, 3]\n[1, 2]\n[Agree]\nCorrectness: 1\n"
                  "FINAL VERIFICATION ANSWER: True\n\nThe answer is \\boxed({answer}).")


def _responder(messages, params: SamplingParams) -> str:
    # Agents answer differently (by seed) so DyLAN runs every round and its ranker turn happens.
    answer = 5 + (params.seed or 0) % 3
    return SCRIPTED_REPLY.replace("\\boxed({answer})", f"\\boxed{{{answer}}}")


def _run_method_to_file(method_name: str, path: Path, **config) -> None:
    cls = get_method_class(method_name)
    engine = ScriptedEngine(_responder, defaults=SamplingParams(temperature=0.7, max_tokens=64))
    base = cls.load_config().to_dict()
    base.update(config)
    method = cls(engine, cls.Config.from_dict(base), task_type="math", seed=0)
    samples = [Sample(id=f"q{i}", query=f"Tom has 2 apples and buys {i} more?", gt="5", source="GSM8K")
               for i in range(2)]
    asyncio.run(run_method(method, engine, samples, RecordStore(path), progress=False))


EXPECTED_SOLUTION_ROLES = {
    "cot": {"solver"}, "self_consistency": {"solver", "aggregator"}, "llm_debate": {"debater", "aggregator"},
    "dylan": {"debater"}, "agentverse": {"solver"}, "mav": {"solver"},
}
METHOD_CONFIG = {"self_consistency": {"use_aggregator": True}, "llm_debate": {"use_aggregator": True}}


@pytest.mark.parametrize("method_name", sorted(REGISTRY))
def test_review_turns_never_become_solutions_in_real_runs(method_name, tmp_path):
    source = tmp_path / f"{method_name}_infer.jsonl"
    _run_method_to_file(method_name, source, **METHOD_CONFIG.get(method_name, {}))
    runs = load(source)
    roles_run = {t["role"] for r in runs for t in r["trajectory"]}
    for all_rounds in (False, True):
        out = tmp_path / f"labeled_{all_rounds}.jsonl"
        assert run_label("--input", source, "--dataset_name", "GSM8K", "--output", out,
                         *(["--all_rounds"] if all_rounds else [])) == 0
        labeled = load(out)
        roles = {s["role"] for r in labeled for s in r["solutions"]}
        assert roles == EXPECTED_SOLUTION_ROLES[method_name], (all_rounds, roles, roles_run)
        assert not roles & NEVER_SOLUTIONS
        for r, run in zip(labeled, runs):
            solution_turns = [t for t in run["trajectory"] if t["role"] not in NEVER_SOLUTIONS]
            if all_rounds:
                assert len(r["solutions"]) == len(solution_turns)
            else:  # each agent's last solution
                assert len(r["solutions"]) == len({(t["agent"], t["role"]) for t in solution_turns})
    # The runs did produce the turns that must be left out, so the test means something.
    expected_reviews = {"agentverse": {"critic", "evaluator", "role_assigner"}, "mav": {"verifier"},
                        "dylan": {"ranker"}}.get(method_name, set())
    assert expected_reviews <= roles_run
    assert non_solution_roles(method_name) >= NEVER_SOLUTIONS


def test_each_agent_last_solution_all_rounds_and_truncation():
    trajectory = [turn(0, "debater", 0, "a0", "1"), turn(1, "debater", 0, "b0", "2"),
                  turn(0, "debater", 1, "a1", "3"), turn(1, "debater", 1, "b1", "4", finish="length"),
                  turn(2, "aggregator", 2, "agg", "5"), turn(3, "critic", 2, "no", None)]
    rec = record("q", "5", trajectory)

    def texts(**kwargs):
        selection = select_solutions(rec, **kwargs)
        return [t["text"] for t in selection.turns], selection.truncated_dropped

    assert texts() == (["a1", "agg"], 1)  # agent 1's last turn was cut off: it gives none
    assert texts(keep_truncated=True) == (["a1", "b1", "agg"], 0)
    assert texts(all_rounds=True) == (["a0", "b0", "a1", "agg"], 1)
    assert texts(all_rounds=True, keep_truncated=True) == (["a0", "b0", "a1", "b1", "agg"], 0)


def test_all_rounds_and_keep_truncated_flags(tmp_path):
    rec = debate_record("q1", "5", [["4", "5"], ["5", "5"]])
    rec["trajectory"][3]["finish_reason"] = "length"
    source = write_jsonl(tmp_path / "llm_debate_infer.jsonl", [rec])
    cases = {(): [(0, 1)], ("--keep_truncated",): [(0, 1), (1, 1)],
             ("--all_rounds",): [(0, 0), (1, 0), (0, 1)],
             ("--all_rounds", "--keep_truncated"): [(0, 0), (1, 0), (0, 1), (1, 1)]}
    for flags, expected in cases.items():
        out = tmp_path / f"out{len(flags)}{flags[:1]}.jsonl"
        assert run_label("--input", source, "--dataset_name", "GSM8K", "--output", out, *flags) == 0
        [labeled] = load(out)
        assert [(s["agent"], s["round"]) for s in labeled["solutions"]] == expected, flags
        assert [s.get("truncated", False) for s in labeled["solutions"]] == [
            (a, r) == (1, 1) for a, r in expected]
        stats = json.loads(stats_path(out).read_text())["run"]
        assert stats["truncated_solutions_dropped"] == (0 if "--keep_truncated" in flags else 1)


# ---------------------------------------------------------------- several inputs, failed records

def test_several_inputs_merge_per_question(tmp_path, capsys):
    cot = [record(f"q{i}", "5", [turn(0, "solver", 0, "so \\boxed{5}", "5" if i else "6")], method="cot")
           for i in range(3)]
    debate = [debate_record("q1", "5", [["5", "4"]]), debate_record("q9", "5", [["5", "5"]])]
    write_jsonl(tmp_path / "res" / "cot_infer.jsonl", cot)
    write_jsonl(tmp_path / "res" / "llm_debate_infer.jsonl", debate)
    out = tmp_path / "labeled.jsonl"
    assert run_label("--input", tmp_path / "res" / "*_infer.jsonl", "--dataset_name", "GSM8K", "--output", out) == 0
    labeled = {r["id"]: r for r in load(out)}
    assert list(labeled) == ["q0", "q1", "q2", "q9"]  # first seen across the inputs, in order
    assert [(s["id"], s["method"], s["is_correct"]) for s in labeled["q1"]["solutions"]] == [
        (1, "cot", True), (2, "llm_debate", True), (3, "llm_debate", False)]
    assert [s["method"] for s in labeled["q9"]["solutions"]] == ["llm_debate"] * 2
    stats = json.loads(stats_path(out).read_text())["labels"]
    assert stats["by_method"]["cot"]["accuracy"] == round(2 / 3, 4)
    assert stats["by_method"]["llm_debate"]["solutions"] == 4
    assert set(stats["by_agent"]["llm_debate"]) == {"0 (debater)", "1 (debater)"}
    capsys.readouterr()
    # The same files again: every question is done, nothing is added.
    assert run_label("--input", tmp_path / "res" / "cot_infer.jsonl", tmp_path / "res" / "llm_debate_infer.jsonl",
                     "--dataset_name", "GSM8K", "--output", out) == 0
    assert "labeled 0 questions" in capsys.readouterr().out
    assert len(load(out)) == 4


def test_failed_inference_records_are_skipped_counted_and_retried(tmp_path, capsys):
    ok = debate_record("q1", "5", [["5", "5"]])
    failed = record("q2", "5", [turn(0, "debater", 0, "\\boxed{5}", "5")], error="RequestError: refused")
    cot_failed = record("q1", "5", [], method="cot", error="RequestError: refused")
    write_jsonl(tmp_path / "llm_debate_infer.jsonl", [ok, failed])
    write_jsonl(tmp_path / "cot_infer.jsonl", [cot_failed])
    out = tmp_path / "labeled.jsonl"
    args = ["--input", tmp_path / "llm_debate_infer.jsonl", tmp_path / "cot_infer.jsonl", "--dataset_name", "GSM8K",
            "--output", out]
    assert run_label(*args) == 0
    [labeled] = load(out)  # q2 has no usable record: nothing written for it
    assert labeled["id"] == "q1" and len(labeled["solutions"]) == 2
    assert "inference failed for this question at" in labeled["error"] and "cot_infer.jsonl:1" in labeled["error"]
    run = json.loads(stats_path(out).read_text())["run"]
    assert run["failed_records_skipped"] == 2 and run["questions_without_solutions"] == 1
    assert "2 failed inference records" in capsys.readouterr().out
    # Inference is retried and succeeds; --retry_errors labels q1 again with the new solutions, q2 for the first time.
    write_jsonl(tmp_path / "cot_infer.jsonl", [record("q1", "5", [turn(0, "solver", 0, "\\boxed{4}", "4")],
                                                      method="cot")])
    write_jsonl(tmp_path / "llm_debate_infer.jsonl", [ok, debate_record("q2", "5", [["5"]])])
    assert run_label(*args) == 0
    assert [r["id"] for r in load(out)] == ["q1", "q2"] and "error" in load(out)[0]  # without the flag: kept
    assert run_label(*args, "--retry_errors") == 0
    labeled = {r["id"]: r for r in load(out)}
    assert "error" not in labeled["q1"] and labeled["q1"]["labels"] == [True, True, False]
    assert len(labeled) == 2


# ---------------------------------------------------------------- judge both, LLM judge wiring

class FakeLLMJudge:
    """Says "correct" when the candidate mentions the reference; None when it mentions "???"."""

    name = "llm"

    def __init__(self):
        self.in_flight = self.max_in_flight = 0
        self.entered = self.closed = False

    async def __aenter__(self):
        self.entered = True
        return self

    async def __aexit__(self, *exc):
        self.closed = True

    async def judge_many(self, items):
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        return [Verdict(None if "???" in i.candidate else str(i.gt) in i.candidate, "llm", "raw") for i in items]


def test_judge_both_agreement_kappa_and_null_verdicts(tmp_path):
    records = [
        debate_record("q1", "5", [["5", "6"]]),  # texts say \boxed{5} / \boxed{6}: both judges agree
        record("q2", "5", [turn(0, "debater", 0, "5 apples? no: \\boxed{7}", "7"),  # llm says yes, rule says no
                           turn(1, "debater", 0, "??? \\boxed{5}", "5")]),  # llm verdict unreadable
    ]
    source = write_jsonl(tmp_path / "llm_debate_infer.jsonl", records)
    out = tmp_path / "labeled.jsonl"
    fake = FakeLLMJudge()
    result = asyncio.run(run_labeling(LabelOptions(inputs=[str(source)], dataset_name="GSM8K", output=str(out),
                                                   judge="both", progress=False), lambda: fake))
    assert fake.entered and fake.closed and fake.max_in_flight == 2  # one request per question, all at once
    labeled = {r["id"]: r for r in load(out)}
    q1, q2 = labeled["q1"], labeled["q2"]
    assert q1["labels"] == [True, False] and "error" not in q1
    # Math: the rule judge decides is_correct; both verdicts are kept.
    assert q2["labels"] == [False, True]
    assert q2["solutions"][0]["verdicts"] == {"llm": {"is_correct": True, "detail": "raw"},
                                              "rule": {"is_correct": False, "detail": "numeric_mismatch"}}
    assert q2["solutions"][1]["verdicts"]["llm"]["is_correct"] is None
    assert "no judge verdict for 1 of 2" in q2["error"]
    agreement = result.stats["agreement"]
    assert agreement == {"solutions": 3, "agree": 2, "rate": round(2 / 3, 4),
                         "cohen_kappa": cohen_kappa([(True, True), (False, False), (False, True)])}
    assert json.loads(stats_path(out).read_text())["labels"]["agreement"] == agreement


def test_llm_judge_is_primary_for_short_answers_and_null_is_kept(tmp_path):
    records = [record("s1", "Paris", [turn(0, "solver", 0, "Paris", "Paris"), turn(1, "solver", 0, "??? Lyon")],
                      method="cot", source="HotpotQA")]
    source = write_jsonl(tmp_path / "cot_infer.jsonl", records)
    out = tmp_path / "labeled.jsonl"
    asyncio.run(run_labeling(LabelOptions(inputs=[str(source)], dataset_name="HotpotQA", output=str(out),
                                          progress=False), FakeLLMJudge))
    [labeled] = load(out)
    assert labeled["labels"] == [True, None]  # an unreadable verdict is null, never false
    assert {s["judge"] for s in labeled["solutions"]} == {"llm"}


def test_model_flag_and_engine_flags_reach_the_llm_judge(tmp_path, monkeypatch):
    made = []

    class RecordingJudge(FakeLLMJudge):
        def __init__(self, engine_args, max_context_tokens=None):
            super().__init__()
            made.append((engine_args, max_context_tokens))

    fake_module = types.ModuleType("labeling.llm_judge")
    fake_module.LLMJudge = RecordingJudge
    monkeypatch.setitem(sys.modules, "labeling.llm_judge", fake_module)
    source = write_jsonl(tmp_path / "cot_infer.jsonl", [record("s1", "Paris", [turn(0, "solver", 0, "Paris")],
                                                               method="cot", source="QMSum")])
    assert run_label("--input", source, "--dataset_name", "QMSum", "--model", "judge-model", "--backend", "openai",
                     "--max_context_tokens", "100", "--output", tmp_path / "o.jsonl") == 0
    [(engine_args, max_context_tokens)] = made
    assert (engine_args.model_name, engine_args.backend, max_context_tokens) == ("judge-model", "openai", 100)


def test_judge_both_end_to_end_on_the_tiny_model(tmp_path, tiny_model_path):
    records = [record(f"q{i}", "5", [turn(0, "solver", 0, f"so \\boxed{{{4 + i}}}", str(4 + i))], method="cot")
               for i in range(3)]
    source = write_jsonl(tmp_path / "cot_infer.jsonl", records)
    out = tmp_path / "labeled.jsonl"
    assert run_label("--input", source, "--dataset_name", "GSM8K", "--judge", "both", "--model", tiny_model_path,
                     "--output", out) == 0
    labeled = sorted(load(out), key=lambda r: r["id"])  # written as each question's verdicts come in
    assert [r["labels"] for r in labeled] == [[False], [True], [False]]  # math: the rule judge's labels
    for r in labeled:
        [solution] = r["solutions"]
        assert list(solution["verdicts"]) == ["rule", "llm"]
        assert solution["verdicts"]["llm"]["is_correct"] in (True, False, None)
    assert "agreement" in json.loads(stats_path(out).read_text())["labels"]


def test_rule_judging_never_imports_an_engine_backend(tmp_path):
    source = write_jsonl(tmp_path / "llm_debate_infer.jsonl", [debate_record("q1", "5", [["5"]])])
    code = ("import sys, label\n"
            f"assert label.main(['--input', {str(source)!r}, '--dataset_name', 'GSM8K', '--no_progress']) == 0\n"
            "loaded = [m for m in sys.modules if m.startswith(('torch', 'transformers', 'vllm', 'engine.hf',"
            " 'labeling.llm_judge'))]\n"
            "assert not loaded, loaded\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_cohen_kappa_values():
    assert cohen_kappa([(True, True), (False, False)]) == 1.0
    assert cohen_kappa([(True, False), (False, True)]) == -1.0
    assert cohen_kappa([(True, True), (True, True)]) is None  # chance agreement 1: undefined
    assert cohen_kappa([]) is None
    # 20 items: 8 both true, 7 both false, 5 split -> po 0.75, pe 0.5 -> 0.5
    pairs = [(True, True)] * 8 + [(False, False)] * 7 + [(True, False)] * 2 + [(False, True)] * 3
    assert cohen_kappa(pairs) == 0.5


def test_stats_count_unknown_and_incomplete():
    records = [{"id": "a", "solutions": [{"is_correct": True, "method": "m", "agent": 0, "role": "solver",
                                          "round": 0},
                                         {"is_correct": None, "method": "m", "agent": 1, "role": "solver",
                                          "round": 0}], "error": "x"}]
    stats = label_stats(records)
    assert (stats["solutions"], stats["correct"], stats["unknown"], stats["accuracy"]) == (2, 1, 1, 1.0)
    assert stats["questions_incomplete"] == 1 and stats["questions_mixed"] == 0


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing written

def _bad_cases(tmp_path: Path) -> dict[str, tuple[list, str]]:
    good = debate_record("q1", "5", [["5"]])
    no_gt = {k: v for k, v in debate_record("q2", "5", [["5"]]).items() if k != "gt"}
    labeled_like = {"id": "q1", "query": "q", "gt": "5", "solutions": [], "labels": []}
    files = {
        "no_gt": write_jsonl(tmp_path / "no_gt.jsonl", [good, no_gt]),
        "empty_gt": write_jsonl(tmp_path / "empty_gt.jsonl", [dict(good, gt="  ")]),
        "not_inference": write_jsonl(tmp_path / "labeled_input.jsonl", [labeled_like]),
        "no_role": write_jsonl(tmp_path / "no_role.jsonl", [dict(good, trajectory=[{"text": "x"}])]),
        "dup": write_jsonl(tmp_path / "dup.jsonl", [good, good]),
        "wrong_task": write_jsonl(tmp_path / "mc.jsonl", [dict(good, source="MedMCQA")]),
        "other_gt": write_jsonl(tmp_path / "other_gt.jsonl", [dict(good, gt="6")]),
    }
    (tmp_path / "malformed.jsonl").write_text(json.dumps(good) + "\n{not json\n" + json.dumps(good) + "\n")
    ok = write_jsonl(tmp_path / "ok_infer.jsonl", [good])
    return {
        "no_gt": ([files["no_gt"]], f"{files['no_gt']}:2: record 'q2' has no 'gt'"),
        "empty_gt": ([files["empty_gt"]], f"{files['empty_gt']}:1: record 'q1' has no 'gt'"),
        "not_inference": ([files["not_inference"]], f"{files['not_inference']}:1: not an inference record"),
        "no_role": ([files["no_role"]], f"{files['no_role']}:1: trajectory turn 0 has no string 'role'"),
        "duplicate": ([files["dup"]], f"{files['dup']}:2: duplicate id 'q1' (first at {files['dup']}:1)"),
        "wrong_task_type": ([files["wrong_task"]], "a MedMCQA record (multiple_choice) but --dataset_name GSM8K"),
        "conflicting_gt": ([ok, files["other_gt"]], f"{files['other_gt']}:1: id 'q1' has another 'gt' than at {ok}:1"),
        "malformed": ([tmp_path / "malformed.jsonl"], f"{tmp_path / 'malformed.jsonl'}:2: malformed JSON"),
        "missing_file": ([tmp_path / "nope.jsonl"], f"--input {tmp_path / 'nope.jsonl'}: no such file"),
        "no_glob_match": ([str(tmp_path / "zz*.jsonl")], f"--input {tmp_path / 'zz*.jsonl'}: no file matches"),
        "several_without_output": ([ok, files["dup"]], "--output is required with several inputs (2 files)"),
    }


@pytest.mark.parametrize("case", ["no_gt", "empty_gt", "not_inference", "no_role", "duplicate", "wrong_task_type",
                                  "conflicting_gt", "malformed", "missing_file", "no_glob_match",
                                  "several_without_output"])
def test_bad_input_is_one_line_exit_2_nothing_written(case, tmp_path, capsys):
    inputs, message = _bad_cases(tmp_path)[case]
    out = tmp_path / "out" / "labeled.jsonl"
    argv = ["--input", *inputs, "--dataset_name", "GSM8K"]
    if case != "several_without_output":
        argv += ["--output", out]
    assert run_label(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert not (tmp_path / "out").exists()


def test_unknown_dataset_and_bad_flags(tmp_path, capsys):
    source = write_jsonl(tmp_path / "x_infer.jsonl", [debate_record("q1", "5", [["5"]])])
    for argv, message in [
        (["--dataset_name", "NoSuchSet"], "--dataset_name: unknown dataset 'NoSuchSet'"),
        (["--dataset_name", "GSM8K", "--f1_threshold", "2"], "--f1_threshold must be in [0, 1]"),
        (["--dataset_name", "GSM8K", "--num_shards", "2", "--shard_id", "2"], "--shard_id 2 must be in [0"),
        (["--dataset_name", "GSM8K", "--start", "3", "--end", "1"], "--start 3 / --end 1"),
        (["--dataset_name", "GSM8K", "--output", source], "is one of the inputs"),
    ]:
        assert run_label("--input", source, *argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and message in err, err
    assert not (tmp_path / "x_labeled.jsonl").exists()


def test_output_holding_inference_records_is_refused(tmp_path, capsys):
    source = write_jsonl(tmp_path / "a_infer.jsonl", [debate_record("q1", "5", [["5"]])])
    other = write_jsonl(tmp_path / "b_infer.jsonl", [debate_record("q1", "5", [["5"]])])
    before = other.read_text()
    assert run_label("--input", source, "--dataset_name", "GSM8K", "--output", other) == 2
    assert "not labeled records" in capsys.readouterr().err
    assert other.read_text() == before


# ---------------------------------------------------------------- shards, start/end

def test_shards_merge_into_the_unsharded_file(tmp_path, capsys):
    records = [debate_record(f"q{i}", "5", [["5", str(i)]]) for i in range(7)]
    source = write_jsonl(tmp_path / "llm_debate_infer.jsonl", records)
    whole = tmp_path / "whole.jsonl"
    assert run_label("--input", source, "--dataset_name", "GSM8K", "--output", whole) == 0
    merged = tmp_path / "merged.jsonl"
    for shard_id in range(3):
        assert run_label("--input", source, "--dataset_name", "GSM8K", "--output", merged, "--num_shards", 3,
                         "--shard_id", shard_id) == 0
        ids = [r["id"] for r in load(shard_path(merged, shard_id, 3))]
        assert ids == [f"q{i}" for i in range(shard_id, 7, 3)]
    assert not merged.exists()
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "merge_shards.py"), "--output_path", str(merged)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    by_id = {r["id"]: r for r in load(merged)}
    assert len(by_id) == 7 and all(by_id[r["id"]] == r for r in load(whole))
    # The unsharded command on the merged file has nothing left to do, and reports the whole file.
    capsys.readouterr()
    assert run_label("--input", source, "--dataset_name", "GSM8K", "--output", merged) == 0
    out = capsys.readouterr().out
    assert "labeled 0 questions" in out and "questions: 7, solutions: 14" in out


def test_start_and_end_select_questions(tmp_path):
    source = write_jsonl(tmp_path / "llm_debate_infer.jsonl",
                         [debate_record(f"q{i}", "5", [["5"]]) for i in range(6)])
    out = tmp_path / "o.jsonl"
    assert run_label("--input", source, "--dataset_name", "GSM8K", "--output", out, "--start", 1, "--end", 3) == 0
    assert [r["id"] for r in load(out)] == ["q1", "q2"]
    assert run_label("--input", source, "--dataset_name", "GSM8K", "--output", out, "--start", 4) == 0
    assert [r["id"] for r in load(out)] == ["q1", "q2", "q4", "q5"]


# ---------------------------------------------------------------- resume after kill -9

SLOW_APPENDS = """
import sys, time
import data.records as records
append = records.RecordStore.append
def slow_append(self, record):
    append(self, record)
    time.sleep(0.005)  # widen the window for the kill; every append is still one fsynced line
records.RecordStore.append = slow_append
import label
sys.exit(label.main(sys.argv[1:]))
"""


def test_resume_after_kill_loses_nothing_and_duplicates_nothing(tmp_path):
    records = [debate_record(f"q{i}", str(i % 7), [[str(i % 5), str(i % 7), "3"], [str(i % 7), "2", str(i % 3)]])
               for i in range(600)]
    source = write_jsonl(tmp_path / "llm_debate_infer.jsonl", records)
    reference = tmp_path / "reference.jsonl"
    flags = ["--input", str(source), "--dataset_name", "GSM8K", "--all_rounds", "--no_progress",
             "--log_level", "WARNING"]
    assert run_label(*flags[:-3], "--output", reference) == 0
    expected = {r["id"]: r for r in load(reference)}
    assert len(expected) == 600

    output = tmp_path / "labeled.jsonl"
    command = [sys.executable, "-c", SLOW_APPENDS, *flags, "--output", str(output)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if output.exists() and output.stat().st_size > 20_000:  # some records written, more to come
                break
            time.sleep(0.002)
        assert process.poll() is None, "the run finished before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    partial = len(output.read_bytes().splitlines())
    assert 0 < partial < len(expected)
    with output.open("ab") as f:  # as if the kill came in the middle of a line
        f.write(b'{"id": "torn", "solutions": [{"text": "half')

    assert subprocess.run(command, cwd=ROOT, capture_output=True, timeout=300).returncode == 0
    records = load(output)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == len(expected)  # no duplicates, nothing lost
    assert {i: r for i, r in zip(ids, records)} == expected
    assert json.loads(stats_path(output).read_text())["labels"]["questions"] == len(expected)
