"""What a decode pass costs against how many tokens each row feeds: the price of a wider pass (drafted
guesses, forced stretches, padding) against the price of one more pass.

    .venv/bin/python benchmarks/decode_width.py [--rows 8] [--widths 1 2 4 8 12] [--repeats 6]

The bundled SmolLM2-135M in fp32 (the AVX2 machine's path; run it under the AVX2 variables to see
those kernels), grouped attention as served, `--rows` random prompts of 420–640 tokens read by the
engine's own prefill (`decoding._prefill`), then passes of `decoding._forward` feeding every row the
same number of tokens, the cache rewound after each. Prints milliseconds per pass per width (the
median of the repeats) and the CPU kind; nothing is written. Random tokens: only the arithmetic counts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LENGTHS = (420, 500, 560, 600, 640, 480, 520, 610)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=8, help="rows in the batch (1..8)")
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8, 12, 16], help="tokens per row")
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    if not 1 <= args.rows <= len(LENGTHS):
        parser.error(f"--rows: {args.rows}: must be in 1..{len(LENGTHS)}")
    if args.repeats < 1 or min(args.widths) < 1:
        parser.error("--repeats and --widths must be at least 1")

    import torch
    from transformers import AutoModelForCausalLM

    from backend.inference import decoding, kv
    from backend.models.hardware import cpu_kind
    from backend.models.loading import resolve_model

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model(), dtype=torch.float32).eval()
    model.set_attn_implementation(kv.NAME)
    feeds = [torch.randint(100, 40000, (n,)).tolist() for n in LENGTHS[: args.rows]]
    with torch.no_grad():
        _, cache, mask = decoding._prefill(model, None, feeds, 0, "cpu", max(args.widths) + 1)
        read = cache.get_seq_length()
        positions = [len(f) for f in feeds]
        print(f"cpu: {cpu_kind()}")
        for width in args.widths:
            times = []
            for _ in range(args.repeats):
                for layer in cache.layers:  # rewind: every pass sees the same cache
                    layer.crop(read - layer.get_seq_length())
                steps = [torch.randint(100, 40000, (width,)).tolist() for _ in feeds]
                started = time.perf_counter()
                decoding._forward(model, cache, mask, steps, positions, "cpu", keep=width)
                times.append(time.perf_counter() - started)
            ms = 1000 * statistics.median(times)
            print(
                f"{args.rows} rows × {width:2d} tokens: {ms:6.1f} ms a pass, {ms / (args.rows * width):5.2f} ms a position"
            )


if __name__ == "__main__":
    main()
