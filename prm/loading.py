"""Build a PRM to train from a base model, and `load` a saved one for scoring."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from prm.model import BACKBONE_DIR, HEAD_NAME, PRM, PRMConfig, PRMLoadError

logger = logging.getLogger(__name__)


def _cpu_has_bf16() -> bool:
    """Native bf16 arithmetic (AVX512-BF16 or AMX); without it bf16 on CPU is emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_dtype(device: str | torch.device) -> torch.dtype:
    """bf16 where the device computes in it natively, else fp32 (fp16 overflows too easily for logits)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if kind == "cpu":
        return torch.bfloat16 if _cpu_has_bf16() else torch.float32
    return torch.float32


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(name_or_path: str | Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    if tokenizer.pad_token_id is None:
        # Padding positions are masked and never labelled, so any id will do; EOS is always there.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_backbone(name_or_path: str | Path, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The base model without its LM head (hidden states only)."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(name_or_path), dtype=dtype or torch.float32)


def build_prm(model_name_or_path: str, *, label_mode: str = "outcome", max_length: int | None = None,
              separator: str | None = None, fix_llm: bool = False, use_lora: bool = False,
              lora_r: int = 16, lora_alpha: int = 32, lora_dropout: float = 0.05,
              lora_target_modules: str = "all-linear", backbone_dtype: torch.dtype | None = None,
              seed: int = 0) -> PRM:
    """A fresh PRM for training: the base model's backbone, a new head, LoRA adapters with `use_lora`."""
    if fix_llm and use_lora:
        raise ValueError("--fix_llm and --use_lora exclude each other: --fix_llm trains the head only")
    tokenizer = load_tokenizer(model_name_or_path)
    backbone = load_backbone(model_name_or_path, backbone_dtype)
    if use_lora:
        from peft import LoraConfig, get_peft_model

        targets: Any = lora_target_modules
        if targets != "all-linear":
            targets = [name.strip() for name in targets.split(",") if name.strip()]
        lora = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=targets,
                          bias="none")
        backbone = get_peft_model(backbone, lora)
    # A local base model is recorded by absolute path: a head-only PRM reloads it from wherever it is loaded.
    local = Path(model_name_or_path)
    base_model = str(local.resolve()) if local.is_dir() else str(model_name_or_path)
    config = PRMConfig(base_model=base_model, label_mode=label_mode, max_length=max_length,
                       use_chat_template=bool(tokenizer.chat_template))
    if separator is not None:
        config.separator = separator
    torch.manual_seed(seed)  # the head's initial weights, reproducibly
    return PRM(backbone, tokenizer, config, freeze_backbone=fix_llm)


def load(path: str | Path, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> PRM:
    """A saved PRM, ready to score: eval mode, on `device` (default GPU if any), in `dtype`
    (default bf16 where the device has it natively)."""
    folder = Path(path)
    if not folder.is_dir():
        raise PRMLoadError(f"{folder}: no such PRM folder")
    config = PRMConfig.read(folder)
    device = torch.device(device or default_device())
    dtype = dtype or default_dtype(device)
    if config.backbone == "full":
        backbone = load_backbone(folder / BACKBONE_DIR, dtype)
    elif config.backbone in ("base", "lora"):
        backbone = load_backbone(config.base_model, dtype)
        if config.backbone == "lora":
            from peft import PeftModel

            backbone = PeftModel.from_pretrained(backbone, str(folder / BACKBONE_DIR)).merge_and_unload()
    else:
        raise PRMLoadError(f"{folder}: unknown backbone kind {config.backbone!r} in prm_config.json")
    tokenizer = load_tokenizer(folder)
    model = PRM(backbone, tokenizer, config, freeze_backbone=True)
    if not (folder / HEAD_NAME).is_file():
        raise PRMLoadError(f"{folder}: no {HEAD_NAME}")
    model.head.load_state_dict(load_file(str(folder / HEAD_NAME)))
    return model.to(device).eval()


__all__ = ["build_prm", "default_device", "default_dtype", "load", "load_backbone", "load_tokenizer"]
