"""The one-command pipeline: config checks, stage commands, and the whole run on a tiny student.

The end-to-end test runs `python -m scripts.pipeline` as a user would: the teacher is a served model (a real
HTTP server on loopback, through the openai backend) that answers Arith right on every other call, so the
labels are mixed; the student, PRM and every strategy train the tiny random model, two questions per stage.
"""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from pipeline.config import PipelineError, load_config
from pipeline.stages import StageBuilder, cli_flags
from tests.fake_openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
TEACHER = "arith-teacher"


_CALLS = itertools.count()


def _answer(messages: list[dict], index: int) -> str:
    """Right on even calls, off by one on odd ones: every question gets both kinds of solution."""
    text = " ".join(m["content"] for m in messages)
    match = re.findall(r"Calculate (\d+) ([+*]) (\d+)", text)
    if not match:
        return "I cannot tell. \\boxed{0}"
    a, op, b = match[-1]
    value = int(a) + int(b) if op == "+" else int(a) * int(b)
    if next(_CALLS) % 2:
        value += 1
    return f"We need {a} {op} {b}.\n\nSo {a} {op} {b} = {value}.\n\nThe answer is \\boxed{{{value}}}."


class ServedTeacher:
    """The fake OpenAI server on its own event loop in a thread, so stage subprocesses can call it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = FakeOpenAIServer(models=[TEACHER], responder=_answer)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ServedTeacher:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.__aenter__(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.__aexit__(None, None, None), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def tiny_config(tmp_path: Path, tiny_model: str, base_url: str,
                strategies: tuple[str, ...] = ("rsft", "da", "pad")) -> Path:
    api = tmp_path / "api.yaml"
    api.write_text(yaml.safe_dump({"models": [{"model_name": TEACHER, "base_url": base_url}]}))
    fast = {"report_to": "none", "disable_tqdm": True, "logging_steps": 1}
    sft = {"max_steps": 2, "learning_rate": 1e-3, "per_device_train_batch_size": 2, "save_strategy": "no",
           "gradient_checkpointing": False, **fast}
    config = {
        "name": "tiny",
        "env": {"OMP_NUM_THREADS": "1"},
        "teacher": {"model": TEACHER, "methods": {"self_consistency": "config_main"},
                    "engine": {"backend": "openai", "model_api_config": str(api), "max_retries": 0,
                               "model_max_tokens": 64}},
        "datasets": [{"name": "Arith", "train": {"split": "train", "max_samples": 2},
                      "test": {"split": "test", "max_samples": 2}}],
        "judge": {"judge": "rule", "num_workers": 1},
        "prm": {"model": tiny_model, "flags": {"max_steps": 2, "per_device_train_batch_size": 4, "fix_llm": True,
                                               "save_strategy": "no", **fast}},
        "student": {"model": tiny_model, "engine": {"backend": "hf", "model_max_tokens": 8}},
        "strategies": {
            "rsft": {"flags": sft},
            "da": {"data": {"max_per_question": 2}, "flags": sft},
            "pad": {"flags": {"reward_mode": "PRMVR", "n_samples_per_prompt": 2, "rollout_batch_size": 2,
                              "train_batch_size": 4, "micro_train_batch_size": 4, "micro_rollout_batch_size": 4,
                              "generate_max_len": 8, "max_steps": 1, "actor_learning_rate": 1e-4,
                              "report_to": "none"}},
        },
    }
    config["strategies"] = {k: v for k, v in config["strategies"].items() if k in strategies}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled",
                TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))


def _pipeline_cmd(config: Path, run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "scripts.pipeline", "--config", str(config), "--run_dir", str(run_dir), *extra]


def _run(config: Path, run_dir: Path, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(_pipeline_cmd(config, run_dir, *extra), cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- config and commands -------------------------------------------------------------------------------------

def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


BASE = """
student: {model: some/student}
datasets: [{name: Arith}]
"""


def test_unknown_key_names_file_and_field(tmp_path):
    with pytest.raises(PipelineError, match=r"c\.yaml: strategies.rsft: unknown key 'epochs'"):
        load_config(_write(tmp_path, BASE + "strategies: {rsft: {epochs: 2}}\n"))
    with pytest.raises(PipelineError, match=r"c\.yaml: student: unknown key 'methods'"):
        load_config(_write(tmp_path, "student: {model: s, methods: [cot]}\ndatasets: [{name: Arith}]\n"))
    with pytest.raises(PipelineError, match=r"c\.yaml: top level: unknown key 'studnet'"):
        load_config(_write(tmp_path, BASE + "studnet: {}\n"))


def test_train_and_test_must_differ_and_prm_must_exist(tmp_path):
    with pytest.raises(PipelineError, match="train and test read the same split"):
        load_config(_write(tmp_path, "student: {model: s}\ndatasets: [{name: Arith, train: {split: test}}]\n"))
    with pytest.raises(PipelineError, match="strategies.pad uses a PRM but the config has no prm section"):
        load_config(_write(tmp_path, BASE + "strategies: {pad: {}}\n"))
    config = load_config(_write(tmp_path, BASE + "strategies: {pad: {flags: {reward_mode: VR}}}\n"))
    assert list(config.strategies) == ["pad"]


def test_invalid_yaml_is_one_line_with_the_line(tmp_path):
    with pytest.raises(PipelineError, match=r"c\.yaml: line 3 not valid YAML"):
        load_config(_write(tmp_path, "student: {model: s}\ndatasets: [\n  - {name: \n"))


def test_flags_follow_each_cli_style_and_paths_belong_to_the_pipeline():
    flags = {"fix_llm": True, "bf16": False, "lr": 0.1, "targets": ["q", "v"], "skip": None}
    assert cli_flags(flags, True, "prm", "x") == ["--fix_llm", "True", "--bf16", "False", "--lr", "0.1",
                                                  "--targets", "q", "v"]
    assert cli_flags({"enforce_eager": True, "all_rounds": False}, False, "inference", "x") == ["--enforce_eager"]
    with pytest.raises(PipelineError, match="x.output_dir: set by the pipeline"):
        cli_flags({"output_dir": "elsewhere"}, True, "sft", "x")


def test_stages_commands_and_eval_rows(tmp_path):
    config = load_config(_write(tmp_path, """
teacher: {model: big/teacher, methods: [llm_debate, cot], engine: {backend: vllm, tensor_parallel_size: 4}}
student: {model: small/student}
prm: {flags: {fix_llm: true}}
datasets: [{name: GSM8K, train: {max_samples: 100}, test: {max_samples: 50}}]
strategies: {rsft: {use_prm: true}, pad: {flags: {reward_mode: PRMVR}}}
"""))
    stages = StageBuilder(config, tmp_path / "run", ROOT).build()
    names = [s.name for s in stages]
    assert names == ["teacher/GSM8K/llm_debate", "teacher/GSM8K/cot", "label/GSM8K", "prm/GSM8K", "rsft/GSM8K",
                     "pad/GSM8K", "eval/GSM8K/base", "eval/GSM8K/single_agent", "eval/GSM8K/teacher-llm_debate",
                     "eval/GSM8K/teacher-cot", "eval/GSM8K/student-rsft", "eval/GSM8K/student-pad", "report"]
    by_name = {s.name: s for s in stages}
    teacher = by_name["teacher/GSM8K/llm_debate"].commands[0]
    assert teacher[teacher.index("--split") + 1] == "train" and "--tensor_parallel_size" in teacher
    prm = by_name["prm/GSM8K"].commands[0]
    assert prm[prm.index("--model_name_or_path") + 1] == "big/teacher"  # the PRM defaults to the teacher model
    build, train = by_name["rsft/GSM8K"].commands
    assert "--prm" in build and by_name["rsft/GSM8K"].needs == ["label/GSM8K", "prm/GSM8K"]
    assert train[train.index("--model_name_or_path") + 1] == "small/student"
    single = by_name["eval/GSM8K/single_agent"].commands[0]
    assert single[single.index("--split") + 1] == "test" and single[single.index("--model_name") + 1] == "big/teacher"
    student = by_name["eval/GSM8K/student-pad"].commands[0]
    assert student[student.index("--model_name") + 1] == str(tmp_path / "run" / "students" / "GSM8K" / "pad")
    assert "--tensor_parallel_size" not in student  # students are evaluated with the student's engine flags


def test_dry_run_and_unknown_stage(tmp_path):
    config = _write(tmp_path, BASE + "strategies: {da: {}}\n")
    proc = _run(config, tmp_path / "run", "--dry_run")
    assert proc.returncode == 0, proc.stderr
    assert "# da/Arith" in proc.stdout and "distill.build_data --strategy da" in proc.stdout
    assert not (tmp_path / "run").exists()
    proc = _run(config, tmp_path / "run", "--stages", "label,sft")
    assert proc.returncode == 2 and "unknown stage 'sft'" in proc.stderr


def test_a_stage_whose_inputs_never_ran_is_refused(tmp_path):
    first = BASE + "strategies: {da: {}}\n"
    proc = _run(_write(tmp_path, first), tmp_path / "run", "--stages", "da")
    assert proc.returncode == 2
    assert "stage da/Arith needs label/Arith, which has not finished" in proc.stderr
    # The run folder keeps the config it was started with; a changed one is saved beside it.
    proc = _run(_write(tmp_path, first + "judge: {judge: rule}\n"), tmp_path / "run", "--stages", "da")
    assert proc.returncode == 2 and "differs from the" in proc.stdout
    assert (tmp_path / "run" / "config.yaml").read_text() == first
    assert [p.read_text() for p in (tmp_path / "run").glob("config-*.yaml")] == [first + "judge: {judge: rule}\n"]


def test_shipped_configs_parse_and_build(tmp_path):
    configs = sorted((ROOT / "configs" / "pipeline").glob("*.yaml"))
    assert len(configs) >= 7
    for path in configs:
        config = load_config(path)
        if config.teacher.model == "default" or config.student.model == "default":
            continue  # building resolves the embedded model: the demo is built in the end-to-end tests
        stages = StageBuilder(config, tmp_path / config.name, ROOT).build()
        assert stages[-1].name == "report" and any(s.kind == "eval" for s in stages), path


# ---- the whole pipeline ----------------------------------------------------------------------------------------

def _wait_for_running(run_dir: Path, stage_file: str, process: subprocess.Popen, timeout: float = 600) -> None:
    record = run_dir / "stages" / stage_file
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if record.exists() and json.loads(record.read_text()).get("status") == "running":
            return
        if process.poll() is not None:
            raise AssertionError(f"pipeline ended (exit {process.returncode}) before {stage_file} started")
        time.sleep(0.2)
    raise AssertionError(f"{stage_file} never started")


@pytest.mark.slow  # ~15 stage subprocesses on the tiny model: a few minutes on 2 cores
def test_pipeline_end_to_end_killed_mid_stage_resumes(tiny_model_path, tmp_path):
    run_dir = tmp_path / "run"
    with ServedTeacher() as teacher:
        config = tiny_config(tmp_path, tiny_model_path, teacher.server.base_url)
        first = subprocess.Popen(_pipeline_cmd(config, run_dir), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        _wait_for_running(run_dir, "prm__Arith.json", first)
        time.sleep(3)  # inside the PRM's training process
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        finished = {name: _digest(run_dir / name) for name in ("teacher", "labels")}
        records_before = {p.name: p.read_text() for p in (run_dir / "stages").glob("*.json")
                          if json.loads(p.read_text())["status"] == "done"}
        assert set(records_before) == {"teacher__Arith__self_consistency.json", "label__Arith.json"}

        second = _run(config, run_dir)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "teacher/Arith/self_consistency: done earlier" in second.stdout
        assert "label/Arith: done earlier" in second.stdout
        assert "prm/Arith: running" in second.stdout
        assert {name: _digest(run_dir / name) for name in finished} == finished  # finished stages untouched
        for name, text in records_before.items():
            assert (run_dir / "stages" / name).read_text() == text
        prm_record = json.loads((run_dir / "stages" / "prm__Arith.json").read_text())
        assert prm_record["status"] == "done" and "resumed_after" in prm_record

        report = (run_dir / "report" / "report.md").read_text()
        rows = {line.split(" | ")[0].strip("| "): line for line in report.splitlines() if line.startswith("| ")}
        for who in ("base student", "teacher: self_consistency", "student: R-SFT", "student: DA", "student: PAD"):
            assert who in rows, report
            assert "n/a [" not in rows[who]  # every row has a score
        assert (run_dir / "report" / "comparison.png").stat().st_size > 10_000
        teacher_row = rows["teacher: self_consistency"]
        assert "| 5.0 |" in teacher_row  # five LLM calls per question
        # The served teacher is right on every other call: the majority is right or wrong, never "n/a".
        for stage in (run_dir / "stages").glob("*.json"):
            record = json.loads(stage.read_text())
            assert record["status"] == "done" and record["seconds"] >= 0 and record["commands"] is not None
        label = json.loads((run_dir / "stages" / "label__Arith.json").read_text())
        assert label["commands"][0].split()[1].endswith("label.py") and "--judge rule" in label["commands"][0]
        assert "OMP_NUM_THREADS" in label["env"]
        labeled_file = run_dir / "labels" / "Arith" / "labeled.jsonl"
        labeled = [json.loads(line) for line in labeled_file.read_text().splitlines()]
        assert len(labeled) == 2 and all({s["is_correct"] for s in r["solutions"]} == {True, False} for r in labeled)
        eval_base = [json.loads(line) for line in
                     (run_dir / "eval" / "Arith" / "base" / "cot_infer.jsonl").read_text().splitlines()]
        train_ids = {r["id"] for r in labeled}
        assert len(eval_base) == 2 and not train_ids & {r["id"] for r in eval_base}  # held-out questions

        everything = _digest(run_dir)
        third = _run(config, run_dir)
        assert third.returncode == 0, third.stderr
        assert "running" not in third.stdout
        assert third.stdout.count("done earlier") == len(list((run_dir / "stages").glob("*.json"))) == 13
        after = _digest(run_dir)
        changed = {k for k in everything if everything[k] != after.get(k)}
        assert changed <= {"pipeline.json"}, changed
