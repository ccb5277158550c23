"""SFT of a student on prompt-completion rows with TRL's SFTTrainer: data, LoRA, resume, and the saved student.

The saved student is a plain checkpoint (merged when LoRA is merged), so `inference.py --model_name <dir>`
and the eval CLIs load it like any model; `cot` is its method.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from data.errors import DataError
from data.loaders import iter_json_objects
from distill.sft_config import DataArguments, ModelArguments, SFTArguments, SFTUsageError

logger = logging.getLogger(__name__)

ADAPTER_SUBDIR = "lora_adapter"
TRAINER_STATE = "trainer_state.json"  # the Trainer writes it last into a checkpoint
_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0", "none", "")


def _check_messages(value: Any, name: str, where: str) -> None:
    if not isinstance(value, list) or not value:
        raise SFTUsageError(f"{where}: field {name!r} must be a non-empty list of chat messages "
                            "(build it with python -m distill.build_data)")
    for position, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) \
                or not isinstance(message.get("content"), str):
            raise SFTUsageError(f"{where}: field {name!r}[{position}] needs string 'role' and 'content'")


def read_sft_rows(path: str | Path, flag: str = "--train_data") -> list[dict[str, Any]]:
    """The prompt/completion pairs of a JSONL file (other columns are left out); bad rows fail naming the line."""
    path = Path(path)
    if not path.is_file():
        raise SFTUsageError(f"{flag} {path}: no such file")
    rows = []
    try:
        for row, where in iter_json_objects(path):
            _check_messages(row.get("prompt"), "prompt", where)
            _check_messages(row.get("completion"), "completion", where)
            rows.append({"prompt": row["prompt"], "completion": row["completion"]})
    except DataError as error:
        raise SFTUsageError(str(error)) from None
    if not rows:
        raise SFTUsageError(f"{flag} {path}: no examples")
    return rows


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest `checkpoint-N` of output_dir that was saved whole.

    The Trainer writes a checkpoint in place and its `trainer_state.json` last, so a run killed while saving
    leaves a newest folder without one; transformers' `get_last_checkpoint` would pick it and fail to load.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    steps = sorted(((int(m.group(1)), p) for p in output_dir.iterdir()
                    if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name))), reverse=True)
    for _, path in steps:
        if (path / TRAINER_STATE).is_file():
            return str(path)
        logger.warning("%s was cut off while saving (no %s); skipping it", path, TRAINER_STATE)
    return None


def resolve_resume(value: str | bool | None, output_dir: str) -> str | None:
    """`--resume_from_checkpoint` as trainer.train wants it: the last checkpoint of output_dir for True, a path
    as given, None to start afresh (also when True finds no checkpoint yet: a first run may be rerun as is)."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in _FALSE):
        return None
    if value is True or value.strip().lower() in _TRUE:
        last = last_complete_checkpoint(output_dir)
        if last is None:
            logger.warning("--resume_from_checkpoint: no checkpoint in %s yet; starting from the beginning", output_dir)
        return last
    if not Path(value).is_dir():
        raise SFTUsageError(f"--resume_from_checkpoint {value}: no such checkpoint directory")
    return value


def lora_config(model_args: ModelArguments) -> Any:
    from peft import LoraConfig

    targets = model_args.lora_target_modules.strip()
    target_modules: str | list[str] = targets if targets == "all-linear" else \
        [name.strip() for name in targets.split(",") if name.strip()]
    return LoraConfig(r=model_args.lora_r, lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
                      target_modules=target_modules, task_type="CAUSAL_LM")


def _check_args(model_args: ModelArguments, data_args: DataArguments) -> None:
    if not model_args.model_name_or_path:
        raise SFTUsageError("--model_name_or_path is required (the student: a hub id or a checkpoint path)")
    if not data_args.train_data:
        raise SFTUsageError("--train_data is required (JSONL from python -m distill.build_data)")
    if model_args.merge_lora and not model_args.use_lora:
        raise SFTUsageError("--merge_lora needs --use_lora")


def load_tokenizer(model_args: ModelArguments, args: SFTArguments) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, trust_remote_code=args.trust_remote_code)
    if not tokenizer.chat_template and not args.chat_template_path:
        raise SFTUsageError(f"--model_name_or_path {model_args.model_name_or_path}: the tokenizer has no chat "
                            "template; pass --chat_template_path")
    return tokenizer


def build_trainer(model_args: ModelArguments, data_args: DataArguments, args: SFTArguments) -> Any:
    """An SFTTrainer over the student (loaded from its path by TRL) and the prompt-completion rows."""
    from datasets import Dataset
    from trl import SFTTrainer

    _check_args(model_args, data_args)
    train = Dataset.from_list(read_sft_rows(data_args.train_data))
    evaluation = Dataset.from_list(read_sft_rows(data_args.eval_data, "--eval_data")) if data_args.eval_data \
        else None
    tokenizer = load_tokenizer(model_args, args)
    logger.info("student=%s train=%s (%d examples) eval=%s lora=%s", model_args.model_name_or_path,
                data_args.train_data, len(train), data_args.eval_data, model_args.use_lora)
    return SFTTrainer(model=model_args.model_name_or_path, args=args, train_dataset=train, eval_dataset=evaluation,
                      processing_class=tokenizer, peft_config=lora_config(model_args) if model_args.use_lora else None)


def merge_adapter(base: str, adapter_dir: Path, output_dir: Path, trust_remote_code: bool = False) -> None:
    """Fold a saved LoRA adapter into its base weights and save a plain checkpoint to `output_dir`.

    Merged from the saved adapter rather than the live model: under ZeRO-3 the live weights are sharded.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, trust_remote_code=trust_remote_code, dtype="auto")
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(output_dir)


def save_student(trainer: Any, model_args: ModelArguments, args: SFTArguments) -> Path:
    """Save the student and its tokenizer to output_dir (merged, when LoRA is merged) and return the path."""
    output_dir = Path(args.output_dir)
    if not (model_args.use_lora and model_args.merge_lora):
        trainer.save_model(str(output_dir))
        return output_dir
    adapter_dir = output_dir / ADAPTER_SUBDIR
    trainer.save_model(str(adapter_dir))
    trainer.accelerator.wait_for_everyone()
    if trainer.accelerator.is_main_process:
        merge_adapter(model_args.model_name_or_path, adapter_dir, output_dir, args.trust_remote_code)
        trainer.processing_class.save_pretrained(output_dir)
    trainer.accelerator.wait_for_everyone()
    return output_dir


def run_sft(model_args: ModelArguments, data_args: DataArguments, args: SFTArguments) -> Path:
    """Train, save the student, evaluate on --eval_data when given; returns where the student is."""
    _check_args(model_args, data_args)
    resume = resolve_resume(args.resume_from_checkpoint, args.output_dir)
    if resume is None and last_complete_checkpoint(args.output_dir):
        logger.warning("%s holds checkpoints; training starts afresh (--resume_from_checkpoint continues instead)",
                       args.output_dir)
    trainer = build_trainer(model_args, data_args, args)
    if resume:
        logger.info("resuming from %s", resume)
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    output_dir = save_student(trainer, model_args, args)
    if trainer.eval_dataset is not None:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    return output_dir


__all__ = ["ADAPTER_SUBDIR", "build_trainer", "last_complete_checkpoint", "lora_config", "merge_adapter",
           "read_sft_rows", "resolve_resume", "run_sft", "save_student"]
