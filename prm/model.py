"""The process reward model: a causal-LM backbone's hidden states and a 2-way head read at step separators.

A saved PRM folder holds `prm_config.json`, `head.safetensors`, the tokenizer, and, under `backbone/`,
whatever the base model does not already give: nothing for a frozen backbone (`--fix_llm`: the base model
is loaded again by name), full weights after full fine-tuning or a merged LoRA, or a LoRA adapter in
training checkpoints (merged only in the final save, so resuming keeps training the same adapter).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.modeling_outputs import TokenClassifierOutput

from prm.template import DEFAULT_SEPARATOR, Template

logger = logging.getLogger(__name__)

CONFIG_NAME = "prm_config.json"
HEAD_NAME = "head.safetensors"
BACKBONE_DIR = "backbone"
FORMAT = "agentark-prm"
IGNORE_INDEX = -100


class PRMLoadError(ValueError):
    """A folder that is not a saved PRM (one line naming the folder and what is missing)."""


@dataclass
class PRMConfig:
    """What `prm.load` needs besides weights; written as prm_config.json."""

    base_model: str
    separator: str = DEFAULT_SEPARATOR
    use_chat_template: bool = True
    label_mode: str = "outcome"
    max_length: int | None = None
    backbone: str = "base"  # base: reload base_model; full: weights in backbone/; lora: adapter in backbone/
    format: str = FORMAT
    version: int = 1

    def save(self, folder: Path) -> None:
        (folder / CONFIG_NAME).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> PRMConfig:
        path = folder / CONFIG_NAME
        if not path.is_file():
            raise PRMLoadError(f"{folder}: no {CONFIG_NAME} (not a PRM saved by prm/finetune2.py)")
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise PRMLoadError(f"{path}: format is {data.get('format')!r}, expected {FORMAT!r}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def step_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross entropy over the labelled (separator) positions only; every other position is IGNORE_INDEX."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                                       ignore_index=IGNORE_INDEX)


def _is_peft(module: nn.Module) -> bool:
    return hasattr(module, "peft_config")


def _hidden_size(backbone: nn.Module) -> int:
    config = backbone.get_base_model().config if _is_peft(backbone) else backbone.config
    config = getattr(config, "text_config", None) or config  # multimodal configs nest the language model's
    return int(config.hidden_size)


class PRM(nn.Module):
    """Backbone + linear step head. `score`/`score_many` give each step's probability of being correct."""

    def __init__(self, backbone: nn.Module, tokenizer: Any, config: PRMConfig, freeze_backbone: bool = False):
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.prm_config = config
        self.freeze_backbone = freeze_backbone
        # The head stays fp32 even over a bf16 backbone: it is tiny, and its logits feed the loss directly.
        self.head = nn.Linear(_hidden_size(backbone), 2, dtype=torch.float32)
        if freeze_backbone:
            self.backbone.requires_grad_(False)
        self.template = Template(tokenizer, config.separator, config.use_chat_template)

    # ---- forward ------------------------------------------------------------------------------------

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> TokenClassifierOutput:
        if self.freeze_backbone:
            # No activations are kept for a frozen backbone: this is what makes --fix_llm light on memory.
            with torch.no_grad():
                hidden = self._hidden(input_ids, attention_mask)
        else:
            hidden = self._hidden(input_ids, attention_mask)
        logits = self.head(hidden.to(self.head.weight.dtype))
        loss = step_loss(logits, labels) if labels is not None else None
        return TokenClassifierOutput(loss=loss, logits=logits)

    def _hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None, **kwargs: Any) -> None:
        """Trainer calls this for --gradient_checkpointing; a frozen backbone keeps no activations anyway."""
        if self.freeze_backbone:
            logger.info("--gradient_checkpointing has nothing to do with a frozen backbone (--fix_llm): skipped")
            return
        # Non-reentrant checkpointing needs no input that requires grad, which a LoRA backbone lacks.
        kwargs_out = {"use_reentrant": False, **(gradient_checkpointing_kwargs or {})}
        self.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs_out, **kwargs)

    # ---- scoring (prm/scoring.py does the work) -------------------------------------------------------

    def score(self, query: str, steps: list[str]) -> list[float]:
        """Probability that each step is correct, for one solution to `query` (the question text)."""
        from prm.scoring import score_many

        return score_many(self, [(query, steps)], progress=False)[0]

    def score_many(self, items: list[tuple[str, list[str]]], batch_size: int = 16,
                   progress: bool = False) -> list[list[float]]:
        """`score` for many (query, steps) pairs at once, batched; results in input order."""
        from prm.scoring import score_many

        return score_many(self, items, batch_size=batch_size, progress=progress)

    # ---- save -----------------------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path, merge_lora: bool = True) -> None:
        """Write the folder `prm.load` reads. `merge_lora=False` keeps a LoRA adapter apart (checkpoints)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = PRMConfig(**asdict(self.prm_config))
        backbone_dir = folder / BACKBONE_DIR
        if self.freeze_backbone:
            config.backbone = "base"
        elif _is_peft(self.backbone) and not merge_lora:
            config.backbone = "lora"
            self.backbone.save_pretrained(backbone_dir)
        else:
            config.backbone = "full"
            backbone = self.backbone
            if _is_peft(backbone):
                # merge_and_unload works in place, so only the final save merges (checkpoints pass False).
                backbone = backbone.merge_and_unload()
                self.backbone = backbone
            backbone.save_pretrained(backbone_dir)
        head_state = {name: tensor.detach().float().contiguous().cpu()
                      for name, tensor in self.head.state_dict().items()}
        save_file(head_state, str(folder / HEAD_NAME))
        self.tokenizer.save_pretrained(folder)
        config.save(folder)

    def load_trainable_state(self, folder: str | Path) -> None:
        """Load the head (and the backbone's trained weights or adapter) of a checkpoint into this model."""
        folder = Path(folder)
        config = PRMConfig.read(folder)
        self.head.load_state_dict(load_file(str(folder / HEAD_NAME)))
        backbone_dir = folder / BACKBONE_DIR
        if config.backbone == "lora":
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.backbone, load_file(str(backbone_dir / "adapter_model.safetensors")))
        elif config.backbone == "full":
            missing = set(self.backbone.state_dict())
            for shard in sorted(backbone_dir.glob("*.safetensors")):
                state = load_file(str(shard))
                self.backbone.load_state_dict(state, strict=False)
                missing -= set(state)
            # Tied weights (lm embeddings) may be saved once under one name; anything else missing is a bug.
            if missing and not all("embed" in name or "lm_head" in name for name in missing):
                raise PRMLoadError(f"{backbone_dir}: backbone weights missing: {sorted(missing)[:5]}")


__all__ = ["CONFIG_NAME", "IGNORE_INDEX", "PRM", "PRMConfig", "PRMLoadError", "step_loss"]
