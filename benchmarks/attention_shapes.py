"""Attention at extraction's shapes, three ways: what the grouped attention costs against the stock path,
and what reading a prompt's document part under `is_causal` would save.

    .venv/bin/python benchmarks/attention_shapes.py [--repeats 40]

Shapes of SmolLM2-135M (9 query heads sharing 3 key/value heads, head size 64): a decode pass of 8 rows
feeding 5 or 12 tokens over ≈ 650 cached positions, and the prefill of one receipt (64 shared prefix
tokens read from the cache, then 128 to 617 document tokens). Per shape, milliseconds per layer for
- `packed`: the queries of one kv head stacked along the query axis under the repeated mask
  (`backend/inference/kv.py`'s `grouped_sdpa`, what the engine runs);
- `repeated`: keys and values repeated per query head under the mask (transformers' stock SDPA path);
- `split` (prefill only): the prefix keys without a mask and the document's own keys under `is_causal`,
  the two merged by their log-sum-exp — the CPU flash kernel skips the masked half only under
  `is_causal`, which cannot express a prefix read from the cache.
Prints the CPU kind; nothing is written. Random inputs: only the arithmetic's cost matters here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEADS, KV_HEADS, DIM = 9, 3, 64
SHAPES = [("decode", 8, 5, 650, 0), ("decode", 8, 12, 650, 0)] + [
    ("prefill", 1, n, 64 + n, 64) for n in (128, 300, 617)
]


def timed(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1000 * (time.perf_counter() - started) / repeats


def measure(rows: int, length: int, keys: int, prefix: int, repeats: int) -> list[float]:
    """Milliseconds per call of each variant at one shape (`split` only where a prefix is cached)."""
    import torch
    import torch.nn.functional as F

    groups = HEADS // KV_HEADS
    torch.manual_seed(0)
    q = torch.randn(rows, HEADS, length, DIM)
    k, v = torch.randn(rows, KV_HEADS, keys, DIM), torch.randn(rows, KV_HEADS, keys, DIM)
    mask = torch.ones(rows, 1, length, keys, dtype=torch.bool).tril(keys - length)
    packed_q = q.reshape(rows, KV_HEADS, groups * length, DIM)
    packed_mask = mask.unsqueeze(2).expand(rows, 1, groups, length, keys).reshape(rows, 1, groups * length, keys)

    def packed():
        return F.scaled_dot_product_attention(packed_q, k, v, attn_mask=packed_mask)

    def repeated():
        kr, vr = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
        return F.scaled_dot_product_attention(q, kr, vr, attn_mask=mask)

    def split():
        kr, vr = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
        flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
        head, head_lse = flash(q, kr[:, :, :prefix], vr[:, :, :prefix], 0.0, False)[:2]
        own, own_lse = flash(q, kr[:, :, prefix:], vr[:, :, prefix:], 0.0, True)[:2]
        total = torch.logaddexp(head_lse, own_lse)
        return head * (head_lse - total).exp().unsqueeze(-1) + own * (own_lse - total).exp().unsqueeze(-1)

    cells = [timed(packed, repeats), timed(repeated, repeats)]
    if prefix:
        gap = (split() - repeated()).abs().max().item()
        if gap > 1e-4:
            raise SystemExit(f"split attention differs from the masked one by {gap}")
        cells.append(timed(split, repeats))
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=40, help="timed calls per variant")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    import torch

    from backend.models.hardware import cpu_kind

    print(f"cpu: {cpu_kind()}, {torch.get_num_threads()} threads")
    print(
        f"{'pass':<8} {'rows':>4} {'queries':>7} {'keys':>5}  {'packed':>8} {'repeated':>8} {'split':>8}  ms per layer"
    )
    for kind, rows, length, keys, prefix in SHAPES:
        cells = measure(rows, length, keys, prefix, args.repeats)
        row = " ".join(f"{c:8.2f}" for c in cells) + ("" if prefix else f" {'-':>8}")
        print(f"{kind:<8} {rows:>4} {length:>7} {keys:>5}  {row}")


if __name__ == "__main__":
    main()
