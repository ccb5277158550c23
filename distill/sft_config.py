"""The arguments of `python -m distill.sft`: TRL's SFTConfig (every TrainingArguments flag) plus model and data.

`SFTArguments` extends SFTConfig only where the installed stack would otherwise fail on a flag users of the
paper's scripts pass: `--warmup_ratio` (gone from transformers 5: a float `warmup_steps` below 1 is the ratio
now), `--bf16` where bf16 cannot run, and optional integrations (wandb, DeepSpeed) that are not installed.
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

from trl import SFTConfig

logger = logging.getLogger(__name__)


class SFTUsageError(ValueError):
    """A flag that cannot work as given; the message is one line naming the flag."""


def bf16_can_run(use_cpu: bool) -> bool:
    """What TrainingArguments accepts for bf16: a bf16-capable GPU or XLA device, or training on the CPU."""
    from transformers.utils import is_torch_bf16_gpu_available, is_torch_xla_available

    return use_cpu or is_torch_bf16_gpu_available() or is_torch_xla_available()


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "the student: a hub id or a local checkpoint (required)"})
    use_lora: bool = field(default=False, metadata={"help": "train LoRA adapters (peft) instead of every weight"})
    merge_lora: bool = field(
        default=False, metadata={"help": "with --use_lora: save the merged model to output_dir, so it loads "
                                         "without peft (the adapter goes to output_dir/lora_adapter)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA branch"})
    lora_target_modules: str = field(
        default="all-linear", metadata={"help": "modules to adapt: 'all-linear' or comma-separated names "
                                                "(q_proj,k_proj,v_proj,o_proj)"})


@dataclass
class DataArguments:
    train_data: str | None = field(
        default=None, metadata={"help": "prompt-completion JSONL from python -m distill.build_data (required)"})
    eval_data: str | None = field(
        default=None, metadata={"help": "optional held-out JSONL in the same format, evaluated after training "
                                        "(and during it with --eval_strategy steps)"})


@dataclass
class SFTArguments(SFTConfig):
    # Redeclared so a bare `--bf16` works: the parser gives an optional bool with a None default no bare form.
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 mixed precision; unset: on where the hardware supports it (TRL's "
                                        "default), else fp32. Asked for where it cannot run: fp32, with a warning",
                                "nargs": "?", "const": True})
    warmup_ratio: float | None = field(
        default=None, metadata={"help": "share of the training steps spent warming up; transformers 5 dropped "
                                        "this flag, so it is passed on as a fractional --warmup_steps"})

    def __post_init__(self) -> None:
        if "warmup_ratio" in _parent_fields():  # an older transformers: its own flag does the work
            self.warmup_ratio = self.warmup_ratio or 0.0
        elif self.warmup_ratio is not None:
            if not 0.0 <= self.warmup_ratio < 1.0:
                raise SFTUsageError(f"--warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
            if self.warmup_steps:
                raise SFTUsageError("give --warmup_ratio or --warmup_steps, not both")
            self.warmup_steps = float(self.warmup_ratio)
        if self.bf16 is not False and not bf16_can_run(self.use_cpu):
            if self.bf16:  # asked for: say why it is off. Unset (TRL's default is on): quietly fp32.
                logger.warning("--bf16: no bf16-capable GPU here; training in fp32 (add --use_cpu to train in bf16 "
                               "on the CPU)")
            self.bf16 = False
        report_to = [self.report_to] if isinstance(self.report_to, str) else list(self.report_to or [])
        if "wandb" in report_to and importlib.util.find_spec("wandb") is None:
            raise SFTUsageError("--report_to wandb: wandb is not installed (pip install wandb)")
        if isinstance(self.deepspeed, str) and self.deepspeed.endswith(".json") and \
                not Path(self.deepspeed).is_file():
            raise SFTUsageError(f"--deepspeed {self.deepspeed}: no such file")
        if self.deepspeed and importlib.util.find_spec("deepspeed") is None:
            raise SFTUsageError(f"--deepspeed {self.deepspeed}: deepspeed is not installed "
                                "(pip install -r requirements-gpu.txt, or DS_BUILD_OPS=0 pip install deepspeed)")
        super().__post_init__()


def _parent_fields() -> set[str]:
    return {f.name for f in fields(SFTConfig)}


__all__ = ["DataArguments", "ModelArguments", "SFTArguments", "SFTUsageError", "bf16_can_run"]
