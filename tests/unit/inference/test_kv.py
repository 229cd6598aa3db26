"""Decoding's cache with room to grow and the grouped attention give what the stock cache and attention give."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from backend.inference import kv

PROMPTS = [20, 14, 9]  # real prompt tokens per row, left-padded to the longest
STEPS = [3, 1, 2, 4, 1, 3]  # tokens fed per row at each decode pass (several: forced or drafted tokens)


@pytest.fixture(scope="module")
def gqa_model():
    """Grouped-query attention as in SmolLM2: 3 query heads per key/value head."""
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=96,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def _decode(model, attention: str, *, roomy: bool, room: int = 4, select_after: int = 3) -> list[torch.Tensor]:
    """Logits of a left-padded prompt batch, then of decode passes of several tokens (one fed token of
    row 1 masked out, as a rejected draft is), with row 1 leaving the batch after `select_after` passes."""
    model.set_attn_implementation(attention)
    generator = torch.Generator().manual_seed(1)
    width = max(PROMPTS)
    ids = torch.randint(0, 300, (len(PROMPTS), width), generator=generator)
    mask = torch.tensor([[0] * (width - n) + [1] * n for n in PROMPTS])
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    out, cache = [], DynamicCache()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True).logits
        out.append(logits)
        if roomy:
            rows = [[(layer.keys[b : b + 1], layer.values[b : b + 1]) for layer in cache.layers] for b in range(3)]
            cache = kv.roomy_cache(rows, width, room)
        following = positions[:, -1:] + 1
        for n, width_of_pass in enumerate(STEPS):
            fed = torch.randint(0, 300, (mask.shape[0], width_of_pass), generator=generator)
            real = torch.ones_like(fed)
            if width_of_pass > 1 and mask.shape[0] == 3:
                real[1, -1] = 0
            mask = torch.cat([mask, real], 1)
            step_positions = following + torch.arange(width_of_pass)
            logits = model(
                input_ids=fed, attention_mask=mask, position_ids=step_positions, cache=cache, use_cache=True
            ).logits
            out.append(logits)
            following = step_positions[:, -1:] + 1
            if n + 1 == select_after:
                keep = torch.tensor([0, 2])
                cache.batch_select_indices(keep)
                mask, following = mask[keep], following[keep]
    model.set_attn_implementation("sdpa")
    return out


def test_grouped_attention_and_the_roomy_cache_give_the_stock_logits(gqa_model):
    """Passes of several tokens under a padding mask, a cache that outgrows its room, and a row
    leaving the batch: the same logits as transformers' SDPA over a concatenating cache."""
    stock = _decode(gqa_model, "sdpa", roomy=False)
    ours = _decode(gqa_model, kv.NAME, roomy=True, room=4)
    assert [t.shape for t in ours] == [t.shape for t in stock]
    for a, b in zip(ours, stock):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_the_grouped_path_runs_for_several_query_tokens(gqa_model, monkeypatch):
    """The case it exists for is the one taken: several query tokens under a mask never reach repeat_kv."""
    import transformers.integrations.sdpa_attention as stock

    repeated = []
    monkeypatch.setattr(stock, "repeat_kv", lambda states, n: repeated.append(n) or states.repeat_interleave(n, 1))
    _decode(gqa_model, kv.NAME, roomy=True)
    assert repeated == []  # the prompt pass has no padding-free causal shortcut here: it is masked too
    _decode(gqa_model, "sdpa", roomy=False)
    assert repeated  # the stock path copies keys per query head


def test_a_roomy_layer_appends_in_place_until_it_must_grow():
    keys = torch.zeros(2, 1, 3 + 2, 4)
    layer = kv.RoomyLayer(keys, keys.clone(), 3)
    buffer = layer._keys
    layer.update(torch.ones(2, 1, 2, 4), torch.ones(2, 1, 2, 4))
    assert layer._keys is buffer and layer.get_seq_length() == 5  # written into the room
    layer.update(torch.full((2, 1, 1, 4), 2.0), torch.full((2, 1, 1, 4), 2.0))
    assert layer._keys is not buffer and layer._keys.shape[2] >= 6  # out of room: one larger buffer
    assert layer.keys[:, :, 3:5].eq(1).all() and layer.keys[:, :, 5].eq(2).all()
    layer.crop(-2)
    assert layer.get_seq_length() == 4
