"""Dynamic int8 for a frozen base on x86 CPUs without bf16 units: training's default there
(`quantize: auto`, `hardware.training_base`), opt-in for serving (`inference_dtype: int8`).

On those CPUs fp32 is the fastest float path; an int8 matmul (weights quantized once per output
channel, activations per token and call: fbgemm/oneDNN's dynamic linear) is 1.5–2.9× faster than fp32
for SmolLM2-135M's linear shapes on fbgemm's AVX2 kernels (`benchmarks/int8_linear.py`). Each layer's
input channels are smoothed by the ranges measured on a short text (`int8_calibration.py`), and the
layers that read one input (q/k/v; gate/up) share that smoothing and one stacked matmul. In training,
the adapter learns around the base's rounding (held-out loss within 2% of fp32's); in serving it costs
extraction accuracy, so it is not the default there: `benchmarks/extract_latency.py --also-dtype int8`
prints its speed and micro-F1 next to fp32's. Only the frozen base's linear layers are quantized; LoRA's A/B matrices,
embeddings, norms and the output layer stay in fp32, so adapters attach, switch and detach as before.

`Int8Linear` is an `nn.Linear` (peft wraps it like any linear layer: `isinstance` checks pass, and its
`weight` buffer holds the real int8 values with the layer's shape, device and dtype for the libraries
that inspect it). Under autograd the input's gradient is computed in int8 as well (the weight is
frozen: it gets none), so LoRA trains on top of it (`quantize: int8` in training).
"""

from __future__ import annotations

import platform
import threading
import warnings
from collections.abc import Collection
from typing import Any

import torch
from torch import nn

from backend.models.int8_calibration import Calibration, is_lora_matrix, smoothing


class _Weight:
    """An int8 weight (symmetric, one scale per output row) with its input smoothing, for one layer or
    for several layers that read the same input (q/k/v; gate/up): their rows stacked, one matmul for
    all. Each reader takes its rows of the output; the output of the last input is kept until every
    reader has taken its part, so the input is quantized and multiplied once."""

    def __init__(self, weight: torch.Tensor, smooth: torch.Tensor | None, sizes: list[int] | None = None):
        """`sizes`: the readers' row counts, in the order the rows are stacked (default: one reader)."""
        # x·Wᵀ = (x/s)·(W·s)ᵀ: a few input channels carry most of an activation's range; dividing them
        # by s (and multiplying the weight's columns by it) moves that range into the weight, which
        # has one scale per row to absorb it, and leaves the token's other channels more levels.
        self.inv_smooth = None if smooth is None else (1 / smooth).float()
        weight = weight.float() if smooth is None else weight.float() * smooth.float()[None, :]
        self.sizes = sizes or [weight.shape[0]]
        self.scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12)
        quantized = _quantize(weight, self.scales)
        self.values = quantized.int_repr()
        self.packed = torch.ops.quantized.linear_prepack(quantized, None)
        self._packed_t: Any = None  # the transposed weight, for the input's gradient: made on first use
        self._last = threading.local()  # (input, its version, outputs, readers still to take one) per thread

    @property
    def readers(self) -> int:
        return len(self.sizes)

    def __getstate__(self) -> dict[str, Any]:  # copies (deepcopy, pickle) start without a kept output
        return {k: v for k, v in self.__dict__.items() if k != "_last"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _last=threading.local())

    def __call__(self, x: torch.Tensor, reader: int = 0) -> torch.Tensor:
        """The output of reader number `reader` (its rows of the stacked matmul) for input `x`."""
        if self.readers == 1:
            return _Int8Matmul.apply(x, self)[0] if x.requires_grad else _matmul(x, self.packed, self.inv_smooth)
        last = getattr(self._last, "value", None)
        if last is not None and last[0] is x and last[1] == x._version and last[3] > 0:
            self._last.value = (*last[:3], last[3] - 1) if last[3] > 1 else None
            return last[2][reader]
        if x.requires_grad:  # one node for the group: its backward takes all readers' gradients in one matmul
            outs = _Int8Matmul.apply(x, self)
        else:
            outs = _matmul(x, self.packed, self.inv_smooth).split(self.sizes, dim=-1)
        self._last.value = (x, x._version, outs, self.readers - 1)  # the input held: no other can take its place
        return outs[reader]

    def packed_t(self) -> Any:
        """Wᵀ in int8 with one scale per input feature: the input's gradient is g·W."""
        if self._packed_t is None:
            weight_t = (self.values.float() * self.scales[:, None]).t().contiguous()
            quantized = _quantize(weight_t, (weight_t.abs().amax(dim=1) / 127).clamp(min=1e-12))
            self._packed_t = torch.ops.quantized.linear_prepack(quantized, None)
        return self._packed_t


def _quantize(weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():  # torch announces a new home for quantized tensors; these still run
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        return torch.quantize_per_channel(
            weight, scales.double(), torch.zeros(len(scales), dtype=torch.long), axis=0, dtype=torch.qint8
        )


class Int8Linear(nn.Linear):
    """A linear layer whose weight is int8 (one scale per output row); forward quantizes the input per
    token and call and runs the int8 matmul, alone or with the layers that read the same input."""

    scales: torch.Tensor
    inv_smooth: torch.Tensor | None

    def __init__(
        self, linear: nn.Linear, smooth: torch.Tensor | None = None, *, shared: tuple[_Weight, int] | None = None
    ):
        """`shared`: (the stacked weight of this layer and the others that read its input, this
        layer's place among them); else the layer's own weight, smoothed by `smooth` if given."""
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._weight, self._reader = shared or (_Weight(linear.weight.detach(), smooth), 0)
        start = sum(self._weight.sizes[: self._reader])
        rows = slice(start, start + self.out_features)
        self._rows = rows if self._weight.readers > 1 else None
        self.register_buffer("weight", self._weight.values[rows], persistent=False)
        self.register_buffer("scales", self._weight.scales[rows].float(), persistent=False)
        self.register_buffer("inv_smooth", self._weight.inv_smooth, persistent=False)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        out = self._weight(x.float(), self._reader)  # x.float() is x when fp32: one input's readers see one
        if self.bias is not None:
            out = out + self.bias
        return out.to(dtype)

    def dequantized(self) -> torch.Tensor:
        """The weight as the matmul sees it, in fp32 (with the smoothing folded in: W·s)."""
        return self.weight.float() * self.scales[:, None]

    def effective(self) -> torch.Tensor:
        """The fp32 weight this layer stands for: W·s with s divided back out."""
        weight = self.dequantized()
        return weight if self.inv_smooth is None else weight * self.inv_smooth[None, :]

    def extra_repr(self) -> str:
        shared = f", rows {self._rows.start}:{self._rows.stop} of a shared matmul" if self._rows else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, int8{shared}"


def _matmul(x: torch.Tensor, packed: Any, inv_smooth: torch.Tensor | None = None, *, own: bool = False) -> torch.Tensor:
    """x·Wᵀ in int8 (x divided by the smoothing first, where the layer has one). One scale per token,
    not per call: a few tokens carry activations hundreds of times larger than the rest, and one scale
    for all would round every other token to a handful of levels. The product commutes with the row
    scaling, so rows are scaled to max 1 and back. `own`: x is the caller's scratch copy, scaled in place."""
    if inv_smooth is not None:
        x, own = x * inv_smooth, True
    # max |x| per row: abs + amax is several times faster than vector_norm(inf) on CPU, the same result
    rows = x.abs().amax(dim=-1, keepdim=True).clamp_(min=1e-12)
    x = x.div_(rows) if own else x / rows
    # reduce_range: 7-bit activations. Without VNNI, fbgemm sums pairs of u8×s8 products in int16
    # (vpmaddubsw), which saturates with full 8-bit activations and silently changes results.
    return torch.ops.quantized.linear_dynamic(x, packed, True).mul_(rows)


class _Int8Matmul(torch.autograd.Function):
    """The frozen int8 weight under autograd, smoothing included: one output per reader, and the input's
    gradient from all of theirs in one int8 matmul (g·W over the stacked rows); no weight gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: _Weight) -> tuple[torch.Tensor, ...]:
        ctx.weight = weight
        out = _matmul(x, weight.packed, weight.inv_smooth)
        return (out,) if weight.readers == 1 else out.split(weight.sizes, dim=-1)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor, None]:
        weight = ctx.weight
        if len(grads) == 1:
            grad_x = _matmul(grads[0].float().contiguous(), weight.packed_t())
        else:  # the readers' gradients side by side, in a copy of our own
            grad_x = _matmul(torch.cat([g.float() for g in grads], dim=-1), weight.packed_t(), own=True)
        return (grad_x if weight.inv_smooth is None else grad_x.mul_(weight.inv_smooth)), None


def supported() -> bool:
    """Whether this is an x86 CPU and this torch build has its quantized engines (fbgemm/oneDNN)."""
    return platform.machine().lower() in ("x86_64", "amd64") and any(
        engine in torch.backends.quantized.supported_engines for engine in ("x86", "fbgemm", "onednn")
    )


def quantize_frozen(
    model: nn.Module,
    *,
    lm_head: bool = False,
    calibration: Calibration | None = None,
    alpha: float = 0.5,
    keep: Collection[str] = (),
) -> int:
    """Replace the model's frozen linear layers by `Int8Linear` in place; the number replaced.

    Inside a peft model only the LoRA layers' `base_layer`s are replaced (their A/B stay fp32).
    The output layer stays fp32 unless `lm_head=True` (a tied head then gets its own int8 copy): its
    logits pick every token. With a `calibration` (`int8_calibration.calibrate`), each layer's input
    channels are smoothed by their measured ranges, and the layers that read one input share one
    smoothing and one matmul. The layers named in `keep` stay fp32 (their group's others go alone)."""
    linears = {
        name: module
        for name, module in model.named_modules()
        if type(module) is nn.Linear
        and not is_lora_matrix(name)
        and (lm_head or name.rpartition(".")[2] != "lm_head")
        and name not in keep
    }
    maxima = calibration.maxima if calibration is not None else {}
    layers: dict[str, Int8Linear] = {}
    for group in calibration.groups if calibration is not None else []:
        if len(group) < 2 or not all(name in linears for name in group):
            continue
        weight = torch.cat([linears[name].weight.detach().float() for name in group])
        seen = maxima.get(group[0])
        sizes = [linears[name].out_features for name in group]
        shared = _Weight(weight, None if seen is None else smoothing(weight, seen, alpha), sizes)
        for reader, name in enumerate(group):
            layers[name] = Int8Linear(linears[name], shared=(shared, reader))
    for name, linear in linears.items():
        if name not in layers:
            seen = maxima.get(name)
            layers[name] = Int8Linear(linear, None if seen is None else smoothing(linear.weight, seen, alpha))
    for name, layer in layers.items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer)
    _own_frozen_tensors(model)
    return len(layers)


def _own_frozen_tensors(model: nn.Module) -> None:
    """Copy the tensors left in float (embeddings, norms, the output layer) into memory of their own. A
    checkpoint is memory-mapped, and the map stays whole while any tensor reads from it: the fp32 weights
    the int8 layers replaced would stay resident (SmolLM2-135M: 0.4 GiB) beside their int8 copies."""
    copied: set[int] = set()
    for module in model.modules():
        if isinstance(module, Int8Linear):
            continue
        for param in module._parameters.values():
            if param is not None and id(param) not in copied:
                copied.add(id(param))
                param.data = param.data.clone()  # the same Parameter: tied weights stay tied
        for key, buffer in module._buffers.items():
            if buffer is not None:
                module._buffers[key] = buffer.clone()
