"""Which CPU this is, and the compute path that is fastest on it.

`cpu_kind()` reads what torch will use (`torch.backends.cpu.get_cpu_capability()`: "AVX512", "AVX2",
"DEFAULT", ...; the `ATEN_CPU_CAPABILITY` variable lowers it) and whether the CPU has bf16 matmul units
(AVX512-BF16 or AMX-BF16). `compute_path(kind, device)` is a pure function of it: bf16 where the
hardware computes in bf16 (on a 2-core Sapphire Rapids, a 480-token prefill of SmolLM2-135M took
0.27 s in bf16 and 0.81 s in fp32), fp32 everywhere else — without bf16 units, bf16 is converted in
software and slower than fp32. Every run says which path it took and why (`Path.why`).

`training_base(kind, device, ...)` picks how training holds the frozen base on top of that: NF4 on CUDA
(QLoRA), int8 on x86 CPUs that compute in fp32 (the base's matmuls forward and backward in dynamic
int8: on the AVX2 kernels ~1.2x the tokens/s of an fp32 base at +1.5% held-out loss against the plain
recipe's; `benchmarks/train_throughput.py`, benchmarks/README.md), as loaded everywhere else.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path as FilePath


@dataclass(frozen=True)
class CpuKind:
    capability: str  # torch's kernel level: AVX512, AVX2, DEFAULT (ARM, old x86), ...
    bf16_units: bool  # AVX512-BF16 or AMX-BF16 in the CPU's flags
    amx: bool  # AMX tiles (Sapphire Rapids and later)
    machine: str  # x86_64, aarch64, arm64, ...

    def __str__(self) -> str:
        units = "AMX-BF16" if self.amx else "AVX512-BF16" if self.bf16_units else "no bf16 units"
        return f"{self.machine} {self.capability} ({units})"


@dataclass(frozen=True)
class Path:
    dtype: str  # "bf16" or "fp32": the dtype matmuls run in
    why: str


@dataclass(frozen=True)
class Base:
    quantize: str  # how training holds the frozen base: "4bit", "int8" or "none" (as loaded)
    why: str


def compute_path(kind: CpuKind, device: str = "cpu", *, cuda_bf16: bool = False) -> Path:
    """The fastest correct compute dtype for this device and CPU kind, and the reason."""
    if device == "cuda":
        return Path("bf16", "CUDA with bf16") if cuda_bf16 else Path("fp32", "CUDA without bf16 support")
    wide = kind.capability.upper().startswith(("AVX512", "AMX"))
    if kind.bf16_units and wide:
        return Path("bf16", f"{kind}: bf16 matmul units, bf16 compute")
    if kind.bf16_units:
        return Path("fp32", f"{kind}: bf16 units, but torch runs {kind.capability} kernels (ATEN_CPU_CAPABILITY); fp32")
    return Path("fp32", f"{kind}: bf16 would be converted in software, slower than fp32")


def training_base(
    kind: CpuKind, device: str = "cpu", *, int8_engine: bool = True, bf16_asked: bool = False, replicas: bool = False
) -> Base:
    """How training should hold the frozen base on this device and CPU kind, and the reason.
    `int8_engine`: this torch build has its quantized engines (fbgemm/oneDNN); `bf16_asked`: the run
    asks for bf16 compute; `replicas`: several processes (DDP/FSDP) train copies of the model."""
    if device == "cuda":
        return Base("4bit", "CUDA: NF4 4-bit base (QLoRA)")
    if device != "cpu":
        return Base("none", f"{device}: base as loaded")
    if bf16_asked:
        return Base("none", f"{kind}: bf16 compute asked for, on the base as loaded")
    if replicas:
        return Base("none", f"{kind}: several processes, which would broadcast int8 buffers every step; base as loaded")
    if compute_path(kind).dtype == "bf16":
        return Base("none", f"{kind}: bf16 compute on the base as loaded")
    if kind.machine.lower() not in ("x86_64", "amd64"):
        return Base("none", f"{kind}: no int8 engine for this CPU; fp32 base")
    if not int8_engine:
        return Base("none", f"{kind}: this torch has no quantized engine (fbgemm/oneDNN); fp32 base")
    return Base("int8", f"{kind}: fp32 compute here, so the frozen base runs its matmuls in int8 (faster than fp32)")


@lru_cache(maxsize=1)
def cpu_kind() -> CpuKind:
    import torch

    flags = _cpu_flags()
    return CpuKind(
        torch.backends.cpu.get_cpu_capability(),
        "avx512_bf16" in flags or "amx_bf16" in flags,
        "amx_tile" in flags,
        platform.machine(),
    )


def _cpu_flags() -> set[str]:
    info = FilePath("/proc/cpuinfo")
    if not info.exists():
        return set()
    for line in info.read_text(errors="ignore").splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()
