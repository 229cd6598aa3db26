"""`lora_layers`: only the last N decoder layers are adapted, and the backward pass stops below them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from backend.errors import InvalidRequest
from backend.training.config import TrainConfig
from backend.training.runtime import Runtime, build_lora_model
from backend.training.trainer import train

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"


def test_only_the_last_layers_learn_and_the_adapter_says_so(tiny_config):
    run = train(
        tiny_config(run_name="top", data=[str(EXAMPLES / "receipts.jsonl")], max_steps=2, lora_layers=1),
        progress_bar=False,
    )
    weights = load_file(run.adapter_dir / "adapter_model.safetensors")
    assert weights and all(".layers.1." in name for name in weights)  # the tiny model has layers 0 and 1
    assert json.loads((run.adapter_dir / "adapter_config.json").read_text())["layers_to_transform"] == [1]


def test_the_backward_pass_stops_at_the_lowest_adapted_layer(tiny_model):
    reached = []

    def run(lora_layers: int) -> list[int]:
        reached.clear()
        config = TrainConfig(model=tiny_model, lora_layers=lora_layers, precision="fp32", report_to="none")
        _, _, model = build_lora_model(config, Runtime.from_config(config))
        layers = model.get_base_model().model.layers
        for i, layer in enumerate(layers):
            layer.register_full_backward_hook(lambda *_, i=i: reached.append(i))
        ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
        model(input_ids=ids, labels=ids).loss.backward()
        return sorted(set(reached))

    assert run(0) == [0, 1]
    assert run(1) == [1]
    assert run(5) == [0, 1]  # more than the model has: all of them


def test_a_negative_number_of_layers_is_refused():
    with pytest.raises(InvalidRequest, match="lora_layers"):
        TrainConfig(lora_layers=-1)
