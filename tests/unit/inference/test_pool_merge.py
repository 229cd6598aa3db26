"""An adapter that has run long enough is merged into the base weights, and every answer stays what
the unmerged adapter gives: after switching adapters, the base model alone, evictions, many rounds."""

from __future__ import annotations

import time

import pytest
import torch

from backend.inference import pool as pool_module
from backend.inference.bundle import AdapterBundle
from backend.inference.pool import ModelPool


@pytest.fixture(scope="module")
def adapters(tiny_model, tmp_path_factory) -> dict[str, AdapterBundle]:
    """Two LoRA adapters on the tiny model with random (nonzero) weights, and the base alone."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    found = {"base": AdapterBundle(tiny_model)}
    for seed, name in enumerate(("a", "b")):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(tiny_model)
        config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
        folder = tmp_path_factory.mktemp(f"adapter-{name}")
        get_peft_model(model, config).save_pretrained(folder)
        found[name] = AdapterBundle(tiny_model, name, str(folder))
    return found


def _logits(pool: ModelPool, target: AdapterBundle, hold_s: float = 0.0) -> torch.Tensor:
    with pool.using(target) as (model, _, _), torch.no_grad():
        time.sleep(hold_s)  # as long as a batch would run
        return model(torch.tensor([[1, 5, 9, 14, 3, 7]])).logits


def _base(pool: ModelPool):
    [base] = pool._bases.values()
    return base


def test_a_merged_adapter_answers_as_the_unmerged_one_through_switches_and_evictions(adapters, monkeypatch):
    plain = ModelPool(dtype="float32", merge=False)
    expected = {name: _logits(plain, target) for name, target in adapters.items()}
    assert not torch.allclose(expected["a"], expected["base"], atol=1e-3), "the adapters must make a difference"

    monkeypatch.setattr(pool_module, "MERGE_AFTER_S", 0.0)  # merge at once: as many merges as can be
    pool = ModelPool(dtype="float32", max_adapters=1)  # every switch evicts: a merged adapter must come out first
    order = ["a", "a", "b", "b", "b"] + ["base", "a", "b", "a", "a"] * 5 + ["base"]
    merged = 0
    for n, name in enumerate(order):
        got = _logits(pool, adapters[name])
        assert torch.allclose(got, expected[name], atol=1e-5), (n, name)
        merged += _base(pool).merged is not None
    assert merged == 25  # every adapter request ran merged
    assert _base(pool).merged is None  # the base model alone ran last: nothing stays merged


def test_an_adapter_is_merged_once_it_has_run_long_enough_in_a_row(adapters, monkeypatch):
    monkeypatch.setattr(pool_module, "MERGE_AFTER_S", 0.2)
    pool = ModelPool(dtype="float32")
    _logits(pool, adapters["a"], hold_s=0.15)
    _logits(pool, adapters["a"])
    assert _base(pool).merged is None  # 0.15 s so far: not yet
    _logits(pool, adapters["a"], hold_s=0.1)
    _logits(pool, adapters["a"])
    assert (_base(pool).merged or "").startswith("a_")  # the module key of adapter "a"
    lora = [m for m in _base(pool).model.modules() if hasattr(m, "merged_adapters")]
    assert lora and all(m.merged for m in lora)
    for name in ("b", "a", "b", "a"):  # taking turns, each under the bar: never merged
        _logits(pool, adapters[name], hold_s=0.15)
    assert _base(pool).merged is None and not any(m.merged for m in lora)


def test_bf16_weights_never_merge(adapters, monkeypatch):
    monkeypatch.setattr(pool_module, "MERGE_AFTER_S", 0.0)
    pool = ModelPool(dtype="bfloat16")
    for _ in range(3):
        _logits(pool, adapters["a"])
    assert not pool.merge and _base(pool).merged is None
