"""Micro-batches past a token budget run as several passes (backend/training/batching.by_tokens): peak
memory follows one pass, and the gradient — so the whole run — stays the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from backend.training.batching import by_tokens
from backend.training.runtime import pass_tokens
from backend.training.tokenize import Encoded
from backend.training.trainer import train

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"


def _rows(*lengths: int) -> list[Encoded]:
    return [Encoded(list(range(n)), list(range(n)), f"row{n}") for n in lengths]


def test_passes_hold_at_most_the_budget_in_padded_tokens():
    rows = _rows(100, 90, 80, 70, 300)
    passes = by_tokens(rows, 200)
    assert [[len(r.input_ids) for r in p] for p in passes] == [[100, 90], [80, 70], [300]]  # a long row alone
    assert by_tokens(rows, 0) == [rows] and by_tokens(rows, 10_000) == [rows]
    assert all(len(p) * max(len(r.input_ids) for r in p) <= 200 for p in passes[:2])


def test_pass_size_follows_the_model_and_the_precision(tiny_model):
    smollm2 = AutoConfig.for_model("llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30)
    fp32, bf16 = pass_tokens(smollm2, torch.float32), pass_tokens(smollm2, torch.bfloat16)
    assert bf16 == 2 * fp32 or bf16 == 2 * fp32 + 1
    assert 600 < fp32 < 1200  # SmolLM2-135M in fp32: about 1.4 MB of saved activations per token
    assert pass_tokens(AutoConfig.from_pretrained(tiny_model), torch.float32) > fp32  # a tiny model: larger passes


def test_a_run_in_small_passes_equals_the_run_in_whole_batches(tiny_config):
    kwargs = dict(
        data=[str(EXAMPLES / "receipts.jsonl")], max_steps=3, batch_size=4, learning_rate=1e-2, max_length=1024
    )
    whole = train(tiny_config(run_name="whole", pass_tokens=0, **kwargs), progress_bar=False)
    parts = train(tiny_config(run_name="parts", pass_tokens=600, **kwargs), progress_bar=False)

    def losses(run):
        return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if "loss" in line]

    assert losses(parts.run_dir) == pytest.approx(losses(whole.run_dir), rel=1e-4)
    a = load_file(whole.adapter_dir / "adapter_model.safetensors")
    b = load_file(parts.adapter_dir / "adapter_model.safetensors")
    # the same steps up to float summation order (which AdamW's first, sign-like updates amplify a little)
    assert all(torch.allclose(a[k], b[k], atol=1e-3) for k in a)


@pytest.mark.parametrize(
    "user_env, tuned",
    [
        ({}, True),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"}, False),
        ({"MALLOC_TRIM_THRESHOLD_": "1048576"}, False),
    ],
    ids=["default", "glibc-tunables", "malloc-variable"],
)
def test_the_allocator_is_tuned_unless_the_user_tuned_it(user_env, tuned):
    """The training process keeps freed activations on the heap; malloc settings the user gave win."""
    import os
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's mallopt only")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    code = "from backend.training.runtime import tune_cpu_allocator; print(tune_cpu_allocator())"
    done = subprocess.run([sys.executable, "-c", code], env={**env, **user_env}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(tuned)


def test_the_heaps_free_pages_go_back_to_the_os_after_a_step():
    """With the allocator tuned to keep freed blocks, `release_freed_memory` (called after each training
    step) still hands their pages back: the resident set falls to what is live."""
    import os
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's malloc_trim only")
    code = """
import torch
from pathlib import Path
from backend.training.runtime import release_freed_memory, tune_cpu_allocator
def rss(): return next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS:")) / 1024
assert tune_cpu_allocator()
keep = [torch.ones(1 << 20) for _ in range(2)]  # live: 8 MiB
held = [torch.ones(1 << 20) for _ in range(128)]  # 4 MiB blocks on the heap: 512 MiB, then freed
before = rss()
del held
kept = rss()
assert release_freed_memory()
print(before, kept, rss())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    before, kept, after = (float(x) for x in done.stdout.split())
    # the tuned heap keeps freed blocks resident (all of them, or the half not at its top): the trim
    # hands back what it kept
    assert after < kept - 200 and after < before - 400, f"{before:.0f} → {kept:.0f} → {after:.0f} MiB"


def test_training_caps_onednns_primitive_cache_unless_the_user_set_it():
    import os
    import subprocess
    import sys

    code = "from backend.training.runtime import bound_onednn_cache; print(bound_onednn_cache())"
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    for given, expected in ((None, "16"), ("512", "512")):
        extra = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": given} if given else {}
        done = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == expected
