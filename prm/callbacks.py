"""NaN monitoring: skip an optimizer step whose loss or gradients are not finite, record its batch, and
stop after too many such steps in a row (one bad batch is noise; a run of them is a diverged model)."""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)


class NonFiniteTrainingError(RuntimeError):
    """Training stopped: too many consecutive steps with a NaN/inf loss or gradient norm."""


@dataclass
class StepProbe:
    """What the trainer saw during the current optimizer step (all its micro-batches)."""

    losses: list[float] = field(default_factory=list)
    example_ids: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.losses.clear()
        self.example_ids.clear()


def grad_norm(parameters) -> float:
    """The global L2 norm of the gradients (inf/NaN when any gradient is)."""
    norms = [p.grad.detach().float().norm() for p in parameters if p.grad is not None]
    if not norms:
        return 0.0
    return float(torch.stack(norms).norm())


class NanMonitor(TrainerCallback):
    """Checks each step's loss and gradient norm before the optimizer runs.

    A bad step has its gradients dropped (set to None, so the optimizer leaves every weight alone), and its
    example ids, losses and norm go to `<output_dir>/nan_debug/step-<N>.json`. After `patience` bad steps
    in a row it raises NonFiniteTrainingError, which the script reports in one line.
    """

    def __init__(self, probe: StepProbe, patience: int = 5):
        if patience < 1:
            raise ValueError(f"--nan_patience must be >= 1, got {patience}")
        self.probe = probe
        self.patience = patience
        self.consecutive_bad = 0
        self.bad_steps = 0

    def on_step_begin(self, args, state, control, **kwargs):
        self.probe.reset()

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        params = [p for p in model.parameters() if p.requires_grad]
        norm = grad_norm(params)
        losses = list(self.probe.losses)
        if all(math.isfinite(loss) for loss in losses) and math.isfinite(norm):
            self.consecutive_bad = 0
            return
        for p in params:
            p.grad = None
        self.consecutive_bad += 1
        self.bad_steps += 1
        step = state.global_step + 1  # the step being taken
        debug_dir = Path(args.output_dir) / "nan_debug"
        if args.should_save:
            debug_dir.mkdir(parents=True, exist_ok=True)
            (debug_dir / f"step-{step}.json").write_text(json.dumps(
                {"step": step, "losses": [repr(x) for x in losses], "grad_norm": repr(norm),
                 "example_ids": list(self.probe.example_ids)}, indent=1) + "\n", encoding="utf-8")
        logger.warning("step %d: non-finite loss %s or gradient norm %s: step skipped, batch ids in %s",
                       step, losses, norm, debug_dir)
        if self.consecutive_bad >= self.patience:
            raise NonFiniteTrainingError(
                f"{self.consecutive_bad} steps in a row with a NaN/inf loss or gradient (last: step {step}); "
                f"batch ids in {debug_dir}; try a lower --learning_rate or check those examples")


__all__ = ["NanMonitor", "NonFiniteTrainingError", "StepProbe", "grad_norm"]
