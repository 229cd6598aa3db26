"""The arithmetic of a training step, shared by every run: the answer-only loss, the learning-rate
schedule, one optimizer step over its micro-batches, and the validation loss."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from backend.training.batching import by_tokens, collate
from backend.training.config import TrainConfig
from backend.training.distributed import Parallel
from backend.training.runtime import Runtime
from backend.training.tokenize import IGNORE, Encoded, EncodedSet


class AnswerLoss:
    """Cross-entropy over answer tokens only; logits are never computed for prompt positions."""

    def __init__(self, peft_model):
        base = peft_model.get_base_model()
        self.decoder = base.get_decoder()
        self.head = base.get_output_embeddings()
        self.softcap = getattr(base.config, "final_logit_softcapping", None)

    def __call__(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Summed (not averaged) loss, so micro-batches add up to an exact per-token mean."""
        hidden = self.decoder(input_ids=ids, use_cache=False).last_hidden_state
        target = labels[:, 1:]
        mask = target != IGNORE
        with torch.autocast(hidden.device.type, enabled=False):  # fp32 logits: bf16 ones cost accuracy
            selected = hidden[:, :-1][mask].float()
            logits = F.linear(selected, self.head.weight.float(), None if self.head.bias is None else self.head.bias.float())
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return F.cross_entropy(logits, target[mask], reduction="sum")


def schedule(config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    warmup = int(total_steps * config.warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if config.lr_scheduler == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        if config.lr_scheduler == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def optimizer_step(micro: list[list[Encoded]], *, forward: Callable, runtime: Runtime, pad_id: int,
                    params: list[torch.nn.Parameter], optimizer, scheduler, max_grad_norm: float,
                    parallel: Parallel = Parallel(), max_tokens: int = 0  # noqa: B008 - only read
                    ) -> dict[str, float]:
    """One optimizer step over `grad_accum` micro-batches; the loss is the mean over all their
    answer tokens (each micro-batch's summed loss divided by the step's answer-token count).
    With several processes each rank runs its share of every micro-batch (distributed.py). In one
    process, a micro-batch of more than `max_tokens` padded tokens runs as several passes (peak memory
    follows the tokens of one pass; the gradient is the same)."""
    local = [parallel.shard(batch) for batch in micro]
    if max_tokens and not parallel.enabled:
        micro = local = [part for batch in local for part in by_tokens(batch, max_tokens)]
    n_answer, tokens = parallel.all_sum([
        sum(1 for batch in local for e in batch for label in e.labels[1:] if label != IGNORE),
        sum(len(e.input_ids) for batch in local for e in batch)])
    n_answer, tokens = int(n_answer), int(tokens)
    per_rank = n_answer / parallel.world  # DDP/FSDP average gradients over ranks: scale back up
    total = 0.0
    for i, batch in enumerate(local):
        weight = 1.0
        if not batch:  # a short last batch left this rank nothing: a zero-weighted stand-in keeps ranks in step
            batch, weight = micro[i][:1], 0.0
        ids, labels = collate(batch, pad_id=pad_id)
        with parallel.no_sync(i < len(local) - 1):
            with runtime.autocast():
                loss = forward(ids.to(runtime.device), labels.to(runtime.device)) / per_rank
            if weight != 1.0:
                loss = loss * weight
            loss.backward()
        total += loss.item()
    if parallel.enabled:
        total = parallel.all_sum([total])[0] / parallel.world
    grad_norm = parallel.clip(params, max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": total, "grad_norm": grad_norm, "answer_tokens": n_answer, "tokens": tokens}


@torch.no_grad()
def evaluate_loss(model, loss_fn: AnswerLoss, data: EncodedSet, *, runtime: Runtime, batch_size: int, pad_id: int,
                  forward: Callable | None = None, parallel: Parallel = Parallel()) -> float:  # noqa: B008
    """Mean loss per answer token; `forward` (the DDP/FSDP wrapper) and `parallel` split each batch
    over the ranks as training does."""
    forward = forward or loss_fn
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    order = sorted(range(len(data.items)), key=lambda i: len(data.items[i].input_ids))
    for start in range(0, len(order), batch_size):
        batch = [data.items[i] for i in order[start:start + batch_size]]
        share = parallel.shard(batch)
        ids, labels = collate(share or batch[:1], pad_id=pad_id)
        with runtime.autocast():
            loss = forward(ids.to(runtime.device), labels.to(runtime.device)).item()
        if share:  # an empty share ran a stand-in (FSDP needs every rank's forward): not counted
            total += loss
            count += int((labels[:, 1:] != IGNORE).sum())
    model.train(was_training)
    if parallel.enabled:
        total, summed = parallel.all_sum([total, count])
        count = int(summed)
    return total / max(1, count)
