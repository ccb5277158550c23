"""The HF Trainer, taught to save and resume a PRM folder and to tell the NaN monitor what it trained on."""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from transformers import Trainer
from transformers.trainer_utils import EvalPrediction

from prm.callbacks import StepProbe
from prm.metrics import auroc
from prm.model import IGNORE_INDEX, PRM, step_loss


class PRMTrainer(Trainer):
    """Cross entropy at labelled separator positions; checkpoints are PRM folders (`prm.load` reads them)."""

    def __init__(self, *args: Any, probe: StepProbe | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.probe = probe or StepProbe()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        example_ids = inputs.pop("example_ids", [])
        labels = inputs.pop("labels")
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"))
        loss = step_loss(outputs.logits, labels.to(outputs.logits.device))
        if model.training:
            self.probe.losses.append(float(loss.detach()))
            self.probe.example_ids.extend(example_ids)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = dict(inputs)
        inputs.pop("example_ids", None)
        labels = inputs["labels"]
        with torch.no_grad():
            loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
        if prediction_loss_only:
            return loss.detach(), None, None
        # Only P(correct) per position travels to compute_metrics: a (batch, length) array, not logits.
        probs = torch.softmax(outputs.logits.float(), dim=-1)[..., 1]
        return loss.detach(), probs.detach(), labels

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        model: PRM = self.accelerator.unwrap_model(self.model)
        model.save_pretrained(output_dir, merge_lora=False)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        target: PRM = self.accelerator.unwrap_model(model or self.model)
        target.load_trainable_state(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        self._load_from_checkpoint(self.state.best_model_checkpoint)


def step_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Held-out step AUROC and accuracy at 0.5 over the labelled positions."""
    probs = np.asarray(prediction.predictions, dtype=float)
    labels = np.asarray(prediction.label_ids)
    mask = labels != IGNORE_INDEX
    scores, truth = probs[mask], labels[mask].astype(int)
    return {"step_auroc": auroc(scores, truth), "step_accuracy": float(np.mean((scores >= 0.5) == (truth == 1)))}


__all__ = ["PRMTrainer", "step_metrics"]
