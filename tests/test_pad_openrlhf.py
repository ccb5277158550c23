"""PAD on OpenRLHF: the built command against OpenRLHF's flag names, and our reward_func on CPU."""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest

from distill.grpo_args import PadArguments, UsageError
from distill.grpo_openrlhf import build_command, check_openrlhf_flags, shell_line, write_inputs
from distill.pad_data import PromptRow

ROOT = Path(__file__).resolve().parents[1]

# As of openrlhf 0.11 train_ppo_ray (its namespaced argparse flags), the ones our command may use. Used only
# when openrlhf is not importable; otherwise the names are read from its installed source.
OPENRLHF_FLAGS = {
    "--actor.model_name_or_path", "--reward.remote_url", "--data.prompt_dataset", "--data.input_key",
    "--data.label_key", "--data.apply_chat_template", "--data.max_len", "--data.max_samples",
    "--rollout.max_new_tokens", "--rollout.temperature", "--rollout.top_p", "--rollout.n_samples_per_prompt",
    "--rollout.batch_size", "--rollout.micro_batch_size", "--train.batch_size", "--train.micro_batch_size",
    "--train.max_epochs", "--train.num_episodes", "--train.seed", "--train.colocate_all", "--actor.adam.lr",
    "--algo.kl.init_coef", "--algo.advantage.estimator", "--ckpt.output_dir", "--ckpt.path", "--ckpt.save_steps",
    "--ckpt.load_enable", "--logger.logging_steps", "--logger.tensorboard_dir", "--logger.wandb.key",
    "--logger.wandb.run_name", "--ds.attn_implementation", "--ds.zero_stage", "--ds.param_dtype",
    "--actor.gradient_checkpointing_enable", "--actor.num_nodes", "--actor.num_gpus_per_node", "--ref.num_nodes",
    "--ref.num_gpus_per_node", "--vllm.num_engines", "--vllm.tensor_parallel_size",
}


def openrlhf_flags() -> set[str]:
    """OpenRLHF's train_ppo_ray flag names: from its source when installed (its parser is built under
    `if __name__ == "__main__"`, so it is read, not imported), else the list above."""
    spec = importlib.util.find_spec("openrlhf")
    if spec is None or not spec.submodule_search_locations:
        return OPENRLHF_FLAGS
    source = (Path(list(spec.submodule_search_locations)[0]) / "cli" / "train_ppo_ray.py").read_text()
    names = set(re.findall(r"add_argument\(\s*\"(--[\w.]+)\"", source))
    for template in re.findall(r"add_argument\(\s*f\"(--\{prefix\}[\w.]+)\"", source):
        names |= {template.replace("{prefix}", prefix) for prefix in ("actor", "critic")}
    return names


SEED = dict(pretrain="Qwen/Qwen3-0.6B", reward_pretrain="outputs/prm_qmsum", prompt_data="unused",
            temperature=0.5, n_samples_per_prompt=8, advantage_estimator="rloo", reward_mode="PRMVR",
            micro_rollout_batch_size=4, rollout_batch_size=64, micro_train_batch_size=2, train_batch_size=128,
            actor_learning_rate=5e-7, init_kl_coef=0.001, prompt_max_len=40960, generate_max_len=2048, zero_stage=2,
            bf16=True, flash_attn=True, gradient_checkpointing=True, save_steps=20, logging_steps=1,
            actor_num_nodes=2, actor_num_gpus_per_node=8, vllm_num_engines=4, vllm_tensor_parallel_size=2,
            colocate_all_models=True, report_to="wandb", max_samples=1000)


def _rows() -> list[PromptRow]:
    messages = [{"role": "user", "content": "What is 2 + 3?\n\nReason step by step."}]
    return [PromptRow(messages, "What is 2 + 3?", "5", [])]


def test_command_uses_only_openrlhf_flag_names(tmp_path):
    args = PadArguments(**{**SEED, "save_path": str(tmp_path / "run")})
    check_openrlhf_flags(args)
    prompts, config = write_inputs(args, _rows(), "math")
    env, argv = build_command(args, prompts, config)
    assert argv[1:3] == ["-m", "openrlhf.cli.train_ppo_ray"]
    used = {word for word in argv if word.startswith("--")}
    assert used <= openrlhf_flags(), sorted(used - openrlhf_flags())

    def value(flag):
        return argv[argv.index(flag) + 1]

    assert value("--rollout.n_samples_per_prompt") == "8" and value("--rollout.batch_size") == "64"
    assert value("--train.batch_size") == "128" and value("--train.micro_batch_size") == "2"
    assert value("--data.max_len") == str(40960 + 2048) and value("--rollout.max_new_tokens") == "2048"
    assert value("--reward.remote_url").endswith("distill/openrlhf_reward.py")
    assert value("--logger.wandb.key") == "$WANDB_API_KEY"  # never a secret on the command line we print
    assert env["AGENTARK_PAD_REWARD_CONFIG"] == str(config)
    settings = json.loads(config.read_text())
    assert settings["reward_mode"] == "PRMVR" and settings["task_type"] == "math"
    line = json.loads(prompts.read_text().splitlines()[0])
    assert line["messages"] == _rows()[0].prompt and json.loads(line["label"])["gt"] == "5"
    assert "$WANDB_API_KEY" in shell_line(env, argv)


@pytest.mark.parametrize("change, message", [
    ({"reward_baseline": "token"}, "--reward_baseline is an --engine trl flag"),
    ({"max_steps": 5}, "--max_steps is an --engine trl flag"),
    ({"advantage_estimator": "ppo"}, "--advantage_estimator must be one of"),
])
def test_trl_only_flags_are_errors_on_openrlhf(change, message):
    with pytest.raises(UsageError, match=message):
        check_openrlhf_flags(PadArguments(**{**SEED, **change}))


def test_cli_dry_run_prints_the_command(tmp_path):
    import sys

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"query": "What is 2 + 3?", "gt": "5", "source": "Arith"}) + "\n")
    done = subprocess.run([sys.executable, "-m", "distill.grpo", "--engine", "openrlhf", "--dry_run", "--pretrain",
                           "Qwen/Qwen3-0.6B", "--reward_mode", "VR", "--prompt_data", str(prompts), "--save_path",
                           str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "-m openrlhf.cli.train_ppo_ray" in done.stdout and "--algo.advantage.estimator rloo" in done.stdout


class FakePRM:
    def __init__(self):
        self.calls = 0

    def score_many(self, items):
        self.calls += 1
        return [[0.2 if "wrong" in step else 0.8 for step in steps] for _, steps in items]


def test_reward_func_on_sample_queries(tmp_path, monkeypatch):
    from distill import openrlhf_reward
    from distill.rewards import PadReward, RewardSettings

    prompt = "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"
    queries = [prompt + "2 + 3 = 5.\n\nThe answer is \\boxed{5}.", prompt + "wrong: 2 + 3 = 6.\n\n\\boxed{6}"]
    labels = [json.dumps({"gt": "5", "prm_query": "What is 2 + 3?", "choices": []})] * 2

    config = tmp_path / "pad_reward.json"
    config.write_text(json.dumps({"reward_mode": "VR", "task_type": "math"}))
    monkeypatch.setenv("AGENTARK_PAD_REWARD_CONFIG", str(config))
    openrlhf_reward.configure(None)
    out = openrlhf_reward.reward_func(queries, [prompt, prompt], labels)
    assert out["rewards"].tolist() == [0.0, -1.0] and out["scores"].tolist() == [1.0, 0.0]
    assert set(out["extra_logs"]) == {"pad/vr"}

    prm = FakePRM()
    openrlhf_reward.configure(PadReward(RewardSettings("PRMVR", "math", "unused", verifiable_reward_coef=0.5), prm=prm))
    try:
        out = openrlhf_reward.reward_func(queries, [prompt, prompt], labels)
    finally:
        openrlhf_reward.configure(None)
    assert prm.calls == 1  # the batch in one call
    assert out["rewards"].tolist() == pytest.approx([0.8, 0.2 - 0.5])
    assert out["extra_logs"]["pad/prm"].tolist() == pytest.approx([0.8, 0.2])


def test_reward_func_without_config_is_one_line(monkeypatch):
    from distill import openrlhf_reward
    from distill.rewards import RewardConfigError

    monkeypatch.delenv("AGENTARK_PAD_REWARD_CONFIG", raising=False)
    openrlhf_reward.configure(None)
    with pytest.raises(RewardConfigError, match="AGENTARK_PAD_REWARD_CONFIG is not set"):
        openrlhf_reward.reward_func(["q"], ["q"], ["1"])


def test_ray_job_submit_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "ray_job_submit_pad.sh")]).returncode == 0
