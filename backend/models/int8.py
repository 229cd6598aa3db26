"""Dynamic int8 for a frozen base on x86 CPUs without bf16 units (`inference_dtype: int8`, opt-in).

On those CPUs fp32 is the fastest float path; an int8 matmul (weights quantized once per output
channel, activations per token and call: fbgemm/oneDNN's dynamic linear) is 1.5–2.9× faster than fp32
for SmolLM2-135M's linear shapes on fbgemm's AVX2 kernels (`benchmarks/int8_linear.py`). It costs
accuracy, so it is not the default: `benchmarks/extract_latency.py --also-dtype int8` prints its speed
and micro-F1 next to fp32's. Only the frozen base's linear layers are quantized; LoRA's A/B matrices,
embeddings, norms and the output layer stay in fp32, so adapters attach, switch and detach as before.

`Int8Linear` is an `nn.Linear` (peft wraps it like any linear layer: `isinstance` checks pass, and its
`weight` buffer holds the real int8 values with the layer's shape, device and dtype for the libraries
that inspect it). Under autograd the input's gradient is computed in int8 as well (the weight is
frozen: it gets none), so LoRA trains on top of it (`quantize: int8` in training).
"""

from __future__ import annotations

import platform
import warnings
from typing import Any

import torch
from torch import nn


class Int8Linear(nn.Linear):
    """A linear layer whose weight is int8 (symmetric, one scale per output row); forward quantizes
    the input per token and call and runs the int8 matmul."""

    scales: torch.Tensor
    inv_smooth: torch.Tensor | None

    def __init__(self, linear: nn.Linear, smooth: torch.Tensor | None = None):
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().float()
        # x·Wᵀ = (x/s)·(W·s)ᵀ: a few input channels carry most of an activation's range; dividing them
        # by s (and multiplying the weight's columns by it) moves that range into the weight, which
        # has one scale per row to absorb it, and leaves the token's other channels more levels.
        self.register_buffer("inv_smooth", None if smooth is None else (1 / smooth).float(), persistent=False)
        if smooth is not None:
            weight = weight * smooth.float()[None, :]
        scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
        with warnings.catch_warnings():  # torch announces a new home for quantized tensors; these still run
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            quantized = torch.quantize_per_channel(
                weight, scales, torch.zeros(len(scales), dtype=torch.long), axis=0, dtype=torch.qint8
            )
        self._packed = torch.ops.quantized.linear_prepack(quantized, None)
        self._packed_t: Any = None  # the transposed weight, for the input's gradient: made on first use
        self.register_buffer("weight", quantized.int_repr(), persistent=False)
        self.register_buffer("scales", scales.float(), persistent=False)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype, x = x.dtype, x.float()
        if x.requires_grad:
            out = _Int8Matmul.apply(x if self.inv_smooth is None else x * self.inv_smooth, self)
        else:
            out = _matmul(x, self._packed, self.inv_smooth)
        if self.bias is not None:
            out = out + self.bias
        return out.to(dtype)

    def packed_t(self) -> Any:
        """Wᵀ in int8 with one scale per input feature: the input's gradient is g·W."""
        if self._packed_t is None:
            weight_t = self.dequantized().t().contiguous()
            scales = (weight_t.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
                quantized = torch.quantize_per_channel(
                    weight_t, scales, torch.zeros(len(scales), dtype=torch.long), axis=0, dtype=torch.qint8
                )
            self._packed_t = torch.ops.quantized.linear_prepack(quantized, None)
        return self._packed_t

    def dequantized(self) -> torch.Tensor:
        """The weight as the matmul sees it, in fp32 (with the smoothing folded in: W·s)."""
        return self.weight.float() * self.scales[:, None]

    def effective(self) -> torch.Tensor:
        """The fp32 weight this layer stands for: W·s with s divided back out."""
        weight = self.dequantized()
        return weight if self.inv_smooth is None else weight * self.inv_smooth[None, :]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def _matmul(x: torch.Tensor, packed: Any, inv_smooth: torch.Tensor | None = None) -> torch.Tensor:
    """x·Wᵀ in int8 (x divided by the smoothing first, where the layer has one). One scale per token,
    not per call: a few tokens carry activations hundreds of times larger than the rest, and one scale
    for all would round every other token to a handful of levels. The product commutes with the row
    scaling, so rows are scaled to max 1 and back."""
    if inv_smooth is not None:
        x = x * inv_smooth
    rows = torch.linalg.vector_norm(x, ord=float("inf"), dim=-1, keepdim=True).clamp_(min=1e-12)
    x = x.div_(rows) if inv_smooth is not None else x / rows  # in place only on our own copy
    # reduce_range: 7-bit activations. Without VNNI, fbgemm sums pairs of u8×s8 products in int16
    # (vpmaddubsw), which saturates with full 8-bit activations and silently changes results.
    return torch.ops.quantized.linear_dynamic(x, packed, True).mul_(rows)


class _Int8Matmul(torch.autograd.Function):
    """The frozen int8 weight under autograd: its input's gradient in int8 too; no weight gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, layer: Int8Linear) -> torch.Tensor:
        ctx.layer = layer
        return _matmul(x, layer._packed)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _matmul(grad.float().contiguous(), ctx.layer.packed_t()), None


def supported() -> bool:
    """Whether this is an x86 CPU and this torch build has its quantized engines (fbgemm/oneDNN)."""
    return platform.machine().lower() in ("x86_64", "amd64") and any(
        engine in torch.backends.quantized.supported_engines for engine in ("x86", "fbgemm", "onednn")
    )


def quantize_frozen(
    model: nn.Module, *, lm_head: bool = False, maxima: dict[str, torch.Tensor] | None = None, alpha: float = 0.5
) -> int:
    """Replace the model's frozen linear layers by `Int8Linear` in place; the number replaced.

    Inside a peft model only the LoRA layers' `base_layer`s are replaced (their A/B stay fp32).
    The output layer stays fp32 unless `lm_head=True` (a tied head then gets its own int8 copy): its
    logits pick every token. `maxima` (`input_maxima`: each layer's largest input per channel, by
    module name) smooths each layer's input channels by s = max|x|^alpha / max|w|^(1-alpha)."""
    replaced = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is not nn.Linear or _is_lora_matrix(name, child_name):
                continue
            if child_name == "lm_head" and not lm_head:
                continue
            seen = None if maxima is None else maxima.get(f"{name}.{child_name}" if name else child_name)
            setattr(module, child_name, Int8Linear(child, None if seen is None else smoothing(child, seen, alpha)))
            replaced += 1
    return replaced


def smoothing(linear: nn.Linear, seen: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Per input channel s = max|x|^alpha / max|w|^(1-alpha) (SmoothQuant, Xiao et al. 2023): alpha 0.5
    splits each channel's range evenly between the activation and the weight."""
    weight = linear.weight.detach().float().abs().amax(dim=0).clamp(min=1e-5)
    return (seen.float().clamp(min=1e-5) ** alpha / weight ** (1 - alpha)).clamp(min=1e-5)


@torch.no_grad()
def input_maxima(model: nn.Module, batches: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each linear layer's largest absolute input per channel over forward passes of `batches` (token
    ids), by module name: what `quantize_frozen` smooths with."""
    maxima: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(_module: nn.Module, args: tuple) -> None:
            seen = args[0].detach().abs().flatten(0, -2).amax(dim=0).float()
            maxima[name] = seen if name not in maxima else torch.maximum(maxima[name], seen)

        return record

    handles = [
        module.register_forward_pre_hook(hook(name))
        for name, module in model.named_modules()
        if type(module) is nn.Linear and not _is_lora_matrix(*name.rpartition(".")[::2])
    ]
    try:
        for ids in batches:
            model(input_ids=ids)
    finally:
        for handle in handles:
            handle.remove()
    return maxima


def _is_lora_matrix(parent: str, child: str) -> bool:
    """LoRA's own matrices live in ModuleDicts named lora_A / lora_B (…, lora_embedding_*)."""
    return parent.rsplit(".", 1)[-1].startswith("lora_") or child.startswith("lora_")
