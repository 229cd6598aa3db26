"""Keys and values during batched decoding, without copying them at every pass.

A decode pass of SmolLM2-135M over 8 receipts reads its 424 MB of fp32 weights once, and a cache of
≈ 600 positions × 8 rows × 30 layers holds 221 MB of keys and values. Two habits of the stock path
copy that cache again at every pass, more bytes than the weights themselves:
- `DynamicCache` appends by concatenation, so every pass writes the whole cache anew (`roomy_cache`:
  each layer keeps its keys and values in a buffer with room for the answer, and appends in place);
- a pass feeding several tokens per row (forced stretches, drafted guesses) repeats each key/value
  head for the query heads sharing it (grouped-query attention: 3 kv heads for 9 query heads here),
  a copy three times the cache's size per layer (`grouped_sdpa`: the query heads of one kv head are
  stacked along the query axis instead, and the mask with them, so attention reads each key once).
Both give the same attention as the stock path: the same dot products over the same keys.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

NAME = "tunebridge_grouped_sdpa"


class RoomyLayer(DynamicLayer):
    """A full-attention cache layer whose keys and values are views of buffers with room to grow."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        """`keys`, `values`: the buffers [batch, heads, capacity, dim], their first `length` positions filled."""
        super().__init__()
        self.device, self.is_initialized = keys.device, True
        self._keys, self._values, self._length = keys, values, length
        self._view()

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        start, end = self._length, self._length + key_states.shape[2]
        if end > self._keys.shape[2]:  # out of room: grow once, by at least half again
            capacity = max(end, self._keys.shape[2] * 3 // 2)
            self._keys = _grown(self._keys[:, :, :start], capacity)
            self._values = _grown(self._values[:, :, :start], capacity)
        self._keys[:, :, start:end] = key_states
        self._values[:, :, start:end] = value_states
        self._length = end
        self._view()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._keys, self._values = self._keys[indices], self._values[indices]
        self._view()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            super().crop(tokens_to_remove)  # refused there, as for any dynamic layer
        self._length = max(0, self._length + tokens_to_remove)
        self._view()

    def _view(self) -> None:
        self.keys, self.values = self._keys[:, :, : self._length], self._values[:, :, : self._length]


def _grown(states: torch.Tensor, capacity: int) -> torch.Tensor:
    """`states` [batch, heads, length, dim] copied into a buffer of `capacity` positions."""
    buffer = states.new_empty(*states.shape[:2], capacity, states.shape[3])
    buffer[:, :, : states.shape[2]] = states
    return buffer


def roomy_cache(rows: list[list[tuple[torch.Tensor, torch.Tensor]]], width: int, room: int) -> DynamicCache:
    """One batch cache from each row's own (keys, values) per layer ([1, heads, length, dim], lengths up
    to `width`), left-padded with zeros to `width` (the caller masks the padding out), with `room` more
    positions per layer before it must grow."""
    layers: list[Any] = []
    for n in range(len(rows[0])):
        buffers = []
        for part in (0, 1):
            first = rows[0][n][part]
            buffer = first.new_zeros(len(rows), first.shape[1], width + room, first.shape[3])
            for b, row in enumerate(rows):
                states = row[n][part]
                buffer[b, :, width - states.shape[2] : width] = states[0]
            buffers.append(buffer)
        layers.append(RoomyLayer(buffers[0], buffers[1], width))
    cache = DynamicCache()
    cache.layers = layers
    return cache


def row_cache(cache: DynamicCache, row: int, start: int, end: int) -> DynamicCache:
    """Positions [start, end) of one row of a batch cache, copied into a plain one-row cache of its own
    (what scoring after decoding goes on from: a row's prompt, read once in the batch)."""
    out = DynamicCache()
    layer: Any
    for n, layer in enumerate(cache.layers):
        out.update(layer.keys[row : row + 1, :, start:end], layer.values[row : row + 1, :, start:end], n)
    return out


def grouped_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, except that several query tokens per row under an explicit mask
    attend to each kv head once: [batch, kv heads × groups, q, dim] queries become [batch, kv heads,
    groups × q, dim] (query head h = kv head h // groups, as repeat_kv pairs them) and the mask is
    repeated along the query axis to match. Every other case goes to the stock function."""
    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, length, dim = query.shape
    if (
        groups == 1
        or length == 1  # the stock path packs a single query token the same way already
        or attention_mask is None  # causal without a mask: the packed rows would break the diagonal
        or attention_mask.dtype != torch.bool
        or dropout
        or kwargs.get("position_bias") is not None
        or kwargs.get("softcap") is not None
    ):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    packed = query.reshape(batch, heads // groups, groups * length, dim)
    mask = attention_mask.expand(batch, 1, length, key.shape[2])
    mask = mask.unsqueeze(2).expand(batch, 1, groups, length, key.shape[2]).reshape(batch, 1, groups * length, -1)
    out = torch.nn.functional.scaled_dot_product_attention(packed, key, value, attn_mask=mask, scale=scaling)
    return out.reshape(batch, heads, length, dim).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, grouped_sdpa)
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
