"""Is int8 worth it for the frozen base on this CPU? One decoder layer's linear shapes of the bundled
model, fp32 / bf16 / tunebridge's dynamic int8 layer (`backend/models/int8.py`: one scale per weight row
and per token), at decode and prefill sizes.

    .venv/bin/python benchmarks/int8_linear.py [--threads 2]

Prints the CPU kind, milliseconds per call and each dtype's speed-up over fp32, and the int8 output's
relative error against fp32. Run it natively and with `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2` to see the AVX2 machines' kernels (the last
one matters here: fbgemm, which runs the int8 matmuls, reads the CPU's features itself and would
otherwise use AVX-512 VNNI kernels that AVX2-only machines do not have).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = {
    "q/o 576→576": (576, 576),
    "k/v 576→192": (576, 192),
    "gate/up 576→1536": (576, 1536),
    "down 1536→576": (1536, 576),
}
ROWS = {"decode (8 rows)": 8, "prefill (800 rows)": 800}


def timed(fn, x, repeat: int) -> float:
    for _ in range(3):
        fn(x)
    started = time.perf_counter()
    for _ in range(repeat):
        fn(x)
    return (time.perf_counter() - started) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from backend.models.hardware import compute_path, cpu_kind
    from backend.models.int8 import Int8Linear

    print(f"cpu: {cpu_kind()}; tunebridge's path here: {compute_path(cpu_kind()).dtype}")
    with torch.no_grad():
        for rows_name, rows in ROWS.items():
            for name, (n_in, n_out) in SHAPES.items():
                linear = torch.nn.Linear(n_in, n_out, bias=False)
                int8 = Int8Linear(linear)
                bf16 = torch.nn.Linear(n_in, n_out, bias=False).to(torch.bfloat16)
                bf16.weight.copy_(linear.weight)
                x = torch.randn(rows, n_in)
                repeat = 200 if rows < 100 else 20
                fp32_ms = timed(linear, x, repeat)
                int8_ms = timed(int8, x, repeat)
                bf16_ms = timed(bf16, x.to(torch.bfloat16), repeat)
                error = ((int8(x) - linear(x)).norm() / linear(x).norm()).item()
                print(
                    f"{rows_name:<18} {name:<17} fp32 {fp32_ms:7.3f} ms  bf16 {bf16_ms:7.3f} ms "
                    f"({fp32_ms / bf16_ms:4.2f}x)  int8 {int8_ms:7.3f} ms ({fp32_ms / int8_ms:4.2f}x, "
                    f"rel. error {error:.3f})"
                )


if __name__ == "__main__":
    main()
