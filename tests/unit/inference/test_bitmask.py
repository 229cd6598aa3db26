"""The grammar's token mask applied to logits (backend/inference/decoding.apply_bitmask) is exact on every
CPU kind torch runs: here natively and with torch's AVX2 kernels (the AVX2 machines' path), against a
bit-by-bit reference. llguidance's compiled kernel let half the vocabulary through on the AVX2 path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from backend.inference.decoding import apply_bitmask

ROOT = Path(__file__).resolve().parents[3]
CHECK = """
import random, torch
from backend.inference.decoding import apply_bitmask
rng = random.Random(0)
for vocab, words in ((49152, 1536), (49160, 1536), (100, 4)):
    mask = torch.tensor([[rng.getrandbits(32) - 2**31 for _ in range(words)] for _ in range(2)], dtype=torch.int32)
    mask[0, :3] = 0  # nothing allowed in the first 96 tokens of row 0
    mask[1, 2] = 1  # only bit 0 of word 2
    logits = torch.zeros(2, vocab)
    apply_bitmask(logits, mask)
    for row in range(2):
        want = [t < 32 * words and (int(mask[row, t // 32]) >> (t % 32)) & 1 == 1 for t in range(vocab)]
        got = (logits[row] != float("-inf")).tolist()
        assert got == want, (torch.backends.cpu.get_cpu_capability(), vocab, row, sum(got), sum(want))
print(torch.backends.cpu.get_cpu_capability(), "exact")
"""


def test_the_mask_is_exact_natively_and_on_the_avx2_kernels():
    for extra in ({}, {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}):
        env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
        out = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().endswith("exact")


def test_a_one_dimensional_call_masks_in_place():
    logits = torch.zeros(64)
    apply_bitmask(logits, torch.tensor([0b101, 0], dtype=torch.int32))
    assert (logits != float("-inf")).nonzero().flatten().tolist() == [0, 2]
