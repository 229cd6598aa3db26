"""The compute path per CPU kind (backend/models/hardware.py) is a pure function, and each path's
numerics stay close to fp32 on a real (tiny) model."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from backend.models.hardware import CpuKind, compute_path, cpu_kind, training_base

AMX = CpuKind("AVX512", True, True, "x86_64")
AVX512_BF16 = CpuKind("AVX512", True, False, "x86_64")
AVX2 = CpuKind("AVX2", False, False, "x86_64")
EMULATED_AVX2 = CpuKind("AVX2", True, True, "x86_64")  # an AMX machine told ATEN_CPU_CAPABILITY=avx2
ARM = CpuKind("DEFAULT", False, False, "aarch64")


@pytest.mark.parametrize(
    ("kind", "dtype", "said"),
    [
        (AMX, "bf16", "AMX-BF16"),
        (AVX512_BF16, "bf16", "AVX512-BF16"),
        (AVX2, "fp32", "no bf16 units"),
        (EMULATED_AVX2, "fp32", "torch runs AVX2 kernels"),
        (ARM, "fp32", "aarch64"),
    ],
)
def test_the_path_per_cpu_kind_and_why(kind, dtype, said):
    path = compute_path(kind)
    assert path.dtype == dtype and said in path.why


def test_cuda_follows_its_own_bf16_support():
    assert compute_path(AVX2, "cuda", cuda_bf16=True).dtype == "bf16"
    assert compute_path(AMX, "cuda", cuda_bf16=False).dtype == "fp32"


@pytest.mark.parametrize(
    ("kind", "device", "engine", "base", "said"),
    [
        (AMX, "cpu", True, "none", "bf16 compute"),
        (AVX512_BF16, "cpu", True, "none", "bf16 compute"),
        (AVX2, "cpu", True, "int8", "int8"),
        (EMULATED_AVX2, "cpu", True, "int8", "int8"),  # torch's kernels decide, not the CPU's flags
        (CpuKind("AVX512", False, False, "x86_64"), "cpu", True, "int8", "int8"),  # AVX-512 without bf16
        (AVX2, "cpu", False, "none", "no quantized engine"),
        (ARM, "cpu", True, "none", "no int8 engine"),
        (AVX2, "cuda", True, "4bit", "QLoRA"),
        (ARM, "mps", True, "none", "as loaded"),
    ],
)
def test_the_training_base_per_cpu_kind_and_why(kind, device, engine, base, said):
    chosen = training_base(kind, device, int8_engine=engine)
    assert chosen.quantize == base and said in chosen.why


def test_bf16_asked_or_several_processes_keep_the_base_as_loaded():
    assert training_base(AVX2, bf16_asked=True).quantize == "none"
    assert "several processes" in training_base(AVX2, replicas=True).why
    assert training_base(AVX2, "cuda", replicas=True).quantize == "4bit"


def test_this_machine_is_named_as_torch_sees_it():
    kind = cpu_kind()
    assert kind.capability == torch.backends.cpu.get_cpu_capability() and str(kind).startswith(kind.machine)


def test_bf16_compute_stays_close_to_fp32_on_a_real_model(tiny_model):
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fp32 = torch.log_softmax(model(ids).logits.float(), -1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = torch.log_softmax(model(ids).logits.float(), -1)
    # bf16 keeps 8 bits of mantissa: each next-token distribution moves by under 2% in total variation
    assert (bf16.exp() - fp32.exp()).abs().sum(-1).max().item() / 2 < 0.02
    assert (bf16 - fp32).abs().mean().item() < 0.02
