"""Selective automation on real receipts: per-field confidence thresholds fitted on the tune receipts,
judged on the held-back dev receipts — the field precision at the stored thresholds and the share of
fields they auto-approve.

    .venv/bin/python benchmarks/selective_automation.py --adapter runs/<SROIE run> [--target-precision 0.99]

Data: sroie_train.jsonl (kept outside the repository: benchmarks/README.md) — receipts from the ICDAR
2019 SROIE dataset (Z. Huang et al., doi:10.1109/ICDAR.2019.00244), CC BY 4.0; the split is
`benchmarks/sroie_split.py`'s. The adapter must not have trained on tune or dev (`sroie_split.py
--export-tune` writes a train part without them).

Both parts are extracted once with the constrained engine as `/v1/extract` serves them (the adapter's
calibration and label rules applied, no candidate ranking) and the answers kept in `--cache` (under
runs/, outside git), so a rerun with another target reads them instead of decoding again. Thresholds
come from the tune answers only (`backend/labels/thresholds.py`); dev is only scored. Writes
benchmarks/results/selective_automation.json and the precision–coverage plot
benchmarks/results/selective_automation.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sroie_split import CREDIT, load_split, tune_rows  # noqa: E402


def collect(adapter: str, rows: list[dict[str, Any]], *, batch_size: int) -> list[dict[str, Any]]:
    """Each receipt's served answer: fields, calibrated confidence and grounding, beside its gold fields."""
    from backend.inference.bundle import AdapterBundle
    from backend.inference.extraction import Document, extract_many
    from backend.inference.pool import ModelPool
    from backend.inference.spec import ExtractionSpec

    target, pool = AdapterBundle.of_folder(adapter), ModelPool()
    spec = ExtractionSpec.from_names(list(rows[0]["fields"]))
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        docs = [Document(r["text"], spec) for r in chunk]
        for row, answer in zip(chunk, extract_many(pool, target, docs, batch_size=batch_size)):
            out.append(
                {
                    "id": row["id"],
                    "gold": row["fields"],
                    "fields": answer["fields"],
                    "confidence": answer["confidence"],
                    "grounded": {k: v is not None for k, v in answer["grounding"].items()},
                }
            )
        print(f"{len(out)}/{len(rows)} receipts", flush=True)
    return out


def answers(adapter: str, cache: Path, *, batch_size: int) -> dict[str, list[dict[str, Any]]]:
    if cache.is_file():
        return json.loads(cache.read_text())["parts"]
    _, dev = load_split()
    started = time.perf_counter()
    parts = {"tune": collect(adapter, tune_rows(), batch_size=batch_size)}
    parts["dev"] = collect(adapter, dev, batch_size=batch_size)
    cache.parent.mkdir(parents=True, exist_ok=True)
    seconds = round(time.perf_counter() - started, 1)
    cache.write_text(json.dumps({"adapter": adapter, "seconds": seconds, "parts": parts}, ensure_ascii=False))
    print(f"extracted {sum(map(len, parts.values()))} receipts in {seconds} s", flush=True)
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", required=True, help="run or adapter folder of an adapter trained on SROIE")
    parser.add_argument("--target-precision", type=float, default=0.99)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cache", type=Path, help="answers file (default runs/selective_automation/<adapter>.json)")
    parser.add_argument("--collect-only", action="store_true", help="extract and cache the answers, then stop")
    args = parser.parse_args()
    cache = args.cache or ROOT / "runs" / "selective_automation" / f"{Path(args.adapter).resolve().name}.json"
    parts = answers(args.adapter, cache, batch_size=args.batch_size)
    if args.collect_only:
        return
    report(parts, args)


def report(parts: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    raise NotImplementedError


if __name__ == "__main__":
    _ = CREDIT
    main()
