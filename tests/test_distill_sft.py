"""distill.sft on the tiny model: it learns a held-out task, resumes after a kill, merges LoRA, rejects bad flags."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill import sft
from distill.sft_config import SFTUsageError
from distill.sft_training import last_complete_checkpoint, read_sft_rows, resolve_resume

ROOT = Path(__file__).resolve().parents[1]
COLORS = {"apple": "red", "banana": "yellow", "plum": "purple", "lime": "green"}
FAST = ["--gradient_checkpointing", "False", "--disable_tqdm", "True", "--report_to", "none",
        "--logging_steps", "10", "--dataloader_pin_memory", "False"]


def color_prompt(order: int, fruit: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Order {order}: what color is the {fruit}?"}]


def color_task(num_train: int = 200, num_test: int = 24, seed: int = 0):
    """A lookup task: the answer depends on the fruit; the order number is noise, new in every held-out prompt."""
    rng = random.Random(seed)
    orders = rng.sample(range(1000, 10000), num_train + num_test)
    examples = [(order, rng.choice(sorted(COLORS))) for order in orders]
    train = [{"id": str(o), "prompt": color_prompt(o, f), "completion": [{"role": "assistant", "content": COLORS[f]}]}
             for o, f in examples[:num_train]]
    return train, examples[num_train:]


def write_rows(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def accuracy(model_path, held_out) -> float:
    """Greedy answers of the checkpoint at `model_path`, loaded with plain transformers, against the table."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    correct = 0
    with torch.inference_mode():
        for order, fruit in held_out:
            inputs = tokenizer.apply_chat_template(color_prompt(order, fruit), add_generation_prompt=True,
                                                   return_tensors="pt", return_dict=True)
            output = model.generate(**inputs, max_new_tokens=6, do_sample=False)
            text = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            correct += text.strip() == COLORS[fruit]
    return correct / len(held_out)


@pytest.mark.slow
def test_sft_cli_teaches_the_tiny_model_answers_on_held_out_prompts(tiny_model_path, tmp_path):
    train, held_out = color_task()
    data = write_rows(tmp_path / "train.jsonl", train)
    out = tmp_path / "student"
    assert accuracy(tiny_model_path, held_out) < 0.5
    code = sft.main(["--model_name_or_path", tiny_model_path, "--train_data", str(data), "--output_dir", str(out),
                     "--max_steps", "40", "--learning_rate", "3e-3", "--per_device_train_batch_size", "8",
                     "--warmup_ratio", "0.1", "--save_strategy", "no", "--seed", "0", *FAST])
    assert code == 0
    assert accuracy(out, held_out) >= 0.8


def _sft_command(tiny_model_path, data, out, *extra):
    return [sys.executable, "-m", "distill.sft", "--model_name_or_path", tiny_model_path, "--train_data", str(data),
            "--output_dir", str(out), "--max_steps", "20", "--learning_rate", "1e-3", "--per_device_train_batch_size",
            "4", "--save_steps", "2", "--save_strategy", "steps", *FAST, *extra]


@pytest.mark.slow
def test_sft_resumes_after_a_kill(tiny_model_path, tmp_path):
    train, _ = color_task(num_train=40)
    data = write_rows(tmp_path / "train.jsonl", train)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(_sft_command(tiny_model_path, data, out), cwd=ROOT, env=env, stdout=log,
                             stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while last_complete_checkpoint(out) is None and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, "the first run ended before it could be killed"
        first.kill()  # SIGKILL: no chance to clean up, as after a crash or a preempted node
    finally:
        first.wait()
        log.close()
    killed_at = int(Path(last_complete_checkpoint(out)).name.split("-")[1])
    assert killed_at < 20 and not (out / "model.safetensors").exists()
    second = subprocess.run(_sft_command(tiny_model_path, data, out, "--resume_from_checkpoint"), cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stderr[-2000:]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 20
    assert f"resuming from {out / f'checkpoint-{killed_at}'}" in second.stderr
    assert (out / "model.safetensors").exists()


@pytest.mark.slow
def test_lora_merge_saves_a_plain_checkpoint(tiny_model_path, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    train, _ = color_task(num_train=16)
    data = write_rows(tmp_path / "train.jsonl", train)
    out = tmp_path / "merged"
    code = sft.main(["--model_name_or_path", tiny_model_path, "--train_data", str(data), "--output_dir", str(out),
                     "--use_lora", "--merge_lora", "--lora_r", "4", "--lora_alpha", "8", "--max_steps", "3",
                     "--learning_rate", "1e-2", "--per_device_train_batch_size", "4", "--save_strategy", "no", *FAST])
    assert code == 0
    assert not (out / "adapter_config.json").exists() and (out / "lora_adapter" / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert type(merged).__name__ == "LlamaForCausalLM"
    changed = [name for name, weight in merged.state_dict().items()
               if not torch.equal(weight, base.state_dict()[name])]
    assert changed and all("proj" in name for name in changed)  # only the adapted linear layers moved
    assert (out / "tokenizer_config.json").exists()


def test_warmup_ratio_becomes_fractional_warmup_steps(tmp_path):
    _, _, args = sft.parse_args(["--output_dir", str(tmp_path), "--warmup_ratio", "0.1", "--report_to", "none"])
    assert args.warmup_steps == pytest.approx(0.1)
    with pytest.raises(SFTUsageError, match="--warmup_ratio"):
        sft.parse_args(["--output_dir", str(tmp_path), "--warmup_ratio", "0.1", "--warmup_steps", "5"])


def test_bf16_falls_back_to_fp32_with_one_warning_where_it_cannot_run(tmp_path, caplog, monkeypatch):
    import distill.sft_config as config

    monkeypatch.setattr(config, "bf16_can_run", lambda use_cpu: False)
    with caplog.at_level("WARNING"):
        _, _, args = sft.parse_args(["--output_dir", str(tmp_path), "--bf16"])
    assert args.bf16 is False
    assert len([r for r in caplog.records if "bf16" in r.getMessage()]) == 1
    caplog.clear()
    _, _, args = sft.parse_args(["--output_dir", str(tmp_path)])  # unset: fp32 here, quietly
    assert args.bf16 is False and not [r for r in caplog.records if "bf16" in r.getMessage()]


def test_bare_resume_flag_means_the_last_checkpoint(tmp_path):
    _, _, args = sft.parse_args(["--output_dir", str(tmp_path), "--resume_from_checkpoint", "--max_steps", "3"])
    assert args.resume_from_checkpoint == "True" and args.max_steps == 3
    assert resolve_resume("True", str(tmp_path)) is None  # nothing saved yet: start afresh
    for step, whole in ((2, True), (4, True), (6, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if whole:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert resolve_resume("True", str(tmp_path)) == str(tmp_path / "checkpoint-4")  # 6 was cut off mid-save
    assert resolve_resume(None, str(tmp_path)) is None
    with pytest.raises(SFTUsageError, match="no such checkpoint"):
        resolve_resume(str(tmp_path / "nope"), str(tmp_path))


@pytest.mark.skipif(__import__("importlib").util.find_spec("wandb") is not None, reason="wandb is installed")
def test_report_to_wandb_without_wandb_is_one_clear_line(tmp_path, capsys):
    assert sft.main(["--output_dir", str(tmp_path), "--report_to", "wandb"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install wandb" in err


def test_deepspeed_config_is_checked(tmp_path, capsys):
    config = json.loads((ROOT / "configs" / "ds_zero2.json").read_text())
    assert config["zero_optimization"]["stage"] == 2
    assert sft.main(["--output_dir", str(tmp_path), "--deepspeed", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("argv_extra, message", [
    ([], "--model_name_or_path is required"),
    (["--model_name_or_path", "m"], "--train_data is required"),
    (["--model_name_or_path", "m", "--train_data", "x.jsonl", "--merge_lora"], "--merge_lora needs --use_lora"),
])
def test_missing_flags_exit_2(tmp_path, capsys, argv_extra, message):
    assert sft.main(["--output_dir", str(tmp_path), "--report_to", "none", *argv_extra]) == 2
    assert message in capsys.readouterr().err


def test_bad_train_rows_name_the_line(tmp_path):
    path = write_rows(tmp_path / "bad.jsonl", [color_task(2)[0][0], {"prompt": "text", "completion": []}])
    with pytest.raises(SFTUsageError, match=r"bad.jsonl:2: field 'prompt'"):
        read_sft_rows(path)
    rows = read_sft_rows(write_rows(tmp_path / "ok.jsonl", color_task(3)[0]))
    assert set(rows[0]) == {"prompt", "completion"}
