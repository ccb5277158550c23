"""The eval CLIs on inference files written as inference.py writes them, and short-answer model mode."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from eval import math_eval, medmcqa_eval, short_answer_eval
from eval.common import EvalError

ROOT = Path(__file__).resolve().parents[1]


def record(sample_id, gt, answer, response=None, **extra):
    """An inference record in design.md's format."""
    return {"id": sample_id, "query": "q", "gt": gt, "source": "test", "method": "cot", "model": "tiny",
            "config": {}, "response": response if response is not None else f"... \\boxed{{{answer}}}",
            "answer": answer, "trajectory": [],
            "token_stats": {"tiny": {"num_llm_calls": 3, "prompt_tokens": 120, "completion_tokens": 60}},
            "latency_s": 0.5, **extra}


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


# ---- math ----------------------------------------------------------------------------------------------

def test_math_eval_scores_writes_outputs_and_prints_table(tmp_path, capsys):
    infer = write_jsonl(tmp_path / "MATH" / "tiny" / "cot_infer.jsonl", [
        record("a", "\\frac{1}{2}", "0.5"),
        record("b", "2\\sqrt{2}", "\\sqrt{8}"),
        record("c", "7", "8"),
        record("d", "3", None, response="The answer is 3."),  # no `answer`: extracted from the response
        record("e", "5", "2^{2^{100}}"),  # refused by the grader: wrong with a reason, the run goes on
        record("f", "1", None, response="", error="EngineError: endpoint unreachable"),
    ])
    assert math_eval.main(["--input_file", str(infer), "--dataset_name", "MATH", "--no_progress"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "95% CI" in out
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "MATH" / "tiny" / "cot_infer_scores.jsonl")}
    assert [rows[k]["correct"] for k in "abcdef"] == [True, True, False, True, False, False]
    assert rows["b"]["reason"] == "symbolic_equal" and rows["c"]["reason"] == "numeric_mismatch"
    assert rows["d"]["prediction"] == "3"
    assert rows["e"]["reason"] == "grader_error" and rows["f"]["reason"] == "inference_error"
    metrics = json.loads((tmp_path / "MATH" / "tiny" / "cot_infer_metrics.json").read_text())
    assert metrics["metrics"]["accuracy"]["mean"] == pytest.approx(0.5)
    assert metrics["metrics"]["accuracy"]["ci_low"] <= 0.5 <= metrics["metrics"]["accuracy"]["ci_high"]
    assert metrics["grader"].startswith("math_equivalence") and metrics["dataset"] == "MATH"
    assert metrics["num_inference_errors"] == 1 and metrics["num_grader_errors"] == 1
    assert metrics["cost"]["llm_calls_per_question"] == 3 and metrics["method"] == "cot"


def test_math_eval_output_dir(tmp_path):
    infer = write_jsonl(tmp_path / "in" / "mav_infer.jsonl", [record("a", "4", "4")])
    math_eval.main(["--input_file", str(infer), "--output_dir", str(tmp_path / "out"), "--no_progress"])
    assert (tmp_path / "out" / "mav_infer_scores.jsonl").is_file()
    assert (tmp_path / "out" / "mav_infer_metrics.json").is_file()


def test_malformed_line_is_reported_with_its_line_number(tmp_path):
    infer = tmp_path / "cot_infer.jsonl"
    infer.write_text(json.dumps(record("a", "1", "1")) + "\n{not json\n" + json.dumps(record("b", "2", "2")) + "\n")
    with pytest.raises(EvalError, match=r"cot_infer\.jsonl:2: malformed JSON"):
        math_eval.main(["--input_file", str(infer)])


def test_missing_field_is_reported_with_line_and_field(tmp_path):
    bad = record("b", "2", "2")
    del bad["gt"]
    infer = write_jsonl(tmp_path / "cot_infer.jsonl", [record("a", "1", "1"), bad])
    with pytest.raises(EvalError, match=r"cot_infer\.jsonl:2: missing field 'gt'"):
        math_eval.main(["--input_file", str(infer), "--no_progress"])


def test_wrong_grader_for_dataset_is_refused(tmp_path):
    infer = write_jsonl(tmp_path / "cot_infer.jsonl", [record("a", "1", "1")])
    with pytest.raises(EvalError, match="--dataset_name MedMCQA is a multiple_choice dataset"):
        math_eval.main(["--input_file", str(infer), "--dataset_name", "MedMCQA"])


def test_cli_user_error_is_one_line_and_exit_code_2(tmp_path):
    infer = tmp_path / "cot_infer.jsonl"
    infer.write_text("[1, 2]\n")
    proc = subprocess.run([sys.executable, "-m", "eval.math_eval", "--input_file", str(infer)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert f"{infer}:1:" in proc.stderr


# ---- multiple choice ---------------------------------------------------------------------------------------

def test_medmcqa_eval(tmp_path, capsys):
    choices = ["Aspirin", "Paracetamol", "Ibuprofen", "Morphine"]
    infer = write_jsonl(tmp_path / "dylan_infer.jsonl", [
        record("a", "B", "B", choices=choices, meta={"subject": "Pharmacology"}),
        record("b", "C", None, response="Let me think... The answer is (c).", choices=choices,
               meta={"subject": "Pharmacology"}),
        record("c", "D", "The answer is Morphine", choices=choices, meta={"subject": "Surgery"}),
        record("d", "A", "B", choices=choices, meta={"subject": "Surgery"}),
        record("e", "A", None, response="I do not know.", choices=choices),
    ])
    assert medmcqa_eval.main(["--input_file", str(infer)]) == 0
    assert "accuracy" in capsys.readouterr().out
    rows = read_jsonl(tmp_path / "dylan_infer_scores.jsonl")
    assert [r["prediction"] for r in rows] == ["B", "C", "D", "B", None]
    assert [r["correct"] for r in rows] == [True, True, True, False, False]
    assert rows[4]["reason"] == "no_answer"
    metrics = json.loads((tmp_path / "dylan_infer_metrics.json").read_text())
    assert metrics["metrics"]["accuracy"]["mean"] == pytest.approx(0.6)
    assert metrics["accuracy_by_subject"]["Pharmacology"]["mean"] == 1.0
    assert metrics["accuracy_by_subject"]["Surgery"]["mean"] == 0.5


def test_medmcqa_eval_rejects_a_reference_that_is_not_a_letter(tmp_path):
    infer = write_jsonl(tmp_path / "cot_infer.jsonl", [record("a", "A", "A"), record("b", "Paracetamol", "B")])
    with pytest.raises(EvalError, match=r"cot_infer\.jsonl:2: field 'gt' must be an option letter A-D"):
        medmcqa_eval.main(["--input_file", str(infer)])


# ---- short answer ------------------------------------------------------------------------------------------

def test_short_answer_eval_input_mode(tmp_path, capsys):
    infer = write_jsonl(tmp_path / "llm_debate_infer.jsonl", [
        record("a", "Eiffel Tower", "the Eiffel Tower."),
        record("b", "Marie Curie", None, response="Reasoning.\nAnswer: Curie"),
        record("c", "yes", "No", meta={"references": ["yes", "no"]}),  # QASPER: several annotators
        record("d", "Paris", None, response="", error="EngineError: boom"),
    ])
    assert short_answer_eval.main(["--input_file", str(infer), "--dataset_name", "HotpotQA"]) == 0
    out = capsys.readouterr().out
    assert out.count("BERTScore not computed") == 1 and "rougeL" in out
    rows = read_jsonl(tmp_path / "llm_debate_infer_scores.jsonl")
    assert [r["exact_match"] for r in rows] == [1.0, 0.0, 1.0, 0.0]
    assert rows[1]["f1"] == pytest.approx(2 / 3) and rows[1]["prediction"] == "Curie"
    # ROUGE keeps articles: "the eiffel tower" against "eiffel tower" -> P = 2/3, R = 1, F = 0.8
    assert rows[0]["rougeL"] == pytest.approx(0.8) and rows[3]["reason"] == "inference_error"
    assert "bertscore_f1" not in rows[0]
    metrics = json.loads((tmp_path / "llm_debate_infer_metrics.json").read_text())
    assert set(metrics["metrics"]) == {"exact_match", "f1", "rouge1", "rouge2", "rougeL"}
    assert metrics["metrics"]["exact_match"]["mean"] == pytest.approx(0.5)
    assert "not computed" in metrics["bertscore"]


def test_short_answer_eval_needs_exactly_one_mode(tmp_path):
    with pytest.raises(EvalError, match="exactly one of --input_file"):
        short_answer_eval.main([])
    with pytest.raises(EvalError, match="--dataset_name is required"):
        short_answer_eval.main(["--model_name_or_path", "x"])


def test_short_answer_eval_refuses_a_remote_bertscore_model(tmp_path):
    infer = write_jsonl(tmp_path / "cot_infer.jsonl", [record("a", "x", "x")])
    with pytest.raises(ValueError, match="--bertscore_model roberta-large: not a local model folder"):
        short_answer_eval.main(["--input_file", str(infer), "--bertscore_model", "roberta-large"])


QMSUM_MEETING = {
    "meeting_transcripts": [
        {"speaker": "Project Manager", "content": "Shall we use a rechargeable battery?"},
        {"speaker": "Industrial Designer", "content": "Yes, with a docking station; it fits the budget."},
    ],
    "general_query_list": [{"query": "Summarize the meeting.", "answer": "They chose a rechargeable battery."}],
    "specific_query_list": [{"query": "What did they decide about the battery?",
                             "answer": "A rechargeable battery with a docking station."}],
}


def test_short_answer_eval_model_mode_generates_then_scores(tmp_path, tiny_model_path, capsys):
    data = write_jsonl(tmp_path / "qmsum.jsonl", [QMSUM_MEETING])
    out_dir = tmp_path / "outputs"
    code = short_answer_eval.main([
        "--model_name_or_path", tiny_model_path, "--dataset_name", "QMSum", "--data_path", str(data),
        "--split", "validation", "--output_dir", str(out_dir), "--temperature", "0", "--max_new_tokens", "8",
        "--apply_chat_template", "--max_samples", "2", "--device", "cpu"])
    assert code == 0
    generations = sorted(out_dir.glob("QMSum_validation_*_generations.jsonl"))
    assert len(generations) == 1
    records = read_jsonl(generations[0])
    assert [r["id"] for r in records] == ["QMSum-validation-0-general-0", "QMSum-validation-0-specific-0"]
    for r in records:
        assert r["method"] == "direct" and r["model"] == tiny_model_path and "error" not in r
        (turn,) = r["trajectory"]
        assert turn["completion_tokens"] > 0 and turn["prompt_tokens"] > 0
        assert turn["prompt_format"] == "chat" and turn["finish_reason"] in ("stop", "length")
        assert r["token_stats"][tiny_model_path]["num_llm_calls"] == 1
    scores = read_jsonl(str(generations[0]).replace(".jsonl", "_scores.jsonl"))
    assert len(scores) == 2 and all(0.0 <= s["rougeL"] <= 1.0 for s in scores)
    metrics = json.loads(Path(str(generations[0]).replace(".jsonl", "_metrics.json")).read_text())
    assert metrics["split"] == "validation" and metrics["generation"]["temperature"] == 0.0
    assert metrics["generation"]["prompt_format"] == "chat" and metrics["truncation_known"] == 2
    assert metrics["num_samples"] == 2 and metrics["dataset"] == "QMSum"
    # The generations file is an ordinary inference file: input-file mode re-scores it identically.
    short_answer_eval.main(["--input_file", str(generations[0]), "--output_dir", str(tmp_path / "again")])
    again = read_jsonl(tmp_path / "again" / generations[0].name.replace(".jsonl", "_scores.jsonl"))
    assert again == scores


def test_short_answer_eval_model_mode_bad_model_is_a_one_line_error(tmp_path):
    data = write_jsonl(tmp_path / "qmsum.jsonl", [QMSUM_MEETING])
    proc = subprocess.run([sys.executable, "-m", "eval.short_answer_eval", "--model_name_or_path",
                           str(tmp_path / "no-such-model"), "--dataset_name", "QMSum", "--data_path", str(data),
                           "--output_dir", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --model_name_or_path")


# ---- short answer model mode: raw prompt vs chat template (issue 7, part 6) -----------------------------------

class TruncatingEngine:
    """A ScriptedEngine whose answers stop at `max_tokens` words with finish_reason "length", as a model's do."""

    def __new__(cls, answer):
        from engine.base import ChatResult
        from engine.scripted_backend import ScriptedEngine

        class Engine(ScriptedEngine):
            async def _chat(self, messages, params):
                result = await super()._chat(messages, params)
                words = result.text.split()
                if len(words) <= params.max_tokens:
                    return result
                return ChatResult(texts=[" ".join(words[:params.max_tokens])], prompt_tokens=result.prompt_tokens,
                                  completion_tokens=params.max_tokens, finish_reasons=["length"])

        return Engine(lambda messages, params: answer)


def _samples():
    from data.schema import Sample

    return [Sample(id="s0", query="Who won?", gt="the red team", source="test", context="The red team won."),
            Sample(id="s1", query="Where?", gt="Oslo", source="test", context="It was in Oslo.")]


@pytest.mark.parametrize("prompt_format", ["raw", "chat"])
def test_generate_records_sends_raw_prompt_or_chat_messages(prompt_format):
    import asyncio

    from data.task_prompts import task_prompt

    engine = TruncatingEngine("Answer: the red team")
    samples = _samples()
    records = asyncio.run(short_answer_eval.generate_records(samples, engine, "m", {}, 2, prompt_format=prompt_format))
    prompts = [task_prompt(s, "short_answer") for s in samples]
    sent = sorted(engine.calls, key=lambda call: call[0][0]["content"])
    # A raw prompt reaches the engine as a text completion (the scripted engine shows it as role "completion").
    role = "completion" if prompt_format == "raw" else "user"
    assert [messages for messages, _ in sent] == [[{"role": role, "content": p}] for p in sorted(prompts)]
    for record, prompt in zip(records, prompts):
        (turn,) = record["trajectory"]
        assert turn["prompt_format"] == prompt_format and turn["finish_reason"] == "stop"
        assert turn["messages"] == [{"role": "user", "content": prompt}]  # design.md's field, in both formats
        assert turn.get("prompt") == (prompt if prompt_format == "raw" else None)
        assert record["num_truncated_turns"] == 0 and record["answer"] == "the red team"


def _run_model_mode(tmp_path, monkeypatch, engine, *flags):
    import engine as engine_package

    built = []

    def build(args):
        built.append(args)
        engine.defaults = args.sampling_defaults()
        return engine

    monkeypatch.setattr(engine_package, "build_engine", build)
    data = write_jsonl(tmp_path / "qmsum.jsonl", [QMSUM_MEETING])
    out_dir = tmp_path / "outputs"
    assert short_answer_eval.main(["--model_name_or_path", "scripted", "--dataset_name", "QMSum", "--data_path",
                                   str(data), "--split", "validation", "--output_dir", str(out_dir), *flags]) == 0
    (generations,) = out_dir.glob("QMSum_validation_*_generations.jsonl")
    metrics = json.loads(Path(str(generations).replace(".jsonl", "_metrics.json")).read_text())
    scores = read_jsonl(str(generations).replace(".jsonl", "_scores.jsonl"))
    return built[0], read_jsonl(generations), metrics, scores


def test_short_answer_model_mode_without_apply_chat_template_sends_raw_completions(tmp_path, monkeypatch, capsys):
    engine = TruncatingEngine("They chose a rechargeable battery with a docking station.\nAnswer: a battery")
    _, records, metrics, scores = _run_model_mode(tmp_path, monkeypatch, engine, "--max_new_tokens", "4")
    assert {messages[0]["role"] for messages, _ in engine.calls} == {"completion"}
    assert metrics["generation"]["prompt_format"] == "raw"
    for record in records:
        (turn,) = record["trajectory"]
        assert turn["prompt_format"] == "raw" and turn["prompt"] == turn["messages"][0]["content"]
        assert turn["finish_reason"] == "length" and record["num_truncated_turns"] == 1
        assert record["config"]["prompt_format"] == "raw"
    assert (metrics["num_truncated_answers"], metrics["truncation_known"]) == (2, 2)
    assert [s["truncated"] for s in scores] == [True, True]
    out = capsys.readouterr().out
    assert "2 of 2 final answers were cut off at the token limit (raise --max_new_tokens)" in out
    assert "chat template" not in out  # the old note that the flag was implied is gone


def test_short_answer_model_mode_with_apply_chat_template_uses_the_chat_template(tmp_path, monkeypatch, capsys):
    engine = TruncatingEngine("Answer: a battery")
    built, records, metrics, scores = _run_model_mode(tmp_path, monkeypatch, engine, "--apply_chat_template")
    assert {messages[0]["role"] for messages, _ in engine.calls} == {"user"}
    assert built.backend == "hf" and metrics["generation"]["prompt_format"] == "chat"
    for record in records:
        (turn,) = record["trajectory"]
        assert turn["prompt_format"] == "chat" and "prompt" not in turn and turn["finish_reason"] == "stop"
    assert (metrics["num_truncated_answers"], metrics["num_records_with_truncated_turns"]) == (0, 0)
    assert [s["truncated"] for s in scores] == [False, False]
    assert "cut off" not in capsys.readouterr().out


def test_short_answer_model_mode_use_vllm_and_backend_openai_conflict(tmp_path):
    with pytest.raises(EvalError, match="--use_vllm contradicts --backend openai"):
        short_answer_eval.main(["--model_name_or_path", "m", "--dataset_name", "QMSum", "--use_vllm",
                                "--backend", "openai"])


def test_short_answer_model_mode_on_the_openai_backend(tmp_path):
    """A served model through --backend openai (the fake server echoes the prompt, cut at max_tokens words)."""
    import asyncio
    import threading

    import yaml

    from tests.fake_openai_server import FakeOpenAIServer

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = FakeOpenAIServer(models=["served-model"])
    asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(timeout=60)
    try:
        config = tmp_path / "api.yaml"
        config.write_text(yaml.safe_dump({"models": [{"model_name": "served-model", "base_url": server.base_url}]}))
        data = write_jsonl(tmp_path / "qmsum.jsonl", [QMSUM_MEETING])
        assert short_answer_eval.main([
            "--model_name_or_path", "served-model", "--backend", "openai", "--model_api_config", str(config),
            "--dataset_name", "QMSum", "--data_path", str(data), "--split", "validation", "--output_dir",
            str(tmp_path / "out"), "--apply_chat_template", "--max_new_tokens", "6"]) == 0
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=60)
        loop.close()
    assert len(server.chat_requests) == 2 and all(r.body["max_tokens"] == 6 for r in server.chat_requests)
    (generations,) = (tmp_path / "out").glob("QMSum_validation_*_generations.jsonl")
    assert [r["trajectory"][0]["finish_reason"] for r in read_jsonl(generations)] == ["length", "length"]
    metrics = json.loads(Path(str(generations).replace(".jsonl", "_metrics.json")).read_text())
    assert metrics["generation"]["backend"] == "openai" and metrics["num_truncated_answers"] == 2


def test_short_answer_model_mode_raw_prompt_on_the_tiny_hf_model(tmp_path, tiny_model_path):
    """End to end without --apply_chat_template: the hf backend's text completion (engine.complete)."""
    data = write_jsonl(tmp_path / "qmsum.jsonl", [QMSUM_MEETING])

    def run(folder, *flags):
        assert short_answer_eval.main([
            "--model_name_or_path", tiny_model_path, "--dataset_name", "QMSum", "--data_path", str(data),
            "--split", "validation", "--output_dir", str(tmp_path / folder), "--temperature", "0",
            "--max_new_tokens", "8", "--max_samples", "2", "--device", "cpu", *flags]) == 0
        (generations,) = (tmp_path / folder).glob("QMSum_validation_*_generations.jsonl")
        metrics = json.loads(Path(str(generations).replace(".jsonl", "_metrics.json")).read_text())
        return {r["id"]: r for r in read_jsonl(generations)}, metrics

    raw, metrics = run("raw")
    chat, _ = run("chat", "--apply_chat_template")
    assert metrics["generation"]["prompt_format"] == "raw" and metrics["truncation_known"] == 2
    assert len(raw) == 2 and raw.keys() == chat.keys()
    for sample_id, r in raw.items():
        assert "error" not in r, r.get("error")
        (turn,) = r["trajectory"]
        assert turn["prompt_format"] == "raw" and turn["prompt"] == turn["messages"][0]["content"]
        assert turn["finish_reason"] in ("stop", "length") and turn["completion_tokens"] > 0
        assert r["num_truncated_turns"] == int(turn["finish_reason"] == "length")
        # The same text without the chat template's role markers around it: fewer prompt tokens.
        assert turn["prompt_tokens"] < chat[sample_id]["trajectory"][0]["prompt_tokens"]
