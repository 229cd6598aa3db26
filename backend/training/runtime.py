"""Decide device, precision and quantisation, then build the LoRA model on the base model.

One place answers "what actually ran": the `Runtime.describe()` string goes into every run summary.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from backend.models.loading import cpu_has_bf16, default_device, load_model, load_tokenizer, resolve_model
from backend.training.config import TrainConfig


@dataclass(frozen=True)
class Runtime:
    device: str
    compute_dtype: torch.dtype
    quantize: str  # "none" | "4bit"

    @classmethod
    def from_config(cls, config: TrainConfig) -> "Runtime":
        device = default_device() if config.device == "auto" else config.device
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device: got 'cuda', but no CUDA device is available here")
        if config.precision == "auto":
            bf16 = torch.cuda.is_bf16_supported() if device == "cuda" else cpu_has_bf16()
            dtype = torch.bfloat16 if bf16 else torch.float32
        else:
            dtype = torch.bfloat16 if config.precision == "bf16" else torch.float32
        quantize = config.quantize
        if quantize == "auto":
            quantize = "4bit" if device == "cuda" else "none"
        return cls(device, dtype, quantize)

    def describe(self) -> str:
        compute = "bf16" if self.compute_dtype == torch.bfloat16 else "fp32"
        if self.quantize == "4bit":
            return f"QLoRA: NF4 4-bit base (double quant) + {compute} compute on {self.device}"
        return f"LoRA: {compute} base weights + {compute} compute, fp32 adapter on {self.device}"

    def autocast(self):
        if self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device, dtype=self.compute_dtype)


def build_lora_model(config: TrainConfig, runtime: Runtime):
    """Load tokenizer and base model, inject LoRA. Returns (model_path, tokenizer, peft_model)."""
    from peft import LoraConfig, get_peft_model

    model_path = resolve_model(config.model)
    tokenizer = load_tokenizer(model_path)
    base = load_model(model_path, device=runtime.device, compute_dtype=runtime.compute_dtype,
                      quantize=runtime.quantize)
    targets = config.target_modules
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear" if targets == "all-linear" else [t.strip() for t in targets.split(",")],
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(config.seed)
    model = get_peft_model(base, lora)  # adapter weights are created in fp32 (autocast_adapter_dtype)
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    return model_path, tokenizer, model
