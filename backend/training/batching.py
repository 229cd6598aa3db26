"""Deterministic batch order and padding-light collation.

The whole run's batch order is a pure function of (seed, epoch), so a resumed run replays exactly
the batches an uninterrupted run would have seen. With `group_by_length`, examples are shuffled,
cut into mega-batches of 64 batches, sorted by length inside each, and the resulting batches
shuffled again: the same data per epoch, far less padding.
"""

from __future__ import annotations

import math
import random

import torch

from backend.training.tokenize import IGNORE, Encoded

MEGA = 64


def epoch_batches(
    lengths: list[int], *, batch_size: int, seed: int, epoch: int, group_by_length: bool
) -> list[list[int]]:
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        mega = batch_size * MEGA
        order = [
            i
            for start in range(0, len(order), mega)
            for i in sorted(order[start : start + mega], key=lambda j: -lengths[j])
        ]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def run_batches(
    lengths: list[int], *, batch_size: int, seed: int, epochs: float, group_by_length: bool
) -> list[list[int]]:
    """All micro-batches of the run, epoch after epoch (a fractional last epoch is cut short)."""
    per_epoch = math.ceil(len(lengths) / batch_size)
    total = max(1, round(per_epoch * epochs))
    out: list[list[int]] = []
    epoch = 0
    while len(out) < total:
        out.extend(
            epoch_batches(lengths, batch_size=batch_size, seed=seed, epoch=epoch, group_by_length=group_by_length)
        )
        epoch += 1
    return out[:total]


def by_tokens(items: list[Encoded], max_tokens: int, *, skip: int = 0) -> list[list[Encoded]]:
    """`items` in consecutive passes of at most `max_tokens` padded tokens each (rows × longest row,
    without the first `skip` tokens of each, read once elsewhere; a row longer than that alone).
    Summed losses over the passes give the batch's gradient exactly."""
    if max_tokens <= 0:
        return [items]
    passes: list[list[Encoded]] = []
    current: list[Encoded] = []
    for e in items:
        width = max([len(e.input_ids)] + [len(c.input_ids) for c in current]) - skip
        if current and (len(current) + 1) * width > max_tokens:
            passes.append(current)
            current = []
        current.append(e)
    return passes + [current] if current else passes


def collate(items: list[Encoded], *, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest item. No attention mask is needed: attention is causal, so padding
    at the end never influences real tokens, and padded positions carry label -100."""
    width = max(len(e.input_ids) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    for row, e in enumerate(items):
        ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[row, : len(e.labels)] = torch.tensor(e.labels)
    return ids, labels
