"""PAD on TRL: flag mapping and one-line errors, the cot prompt, learning on the tiny model, PRMVR end to end,
kill and resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill.grpo_args import PadArguments, UsageError, check_common
from distill.grpo_trl import trl_config_values

ROOT = Path(__file__).resolve().parents[1]

SEED_FLAGS = dict(pretrain="Qwen/Qwen3-0.6B", reward_pretrain="outputs/prm_qmsum", prompt_data="labeled.jsonl",
                  save_path="outputs/grpo_qmsum", temperature=0.5, n_samples_per_prompt=8,
                  advantage_estimator="rloo", reward_baseline="token", reward_mode="PRMVR", verifiable_reward_coef=1.0,
                  micro_rollout_batch_size=4, rollout_batch_size=64, micro_train_batch_size=2, train_batch_size=128,
                  actor_learning_rate=5e-7, init_kl_coef=0.001, max_epochs=1, num_episodes=1, prompt_max_len=40960,
                  generate_max_len=2048, zero_stage=2, bf16=True, flash_attn=True, gradient_checkpointing=True,
                  save_steps=20, logging_steps=1)


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core box run ~50x faster on one thread than fighting for two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled",
                "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"})
    return env


# ---- flag mapping ------------------------------------------------------------------------------------

def test_seed_flags_map_onto_rloo_config(caplog):
    from trl import RLOOConfig

    args = PadArguments(**SEED_FLAGS)
    check_common(args)
    kind, values = trl_config_values(args, world_size=1, cuda=False)
    assert kind == "rloo"
    expected = {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 64, "generation_batch_size": 512,
                "num_generations": 8, "num_iterations": 1, "num_train_epochs": 1, "learning_rate": 5e-7,
                "beta": 0.001, "temperature": 0.5, "max_completion_length": 2048, "bf16": True,
                "gradient_checkpointing": True, "save_strategy": "steps", "save_steps": 20, "logging_steps": 1,
                "output_dir": "outputs/grpo_qmsum", "normalize_advantages": False, "use_vllm": False}
    assert {k: values[k] for k in expected} == expected
    assert values["model_init_kwargs"] == {"dtype": "bfloat16"}  # flash-attn is a GPU option: sdpa on CPU
    assert "deepspeed" not in values  # one process: nothing to shard
    assert "--zero_stage 2 ignored" in caplog.text and "--flash_attn ignored on CPU" in caplog.text
    config = RLOOConfig(**{**values, "bf16": False})  # TRL's own checks accept the arithmetic
    assert config.steps_per_generation == 256  # 512 completions / 2 per micro batch


def test_group_norm_maps_to_grpo_and_several_devices():
    args = PadArguments(**{**SEED_FLAGS, "advantage_estimator": "group_norm", "reward_baseline": None,
                           "zero_stage": None})
    kind, values = trl_config_values(args, world_size=4, cuda=False)
    assert kind == "grpo" and values["gradient_accumulation_steps"] == 16  # 128 / (2 x 4 devices)


@pytest.mark.parametrize("change, message", [
    ({"advantage_estimator": "gae"}, "--advantage_estimator gae has no TRL trainer"),
    ({"advantage_estimator": "group_norm"}, "--reward_baseline applies to --advantage_estimator rloo only"),
    ({"actor_num_nodes": 2}, "--actor_num_nodes is an --engine openrlhf flag"),
    ({"train_batch_size": 129, "rollout_batch_size": 129}, "not a multiple of --micro_train_batch_size"),
])
def test_flags_without_meaning_on_trl_are_one_line_errors(change, message):
    with pytest.raises(UsageError, match=message) as error:
        trl_config_values(PadArguments(**{**SEED_FLAGS, **change}), world_size=1, cuda=False)
    assert "\n" not in str(error.value)


def test_zero_stage_on_several_devices_needs_deepspeed():
    import importlib.util

    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed here")
    with pytest.raises(UsageError, match="pip install deepspeed"):
        trl_config_values(PadArguments(**SEED_FLAGS), world_size=2, cuda=False)


def test_impossible_batch_arithmetic_is_one_line():
    with pytest.raises(UsageError, match=r"64 x --n_samples_per_prompt 3 = 192 completions per rollout is not a "
                                         r"multiple of --train_batch_size 128"):
        check_common(PadArguments(**{**SEED_FLAGS, "n_samples_per_prompt": 3}))


def _grpo(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distill.grpo", *argv], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=120)


def test_cli_missing_prompt_data_and_bad_file_exit_2(tmp_path):
    done = _grpo("--pretrain", "x", "--reward_mode", "VR")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: --prompt_data is required: labeled records (label.py "
                                                "output), inference records, or a JSONL with --input_key/--label_key"]
    bad = tmp_path / "prompts.jsonl"
    bad.write_text('{"query": "What is 1 + 1?", "gt": "2", "source": "Arith"}\n{"query": "What is 2 + 2?"}\n')
    done = _grpo("--pretrain", "x", "--reward_mode", "VR", "--prompt_data", str(bad))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"error: {bad}:2: missing field 'gt'"


# ---- prompts ---------------------------------------------------------------------------------------------

def test_prompt_is_the_cot_prompt(tmp_path):
    """The student is trained on the messages `cot` sends at evaluation."""
    import asyncio

    from data.schema import Sample
    from distill.pad_data import load_prompt_rows
    from engine.scripted_backend import ScriptedEngine
    from methods.cot.cot import CoT

    record = {"id": "q1", "query": "Tom has 3 apples and buys 4 more. How many?", "gt": "7", "source": "GSM8K",
              "solutions": [], "labels": []}
    path = tmp_path / "labeled.jsonl"
    path.write_text(json.dumps(record) + "\n")
    rows, task_type = load_prompt_rows(path)
    assert task_type == "math" and rows[0].gt == "7" and rows[0].prm_query == record["query"]

    engine = ScriptedEngine(lambda messages, params: "\\boxed{7}")
    method = CoT(engine, CoT.load_config("config_main"), task_type="math")
    asyncio.run(method.solve(Sample(id="q1", query=record["query"], gt="7", source="GSM8K")))
    assert rows[0].prompt == engine.calls[0][0]


# ---- learning on the tiny model ---------------------------------------------------------------------

def digit_share(prompts, completions, **_):
    """A verifiable rule the tiny random model can learn: the share of its characters that are digits."""
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isdigit() for ch in t.replace(" ", "")) / max(len(t.replace(" ", "")), 1) for t in texts]


@pytest.mark.slow  # two 30-step trainings on the tiny model: ~25 s
@pytest.mark.parametrize("estimator", ["rloo", "group_norm"])
def test_grpo_and_rloo_learn_a_verifiable_reward(estimator, tiny_model_path, tmp_path, one_thread):
    from distill.grpo_trl import build_trainer

    rows = [{"prompt": [{"role": "user", "content": f"Write digits {i}."}], "gt": "0", "prm_query": "", "choices": []}
            for i in range(8)]
    args = PadArguments(pretrain=tiny_model_path, prompt_data="unused", save_path=str(tmp_path / "out"),
                        reward_mode="VR", advantage_estimator=estimator, n_samples_per_prompt=8, rollout_batch_size=2,
                        train_batch_size=16, micro_train_batch_size=16, micro_rollout_batch_size=8, generate_max_len=8,
                        max_steps=30, actor_learning_rate=1e-2, init_kl_coef=0.0, seed=0)
    trainer = build_trainer(args, rows, "math", reward_funcs=[digit_share])
    trainer.train()
    rewards = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
    assert len(rewards) == 30
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 0.3, rewards
    timings = [entry for entry in trainer.state.log_history if "time/generate_s" in entry]
    assert timings and all(entry["time/update_s"] >= 0 for entry in timings)


# ---- PRMVR end to end with a PRM trained here -------------------------------------------------------------

def _labeled(path: Path, num_questions: int) -> Path:
    lines = []
    for index in range(num_questions):
        a, b = index % 7 + 1, index % 5 + 2
        solutions = []
        for number, ok in enumerate([True, False, True, False], start=1):
            answer = a + b if ok else a + b + 1
            steps = [f"We add {a} and {b}.", f"{a} + {b} = {answer}." + ("" if ok else " #"),
                     f"The answer is \\boxed{{{answer}}}."]
            solutions.append({"id": number, "text": "\n\n".join(steps), "steps": steps, "is_correct": ok,
                              "answer": str(answer), "agent": number - 1, "role": "solver", "round": 0,
                              "method": "self_consistency"})
        lines.append(json.dumps({"id": f"q{index}", "query": f"What is {a} + {b}?", "gt": str(a + b),
                                 "source": "Arith", "solutions": solutions, "labels": [True, False, True, False]}))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow  # trains a PRM (finetune2), then 2 PAD steps: ~20 s
def test_prmvr_end_to_end_logs_each_reward_part(tiny_model_path, tmp_path, one_thread):
    from distill.grpo import main as grpo_main
    from prm.finetune2 import main as prm_main

    labeled = _labeled(tmp_path / "labeled.jsonl", 8)
    prm_dir = tmp_path / "prm"
    assert prm_main(["--model_name_or_path", tiny_model_path, "--train_data_path", str(labeled), "--output_dir",
                     str(prm_dir), "--max_steps", "2", "--per_device_train_batch_size", "8", "--report_to", "none",
                     "--save_strategy", "no", "--disable_tqdm", "True"]) == 0
    out = tmp_path / "student"
    rc = grpo_main(["--pretrain", tiny_model_path, "--reward_pretrain", str(prm_dir), "--prompt_data", str(labeled),
                    "--save_path", str(out), "--reward_mode", "PRMVR", "--verifiable_reward_coef", "0.5",
                    "--advantage_estimator", "rloo", "--reward_baseline", "token", "--n_samples_per_prompt", "4",
                    "--rollout_batch_size", "2", "--train_batch_size", "8", "--micro_train_batch_size", "4",
                    "--micro_rollout_batch_size", "4", "--generate_max_len", "12", "--max_steps", "2",
                    "--actor_learning_rate", "1e-4"])
    assert rc == 0
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    logged = [entry for entry in history if "rewards/prm/mean" in entry]
    assert logged and all("rewards/vr/mean" in entry and "pad/prm_baseline" in entry for entry in logged)
    assert all(0.0 <= entry["rewards/prm/mean"] <= 1.0 and -1.0 <= entry["rewards/vr/mean"] <= 0.0 for entry in logged)
    assert (out / "model.safetensors").is_file()


# ---- kill and resume ---------------------------------------------------------------------------------------

@pytest.mark.slow  # two training subprocesses: ~30 s
def test_killed_run_resumes_from_its_last_checkpoint(tiny_model_path, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"query": f"What is {i} + 1?", "gt": str(i + 1), "source": "Arith"}) + "\n"
                               for i in range(8)))
    out = tmp_path / "student"
    argv = [sys.executable, "-m", "distill.grpo", "--pretrain", tiny_model_path, "--prompt_data", str(prompts),
            "--save_path", str(out), "--reward_mode", "VR", "--n_samples_per_prompt", "2", "--rollout_batch_size",
            "2", "--train_batch_size", "4", "--micro_train_batch_size", "4", "--generate_max_len", "8",
            "--max_steps", "12", "--save_steps", "1", "--actor_learning_rate", "1e-4"]
    first = subprocess.Popen(argv, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoint-1" / "trainer_state.json").is_file():
        time.sleep(0.2)
    time.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (out / "checkpoint-1" / "trainer_state.json").is_file(), "no checkpoint before the deadline"
    assert not (out / "model.safetensors").is_file(), "the first run finished before it was killed"
    done = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stderr
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 12 and (out / "model.safetensors").is_file()
