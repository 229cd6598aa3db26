"""What the int8 base is fitted to: each linear layer's input range per channel, and which layers read
the same input, measured in forward passes of a short text.

SmoothQuant (Xiao et al., 2023): x·Wᵀ = (x/s)·(W·s)ᵀ. A few input channels of a language model carry
most of an activation's range; with one scale per token they leave the token's other channels a
handful of levels. Dividing them by s = max|x|^alpha / max|w|^(1-alpha) moves half of that range
(alpha 0.5) into the weight, which has one scale per row to absorb it. The ranges are the model's own,
not the text's: a receipt, an invoice or plain prose measure the same channels (benchmarks/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

CALIBRATION = (
    "INVOICE No. 2024-0117    Date: 14/03/2024    Due: 13 April 2024\n"
    "Harbour Supplies Ltd, 12 Quay Street, Bristol BS1 4DJ, VAT GB 123 4567 89\n"
    "Bill to: Meadow Farm Cafe, 3 Mill Lane, Hexham NE46 3RU\n"
    "2 x Oat milk 1L   @ 1.85   3.70\n1 x Espresso beans 5kg   64.00\nSubtotal 67.70  VAT 20% 13.54  TOTAL GBP 81.24\n"
    "Paid by card ending 4411. Thank you for your business!\n\n"
    "The customer asked whether the delivery could come on Friday morning instead; the manager agreed."
)


@dataclass
class Calibration:
    maxima: dict[str, torch.Tensor] = field(default_factory=dict)  # module name -> largest |input| per channel
    groups: list[list[str]] = field(default_factory=list)  # layers called one after another on one input


def smoothing(weight: torch.Tensor, seen: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Per input channel s = max|x|^alpha / max|w|^(1-alpha) for a weight of shape (out, in)."""
    largest = weight.detach().float().abs().amax(dim=0).clamp(min=1e-5)
    return (seen.float().clamp(min=1e-5) ** alpha / largest ** (1 - alpha)).clamp(min=1e-5)


@torch.no_grad()
def calibrate(model: nn.Module, batches: list[torch.Tensor]) -> Calibration:
    """Forward passes of `batches` (token ids): every linear layer's largest input per channel (LoRA's
    own matrices aside), and the runs of layers called one after another on the same input tensor."""
    found = Calibration()
    last: dict[str, Any] = {"input": None, "group": None}
    groups: dict[str, list[str]] = {}

    def hook(name: str):
        def record(_module: nn.Module, args: tuple) -> None:
            x = args[0]
            seen = x.detach().abs().flatten(0, -2).amax(dim=0).float()
            found.maxima[name] = seen if name not in found.maxima else torch.maximum(found.maxima[name], seen)
            if last["input"] is x:
                last["group"].append(name)
            else:
                last["input"], last["group"] = x, [name]
            if name not in groups:
                groups[name] = last["group"]

        return record

    handles = [
        module.register_forward_pre_hook(hook(name))
        for name, module in model.named_modules()
        if type(module) is nn.Linear and not is_lora_matrix(name)
    ]
    try:
        for ids in batches:
            model(input_ids=ids)
    finally:
        for handle in handles:
            handle.remove()
        last.clear()
    unique = {id(g): g for g in groups.values()}
    found.groups = [list(dict.fromkeys(g)) for g in unique.values() if len(set(g)) > 1]
    return found


def calibrate_on_text(model: nn.Module, tokenizer: Any, text: str = CALIBRATION) -> Calibration:
    device = next(model.parameters()).device
    return calibrate(model, [torch.tensor([tokenizer(text)["input_ids"]], device=device)])


def is_lora_matrix(name: str) -> bool:
    """LoRA's own matrices live in ModuleDicts named lora_A / lora_B (…, lora_embedding_*)."""
    parent, _, child = name.rpartition(".")
    return parent.rsplit(".", 1)[-1].startswith("lora_") or child.startswith("lora_")
