"""Decide device, precision and quantisation, then build the LoRA model on the base model.

One place answers "what actually ran": the `Runtime.describe()` string goes into every run summary.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import cast

import torch

from backend.errors import InvalidRequest
from backend.models import int8
from backend.models.chat_templates import read_chat_template
from backend.models.hardware import compute_path, cpu_kind, training_base
from backend.models.int8_calibration import calibrate_on_text
from backend.models.loading import Quantize, cpu_has_bf16, default_device, load_model, load_tokenizer, resolve_model
from backend.training.config import TrainConfig


@dataclass(frozen=True)
class Runtime:
    device: str
    compute_dtype: torch.dtype
    quantize: Quantize
    base_why: str = ""  # why `quantize: auto` chose this base ("" when the config named it)

    @classmethod
    def from_config(cls, config: TrainConfig) -> Runtime:
        device = default_device() if config.device == "auto" else config.device
        if device == "cuda" and not torch.cuda.is_available():
            raise InvalidRequest("device: got 'cuda', but no CUDA device is available here")
        if config.precision == "auto":
            bf16 = torch.cuda.is_bf16_supported() if device == "cuda" else cpu_has_bf16()
            dtype = torch.bfloat16 if bf16 else torch.float32
        else:
            dtype = torch.bfloat16 if config.precision == "bf16" else torch.float32
        quantize, base_why = config.quantize, ""
        if quantize == "auto":
            base = training_base(
                cpu_kind(),
                device,
                int8_engine=int8.supported(),
                bf16_asked=config.precision == "bf16",
                replicas=config.launcher != "none",
            )
            quantize, base_why = base.quantize, base.why
        if quantize == "int8":
            if device != "cpu" or not int8.supported():
                raise InvalidRequest(f"quantize: int8 runs on x86 CPUs only (fbgemm/oneDNN); not on this {device}")
            dtype = torch.float32  # int8 matmuls take and give fp32
        return cls(device, dtype, cast(Quantize, quantize), base_why)  # TrainConfig checks the choices

    def describe(self) -> str:
        compute = "bf16" if self.compute_dtype == torch.bfloat16 else "fp32"
        if self.quantize == "4bit":
            what = f"QLoRA: NF4 4-bit base (double quant) + {compute} compute on {self.device}"
        elif self.quantize == "int8":
            what = f"LoRA: int8 frozen base (smoothed, dynamic per token) + fp32 compute, fp32 adapter on {self.device}"
        elif self.compute_dtype == torch.bfloat16:
            what = f"LoRA: bf16 base body (fp32 embeddings, logits), bf16 autocast, fp32 adapter on {self.device}"
        else:
            what = f"LoRA: fp32 base + fp32 compute, fp32 adapter on {self.device}"
        if self.device != "cpu":
            return what
        if self.base_why:
            return what + f" (auto: {self.base_why})"
        base = training_base(cpu_kind(), self.device, int8_engine=int8.supported())
        if base.quantize != self.quantize:
            return what + f" (as asked; auto would be {base.quantize}: {base.why})"
        path = compute_path(cpu_kind())
        return what + (f" (auto: {path.why})" if path.dtype == compute else f" (as asked; auto would be {path.why})")

    def autocast(self):
        if self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device, dtype=self.compute_dtype)


ACTIVATION_BUDGET = 1024**3  # bytes of saved activations one pass may hold (beside weights and the rest)


def pass_tokens(model_config, compute_dtype: torch.dtype, budget: int = ACTIVATION_BUDGET) -> int:
    """Padded tokens per forward/backward pass that keep the activations saved for backward within
    `budget`: per token and layer, a decoder layer keeps about 10 hidden-sized and 4 MLP-sized vectors
    in the compute dtype (norm inputs, the attention's inputs, queries, keys and values repeated to
    every query head, its output and mask; the MLP's gate, up, activation and product: 1.46 MB a token
    for SmolLM2-135M in fp32, counted by a saved-tensors hook)."""
    hidden = getattr(model_config, "hidden_size", 0) or 0
    mlp = getattr(model_config, "intermediate_size", 0) or 4 * hidden
    layers = getattr(model_config, "num_hidden_layers", 0) or 0
    if not hidden or not layers:
        return 0  # an architecture this estimate does not know: no limit
    per_token = layers * (10 * hidden + 4 * mlp) * (2 if compute_dtype == torch.bfloat16 else 4)
    return max(256, budget // per_token)


@functools.cache
def _libc():
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def tune_cpu_allocator() -> bool:
    """Keep activation-sized blocks (up to 32 MiB) on glibc's heap and stop it trimming memory back
    to the OS whenever a block is freed: freed activations are reused within a step instead of mmap'd,
    page-faulted and unmapped again (the trainer hands free pages back once a step instead:
    `release_freed_memory`). Measured on the 1-epoch receipts benchmark: 71.5 s → 68.5 s, sys time
    24 s → 20 s. No-op where glibc is absent, and where the user set glibc's malloc tunables (`GLIBC_TUNABLES` with
    glibc.malloc.*, or a `MALLOC_*_` variable): theirs hold."""
    import os

    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "") or any(
        k.startswith("MALLOC_") and k.endswith("_") for k in os.environ
    ):
        return False
    try:
        libc = _libc()
        if libc is None:
            return False
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        return all(
            libc.mallopt(option, value) == 1
            for option, value in (
                (m_mmap_threshold, 32 * 1024 * 1024),
                (m_trim_threshold, 4 * 1024**3),
                (m_top_pad, 256 * 1024 * 1024),
            )
        )
    except (OSError, AttributeError):
        return False


def release_freed_memory() -> bool:
    """Give the heap's free pages back to the OS (glibc's `malloc_trim`); whether it could. Called after
    each training step, when every activation of the step is freed: the heap keeps its layout, and
    holes that the next step's passes leave between saved activations and freed temporaries are
    faulted in again only where they are used. Without it the resident set ratchets up over a run as
    the holes of different steps add up. Only where `tune_cpu_allocator` took charge of the heap (the
    user's malloc settings hold otherwise). No-op without glibc."""
    try:
        libc = _libc()
        return bool(libc is not None and libc.malloc_trim(0) >= 0)
    except (OSError, AttributeError):
        return False


def peak_rss_gib() -> float | None:
    """This process's peak resident set so far, in GiB (None where the OS does not say)."""
    try:
        import resource
        import sys
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**30 if sys.platform == "darwin" else 2**20), 3)


ONEDNN_CACHE = 16  # primitives oneDNN keeps (its default: 1024)


def bound_onednn_cache() -> str:
    """Cap oneDNN's primitive cache, unless the user set it (`ONEDNN_PRIMITIVE_CACHE_CAPACITY`); the
    capacity in effect. Each cached bf16 matmul primitive holds memory of its own, and training on
    documents of varying length makes a new one for every new shape: 20 steps on receipts peaked at
    6.6 GiB with the default 1024 and 5.5 GiB with 16, at the same speed (benchmarks/README.md). oneDNN
    reads the variable when it makes its first primitive: this must run before the process's first
    bf16 matmul."""
    import os

    return os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_CACHE))


def _cast_body(model, dtype: torch.dtype) -> None:
    """Store the frozen transformer body in `dtype`, so autocast does not re-cast weights every step,
    but keep the (tied) embedding / output layer in fp32: the residual stream then stays fp32 and the
    loss comes from fp32 logits, at no measurable cost in speed."""
    keep = {id(p) for p in model.get_input_embeddings().parameters()}
    keep |= {id(p) for p in model.get_output_embeddings().parameters()}
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if id(param) not in keep and param.is_floating_point():
                param.data = param.data.to(dtype)


def build_lora_model(config: TrainConfig, runtime: Runtime, *, fsdp: bool = False):
    """Load tokenizer and base model, inject LoRA. Returns (model_path, tokenizer, peft_model).
    `fsdp`: every FSDP unit must hold one dtype, so the frozen weights share one (4-bit weights are
    packed into compute-dtype storage; an unquantised base stays fp32 under autocast)."""
    from peft import LoraConfig, get_peft_model

    model_path = resolve_model(config.model)
    template = read_chat_template(config.chat_template) if config.chat_template else None
    tokenizer = load_tokenizer(model_path, chat_template=template)
    base = load_model(
        model_path,
        device=runtime.device,
        compute_dtype=runtime.compute_dtype if runtime.quantize == "4bit" else torch.float32,
        quantize="none" if runtime.quantize == "int8" else runtime.quantize,
        quant_storage=runtime.compute_dtype if fsdp and runtime.quantize == "4bit" else None,
    )
    if runtime.quantize == "none" and runtime.compute_dtype != torch.float32 and not fsdp:
        _cast_body(base, runtime.compute_dtype)
    targets = config.target_modules
    layers = _last_layers(base.config, config.lora_layers)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=(
            ("all-linear" if layers is None else _layer_linears(base))
            if targets == "all-linear"
            else [t.strip() for t in targets.split(",")]
        ),
        layers_to_transform=layers,
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(config.seed)
    model = get_peft_model(base, lora)  # adapter weights are created in fp32 (autocast_adapter_dtype)
    if runtime.quantize == "int8":
        # after LoRA is attached: only the layers under it (base_layer), smoothed by their measured ranges
        int8.quantize_frozen(model, calibration=calibrate_on_text(model, tokenizer))
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    if runtime.compute_dtype != torch.float32:
        _exact_adapter_sums(model)
    return model_path, tokenizer, model


def _last_layers(model_config, n: int) -> list[int] | None:
    """The indexes of the last `n` decoder layers (None: all of them)."""
    total = getattr(model_config.get_text_config(), "num_hidden_layers", 0) or 0
    if n <= 0 or n >= total:
        return None
    return list(range(total - n, total))


def _layer_linears(model) -> list[str]:
    """The names of the linear layers inside the decoder layers ("all-linear" spelled out: peft takes
    `layers_to_transform` only with a list)."""
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and ".layers." in name
        }
    )


def _upcast_output(_module, _inputs, output):
    return output.float()


def _exact_adapter_sums(model) -> None:
    """peft adds the LoRA update to the base layer's output and casts the sum back to that output's
    dtype. Under bf16 the early, small updates (< 0.4% of the output) round away, and the forward
    pass barely sees what the optimizer changed: measured, one AdamW step lowered the next batch's
    loss in fp32 but raised it in bf16. Returning the frozen base layer's output in fp32 keeps the
    sum exact; the matmuls themselves stay in bf16."""
    for module in model.modules():
        base = getattr(module, "base_layer", None)
        if base is not None and hasattr(module, "lora_A"):
            base.register_forward_hook(_upcast_output)
