"""Decode passes that compute only the positions that count.

A batched decode pass feeds every row its tokens left-padded to the widest row, and reads the logits of
the last columns for every row. On a CPU such a pass is compute-bound, so the padding costs its full
share: a fifth of the positions of a pass on receipts (`benchmarks/extract_split.py` prints it as
`padding_share`), and the output layer — a 49,152-word vocabulary for SmolLM2, a fifth of a pass —
ran for columns whose logits nobody reads (rows with fewer drafted guesses than the widest).

Inside `packed(model, real, read)`, each decoder layer's MLP (position-wise: nothing in it mixes
positions) runs on the real positions only, gathered into one row and scattered back, and the output
layer runs on the read positions only. Attention keeps the padded layout its cache and mask need.
Padding positions leave the MLP as zeros: their keys and values stay masked out of every real token's
attention, and their logits are never read, so real positions see exactly what they saw before.
Outside the context, the hooks pass everything through untouched.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

_state = threading.local()
_FLAG = "_tunebridge_packed"
WORTH = 0.7  # gathered only where at most this share of the positions is real


def install(model) -> None:
    """Hook the model's MLPs and output layer (once per module; cheap to call again). Models with
    experts are left alone: a router's outputs are not one tensor per position."""
    config = getattr(model, "config", None)
    if any(getattr(config, name, None) for name in ("num_experts", "num_local_experts", "n_routed_experts")):
        return
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] == "mlp" and not getattr(module, _FLAG, False):
            module.register_forward_pre_hook(_gather_real)
            module.register_forward_hook(_scatter_real)
            setattr(module, _FLAG, True)
    head = model.get_output_embeddings()
    if head is not None and not getattr(head, _FLAG, False):
        head.register_forward_pre_hook(_gather_read)
        head.register_forward_hook(_scatter_read)
        setattr(head, _FLAG, True)


@contextmanager
def packed(real: torch.Tensor, read: torch.Tensor) -> Iterator[None]:
    """`real` [batch, width] bool: the fed positions that are not padding; `read` [batch, keep] bool:
    among the last `keep` columns, those whose logits the caller reads (the rest come back as NaN)."""
    _state.current = (real, read)
    try:
        yield
    finally:
        _state.current = None


def _current() -> tuple[torch.Tensor, torch.Tensor] | None:
    return getattr(_state, "current", None)


def _gather(module, args: tuple, where: torch.Tensor | None) -> tuple | None:
    hidden = args[0] if args else None
    if (
        where is None
        or not isinstance(hidden, torch.Tensor)
        or hidden.dim() != 3
        or tuple(hidden.shape[:2]) != tuple(where.shape)
        or float(where.float().mean()) > WORTH
    ):
        return None  # not a pass this context describes, or nothing to leave out
    module._tunebridge_gathered = where
    return (hidden[where].unsqueeze(0), *args[1:])


def _scatter(module, output: Any, fill: float) -> Any:
    where = module.__dict__.pop("_tunebridge_gathered", None)
    if where is None or not isinstance(output, torch.Tensor):
        return None
    full = output.new_full((*where.shape, output.shape[-1]), fill)
    full[where] = output[0]
    return full


def _gather_real(module, args: tuple) -> tuple | None:
    state = _current()
    return _gather(module, args, None if state is None else state[0])


def _scatter_real(module, args: tuple, output: Any) -> Any:
    return _scatter(module, output, 0.0)


def _gather_read(module, args: tuple) -> tuple | None:
    state = _current()
    return _gather(module, args, None if state is None else state[1])


def _scatter_read(module, args: tuple, output: Any) -> Any:
    return _scatter(module, output, math.nan)
