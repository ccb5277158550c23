"""prm/finetune2.py and prm.evaluate as a user runs them: the seed's command verbatim, and kill + resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_prm import write_synthetic

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled",
                "TOKENIZERS_PARALLELISM": "false"})
    return env


def _bash(command: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow  # two subprocesses that import torch and transformers: ~25 s
def test_seed_command_runs_verbatim_with_tiny_paths(tiny_model_path, tmp_path):
    train = write_synthetic(tmp_path / "labeled.jsonl", 12, seed=0)
    test = write_synthetic(tmp_path / "labeled_test.jsonl", 4, seed=1)
    out = tmp_path / "prm_qmsum"
    # The command with only the model and data paths swapped (--bf16 True stays: on a machine
    # without a GPU the script trains on CPU with bf16 autocast).
    train_command = (
        f"PYTHONPATH=$PYTHONPATH:$(pwd) python prm/finetune2.py --model_name_or_path {tiny_model_path} "
        f"--train_data_path {train} --output_dir {out} --num_train_epochs 3 "
        "--per_device_train_batch_size 64 --per_device_eval_batch_size 16 --gradient_accumulation_steps 1 "
        "--learning_rate 1e-4 --weight_decay 0.1 --adam_beta2 0.95 --warmup_ratio 0.0 --logging_steps 1 "
        "--save_strategy steps --save_steps 500 --save_total_limit 3 --bf16 True --gradient_checkpointing True "
        "--fix_llm True --enable_nan_monitoring True"
    ).replace("python ", f"{sys.executable} ", 1)
    done = _bash(train_command)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "kept 12 of 12 questions" in done.stdout and "saved the PRM" in done.stdout
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 3  # 48 solutions: 1 batch/epoch
    assert json.loads((out / "prm_config.json").read_text())["backbone"] == "base"  # frozen: head only

    evaluate_command = f"{sys.executable} -m prm.evaluate --prm {out} --data {test}"
    report = _bash(evaluate_command)
    assert report.returncode == 0, report.stderr[-3000:]
    for expected in ("4 questions, 16 judged solutions", "step", "majority_vote", "prm_min", "random"):
        assert expected in report.stdout


def _complete_checkpoints(out: Path) -> list[Path]:
    return sorted((p for p in out.glob("checkpoint-*") if (p / "trainer_state.json").is_file()),
                  key=lambda p: int(p.name.split("-")[1]))


@pytest.mark.slow  # two training subprocesses: ~30 s
def test_killed_mid_training_resumes_and_finishes(tiny_model_path, tmp_path):
    train = write_synthetic(tmp_path / "labeled.jsonl", 8, seed=0)
    out = tmp_path / "prm"
    max_steps = 20
    args = ["--model_name_or_path", tiny_model_path, "--train_data_path", str(train), "--output_dir", str(out),
            "--max_steps", str(max_steps), "--per_device_train_batch_size", "2", "--save_strategy", "steps",
            "--save_steps", "2", "--save_total_limit", "2", "--fix_llm", "True", "--learning_rate", "1e-2",
            "--report_to", "none", "--disable_tqdm", "True", "--logging_steps", "1"]
    first = subprocess.Popen([sys.executable, "-m", "prm.finetune2", *args], cwd=ROOT, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not _complete_checkpoints(out) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, "training ended before its first checkpoint: cannot test a kill"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    reached = int(_complete_checkpoints(out)[-1].name.split("-")[1])
    assert reached < max_steps and not (out / "prm_config.json").exists()  # it really died mid-training

    resumed = subprocess.run([sys.executable, "prm/finetune2.py", *args, "--resume_from_checkpoint", "last"],
                             cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == max_steps
    assert (out / f"checkpoint-{max_steps}").is_dir() and (out / "prm_config.json").is_file()
    assert f"resuming from {out / f'checkpoint-{reached}'} (global step {reached})" in resumed.stdout
    # Steps before the checkpoint come from the restored history, the rest from the rerun: each once.
    logged_steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged_steps == list(range(1, max_steps + 1))


def test_resume_flag_rejects_a_folder_without_checkpoints(tmp_path, capsys):
    from prm.finetune2 import main

    train = write_synthetic(tmp_path / "labeled.jsonl", 2, seed=0)
    rc = main(["--train_data_path", str(train), "--output_dir", str(tmp_path / "none"),
               "--resume_from_checkpoint", "last", "--report_to", "none"])
    assert rc == 2 and "no complete checkpoint" in capsys.readouterr().err


def test_resume_last_skips_a_checkpoint_cut_off_mid_save(tmp_path):
    from prm.finetune2 import _resume_path

    for step, complete in ((2, True), (4, True), (6, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert _resume_path("last", str(tmp_path)) == str(tmp_path / "checkpoint-4")
    assert _resume_path(str(tmp_path / "checkpoint-2"), str(tmp_path)) == str(tmp_path / "checkpoint-2")
