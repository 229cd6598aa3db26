"""The arithmetic of a training step, shared by every run: the answer-only loss, the learning-rate
schedule, one optimizer step over its micro-batches, and the validation loss.

The prompt tokens every example of a step starts with (the instructions and field list of an
extraction prompt: 65 of a receipt's ~550 tokens) are read once per step (`SharedPrefix`): their keys
and values serve every row of every pass, and the gradient that flows into them is sent back through
that one reading after the last pass. The loss and the gradient are those of reading every row whole
(causal attention: a prefix's states do not depend on what follows it).

A pass that stays over the token budget after splitting (one row longer than the budget: a long
receipt) reads its row whole with activation checkpointing (`AnswerLoss.recomputing`) of just enough
decoder layers (`recompute_share`): their activations are recomputed in the backward instead of kept,
so that pass costs a part of one more forward and memory stays within the budget's peak."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from backend.training.batching import by_tokens, collate
from backend.training.config import TrainConfig
from backend.training.distributed import Parallel
from backend.training.runtime import Runtime
from backend.training.tokenize import IGNORE, Encoded, EncodedSet

ONE_PROCESS = Parallel()  # the default: a run in this process alone (only read)
MIN_PREFIX = 16  # shared prompt tokens worth reading once


class SharedPrefix:
    """The first `length` tokens of every row, read once with gradient. Each pass attends to their keys
    and values through leaf copies (`cache`), where its backward leaves its share of their gradient;
    `backward` sends the sum through the one reading to the adapter's weights."""

    def __init__(self, length: int, states: list[torch.Tensor]):
        self.length, self.states = length, states
        self.leaves = [t.detach().requires_grad_(t.requires_grad) for t in states]

    @classmethod
    def read(cls, decoder, ids: list[int], device) -> SharedPrefix | None:
        """The prefix `ids` read by `decoder`; None for a model whose cache holds more than keys and
        values (linear-attention layers): its rows are read whole."""
        cache = DynamicCache()
        decoder(input_ids=torch.tensor([ids], device=device), cache=cache, use_cache=True)
        states: list[torch.Tensor] = []
        for layer in cache.layers:
            keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
            if not isinstance(keys, torch.Tensor) or not isinstance(values, torch.Tensor):
                return None
            states += [keys, values]
        return cls(len(ids), states)

    def cache(self, rows: int) -> DynamicCache:
        """A cache of the prefix for `rows` rows (views, no copies)."""
        grown = [t.expand(rows, *t.shape[1:]) for t in self.leaves]
        return DynamicCache(list(zip(grown[::2], grown[1::2])))

    def backward(self) -> None:
        pairs = [(s, leaf.grad) for s, leaf in zip(self.states, self.leaves) if leaf.grad is not None]
        if pairs:
            torch.autograd.backward([s for s, _ in pairs], [g for _, g in pairs])


def over_budget(batch: list[Encoded], max_tokens: int, skip: int = 0) -> bool:
    """Whether a pass holds more than `max_tokens` padded tokens (rows × longest row, less `skip`)."""
    return bool(max_tokens) and len(batch) * (max(len(e.input_ids) for e in batch) - skip) > max_tokens


def recompute_share(batch: list[Encoded], max_tokens: int) -> float:
    """The share of the decoder's layers a pass over the budget recomputes: as many as bring the
    activations it keeps down to the budget's (a row 10% over recomputes about a tenth of them — the
    cost of recomputing is a layer's forward again, paid only where memory needs it)."""
    tokens = len(batch) * max(len(e.input_ids) for e in batch)
    return min(1.0, max(0.0, 1.0 - max_tokens / tokens))


def shared_length(items: list[Encoded]) -> int:
    """How many leading tokens all `items` share before the first answer token of any (0: fewer than
    MIN_PREFIX, or a single item)."""
    if len(items) < 2:
        return 0
    first = items[0].input_ids
    n = min(len(e.input_ids) for e in items) - 1
    for e in items[1:]:
        n = next((i for i, (a, b) in enumerate(zip(first[:n], e.input_ids)) if a != b), n)
    answer = min(next((i for i, label in enumerate(e.labels) if label != IGNORE), len(e.labels)) for e in items)
    n = min(n, answer - 1)  # the last prefix position predicts the first token after it: never an answer
    return n if n >= MIN_PREFIX else 0


class AnswerLoss:
    """Cross-entropy over answer tokens only; logits are never computed for prompt positions."""

    def __init__(self, peft_model):
        base = peft_model.get_base_model()
        self.decoder = base.get_decoder()
        self.head = base.get_output_embeddings()
        self.softcap = getattr(base.config, "final_logit_softcapping", None)

    @contextmanager
    def recomputing(self, share: float = 1.0) -> Iterator[None]:
        """Within it, the first `share` of the decoder's layers (at least one) keep only their input for
        the backward, which runs them again (non-reentrant activation checkpointing); the others keep
        their activations. A layer replayed so would write a cache twice: read rows whole here, without
        a prefix."""
        from functools import partial  # here: transformers' modeling layers take a second to import

        from torch.utils.checkpoint import checkpoint
        from transformers.modeling_layers import GradientCheckpointingLayer

        layers = [m for m in self.decoder.modules() if isinstance(m, GradientCheckpointingLayer)]
        layers = layers[: max(1, math.ceil(share * len(layers)))]
        for layer in layers:
            layer._gradient_checkpointing_func = partial(checkpoint, use_reentrant=False)  # type: ignore[assignment]
            layer.gradient_checkpointing = True
        try:
            yield
        finally:
            for layer in layers:
                layer.gradient_checkpointing = False

    def __call__(self, ids: torch.Tensor, labels: torch.Tensor, prefix: SharedPrefix | None = None) -> torch.Tensor:
        """Summed (not averaged) loss, so micro-batches add up to an exact per-token mean. With `prefix`,
        the rows' first `prefix.length` tokens are read from it."""
        if prefix is None:
            hidden = self.decoder(input_ids=ids, use_cache=False).last_hidden_state
        else:
            ids, labels = ids[:, prefix.length :], labels[:, prefix.length :]
            hidden = self.decoder(input_ids=ids, cache=prefix.cache(len(ids)), use_cache=True).last_hidden_state
        target = labels[:, 1:]
        mask = target != IGNORE
        with torch.autocast(hidden.device.type, enabled=False):  # fp32 logits: bf16 ones cost accuracy
            selected = hidden[:, :-1][mask].float()
            logits = F.linear(
                selected, self.head.weight.float(), None if self.head.bias is None else self.head.bias.float()
            )
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


def optimizer_step(
    micro: list[list[Encoded]],
    *,
    forward: Callable,
    runtime: Runtime,
    pad_id: int,
    params: list[torch.nn.Parameter],
    optimizer,
    scheduler,
    max_grad_norm: float,
    parallel: Parallel = ONE_PROCESS,
    max_tokens: int = 0,
    share_prefix: bool = True,
) -> dict[str, float]:
    """One optimizer step over `grad_accum` micro-batches; the loss is the mean over all their
    answer tokens (each micro-batch's summed loss divided by the step's answer-token count).
    With several processes each rank runs its share of every micro-batch (distributed.py). In one
    process, a micro-batch of more than `max_tokens` padded tokens runs as several passes (peak memory
    follows the tokens of one pass; the gradient is the same) — a row longer than that alone with its
    activations recomputed in the backward — and with `share_prefix` the tokens every example starts
    with are read once for the step (`SharedPrefix`)."""
    local = [parallel.shard(batch) for batch in micro]
    prefix = None
    if share_prefix and not parallel.enabled and isinstance(forward, AnswerLoss):
        shared = shared_length([e for batch in local for e in batch])
        if shared:
            with runtime.autocast():
                prefix = SharedPrefix.read(forward.decoder, local[0][0].input_ids[:shared], runtime.device)
    skip = prefix.length if prefix else 0
    if max_tokens and not parallel.enabled:
        micro = local = [part for batch in local for part in by_tokens(batch, max_tokens, skip=skip)]
    recompute = bool(max_tokens) and not parallel.enabled
    recomputed = 0
    n_answer, tokens = parallel.all_sum(
        [
            sum(1 for batch in local for e in batch for label in e.labels[1:] if label != IGNORE),
            sum(len(e.input_ids) for batch in local for e in batch),
        ]
    )
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
                ids, labels = ids.to(runtime.device), labels.to(runtime.device)
                if isinstance(forward, AnswerLoss) and recompute and over_budget(batch, max_tokens, skip):
                    recomputed += 1
                    with forward.recomputing(recompute_share(batch, max_tokens)):
                        loss = forward(ids, labels) / per_rank
                else:
                    loss = (forward(ids, labels, prefix) if prefix else forward(ids, labels)) / per_rank
            if weight != 1.0:
                loss = loss * weight
            loss.backward()
        total += loss.item()
    if prefix is not None:
        prefix.backward()
    if parallel.enabled:
        total = parallel.all_sum([total])[0] / parallel.world
    grad_norm = parallel.clip(params, max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {
        "loss": total,
        "grad_norm": grad_norm,
        "answer_tokens": n_answer,
        "tokens": tokens,
        "prefix_tokens": prefix.length if prefix else 0,
        "recomputed_passes": recomputed,
    }


@torch.no_grad()
def evaluate_loss(
    model,
    loss_fn: AnswerLoss,
    data: EncodedSet,
    *,
    runtime: Runtime,
    batch_size: int,
    pad_id: int,
    forward: Callable | None = None,
    parallel: Parallel = ONE_PROCESS,
) -> float:
    """Mean loss per answer token; `forward` (the DDP/FSDP wrapper) and `parallel` split each batch
    over the ranks as training does."""
    forward = forward or loss_fn
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    order = sorted(range(len(data.items)), key=lambda i: len(data.items[i].input_ids))
    for start in range(0, len(order), batch_size):
        batch = [data.items[i] for i in order[start : start + batch_size]]
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
