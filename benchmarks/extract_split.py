"""Where batched extraction spends its time: reading the prompts (prefill) against the decode passes.

    .venv/bin/python benchmarks/extract_split.py --adapter runs/sroie/<run> [--n 16] [--draft N] [--fold K]

Extracts the held-out SROIE receipts of benchmarks/extract_latency.py (or a development fold's) in batches of 8 through the
product's path (`extract_many`), after one warm-up batch (which also lets the pool merge the adapter),
and times the decoding loop's two parts apart: prefill (prompt tokens per second, and the matmul
rate that implies: 2 × the body's parameters per token, attention and the output layer aside) and
decode passes (how many, milliseconds each, rows and tokens per row they carried, and the share
of the positions they computed that were padding: rows feeding fewer tokens than the widest).
`--draft` overrides the batched copy-drafting width (0: off). Prints the CPU kind; nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from extract_latency import FOLD_HELP, NAMES, receipts  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", required=True, help="a training run folder (e.g. runs/sroie/<run>)")
    parser.add_argument("--n", type=int, default=16, help="receipts timed (after 8 of warm-up)")
    parser.add_argument("--draft", type=int, help="copy-drafting width in batches (default: the product's)")
    parser.add_argument("--seed", type=int, default=42, help="the SROIE split's seed")
    parser.add_argument("--fold", type=int, help=FOLD_HELP)
    args = parser.parse_args()

    import backend.inference.decoding as decoding
    from backend.inference import extraction
    from backend.inference.bundle import AdapterBundle
    from backend.inference.constrained import flat_schema
    from backend.inference.pool import ModelPool
    from backend.inference.spec import ExtractionSpec
    from backend.models.hardware import cpu_kind

    spent = {"prefill": 0.0, "passes": 0.0, "count": 0, "rows": 0, "width": 0, "fed": 0, "computed": 0}
    prefill, forward = decoding._prefill, decoding._forward

    def timed_prefill(*a, **k):
        started = time.perf_counter()
        out = prefill(*a, **k)
        spent["prefill"] += time.perf_counter() - started
        return out

    def timed_forward(model, cache, mask, steps, positions, device, **options):
        started = time.perf_counter()
        out = forward(model, cache, mask, steps, positions, device, **options)
        spent["passes"] += time.perf_counter() - started
        spent["count"] += 1
        spent["rows"] += len(steps)
        spent["width"] += max(map(len, steps))
        spent["fed"] += sum(map(len, steps))
        spent["computed"] += len(steps) * max(map(len, steps))
        return out

    decoding._prefill, decoding._forward = timed_prefill, timed_forward
    spec = ExtractionSpec.of(flat_schema(NAMES))
    items = [extraction.Document(d["text"], spec) for d in receipts(args.n + 8, args.seed, args.fold)]
    pool, target = ModelPool(), AdapterBundle.of_folder(args.adapter)
    options = {} if args.draft is None else {"draft": args.draft}
    extraction.extract_many(pool, target, items[:8], **options)  # warm-up; the adapter merges after it
    spent.update(prefill=0.0, passes=0.0, count=0, rows=0, width=0, fed=0, computed=0)
    started = time.perf_counter()
    out = extraction.extract_many(pool, target, items[8:], **options)
    total = time.perf_counter() - started
    with pool.using(target) as (model, _, _):
        body = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n)
    tokens = sum(o["usage"]["prompt_tokens"] - o["usage"]["cached_prompt_tokens"] for o in out)
    passes = max(1, spent["count"])
    print(f"cpu: {cpu_kind()}")
    print(
        json.dumps(
            {
                "receipts": len(out),
                "documents_per_s": round(len(out) / total, 3),
                "seconds": round(total, 2),
                "prefill_s": round(spent["prefill"], 2),
                "prefill_tokens": tokens,
                "prefill_tokens_per_s": round(tokens / spent["prefill"], 1),
                "prefill_body_gflop_per_s": round(2 * body * tokens / spent["prefill"] / 1e9, 1),
                "decode_s": round(spent["passes"], 2),
                "decode_passes": spent["count"],
                "ms_per_pass": round(1000 * spent["passes"] / passes, 1),
                "rows_per_pass": round(spent["rows"] / passes, 2),
                "tokens_per_row_per_pass": round(spent["width"] / passes, 2),
                "padding_share": round(1 - spent["fed"] / max(1, spent["computed"]), 3),
                "other_s": round(total - spent["prefill"] - spent["passes"], 2),
                "generated_tokens": sum(o["usage"]["completion_tokens"] for o in out),
                "draft": "default" if args.draft is None else args.draft,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
