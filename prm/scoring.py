"""Score many solutions at once: tokenise, sort by length, pad into batches, read the step head."""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from prm.model import PRM

logger = logging.getLogger(__name__)


def score_many(model: PRM, items: Sequence[tuple[str, list[str]]], batch_size: int = 16,
               progress: bool = False) -> list[list[float]]:
    """Per-step probabilities of being correct for each (query, steps) pair, in input order.

    Solutions are sorted by length so a batch pads little; the prompt of a query shared by many solutions
    is tokenised once. A step cut off by the PRM's max_length (only its earliest steps can be) scores NaN.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    template = model.template
    max_length = model.prm_config.max_length
    encoded = [template.encode(query, list(steps), max_length) for query, steps in items]
    cut = sum(1 for e in encoded if e.steps_cut)
    if cut:
        logger.warning("%d of %d solutions are longer than max_length %d: their first steps score NaN",
                       cut, len(encoded), max_length)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids), reverse=True)
    results: list[list[float]] = [[] for _ in encoded]
    device = next(model.head.parameters()).device
    pad_id = model.tokenizer.pad_token_id
    was_training = model.training
    model.eval()
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    with torch.inference_mode():
        for batch in tqdm(batches, desc="scoring", unit="batch", disable=not progress):
            longest = max(len(encoded[i].input_ids) for i in batch)
            if longest == 0:
                continue
            input_ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for row, index in enumerate(batch):
                ids = encoded[index].input_ids
                input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
                attention_mask[row, :len(ids)] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
            probs = torch.softmax(logits.float(), dim=-1)[..., 1].cpu()
            for row, index in enumerate(batch):
                positions = encoded[index].step_positions
                kept = probs[row, positions].tolist() if positions else []
                results[index] = [math.nan] * encoded[index].steps_cut + kept
    model.train(was_training)
    return results


__all__ = ["score_many"]
