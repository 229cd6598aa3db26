"""Selective automation on real receipts: per-field confidence thresholds fitted on the tune receipts,
judged on the held-back dev receipts — the field precision at the stored thresholds and the share of
fields they auto-approve.

    .venv/bin/python benchmarks/selective_automation.py --adapter runs/<SROIE run> [--target-precision 0.99]
    .venv/bin/python benchmarks/selective_automation.py --adapter runs/<run on the train part> --fit-on POINTS
    .venv/bin/python benchmarks/selective_automation.py --fit-on POINTS \
        --dev-from benchmarks/results/label_efficiency/steps100/dev-random-500.json

Data: sroie_train.jsonl (kept outside the repository: benchmarks/README.md) — receipts from the ICDAR
2019 SROIE dataset (Z. Huang et al., doi:10.1109/ICDAR.2019.00244), CC BY 4.0; the split is
`benchmarks/sroie_split.py`'s. The adapter must not have trained on tune or dev (`sroie_split.py
--export-tune` writes a train part without them).

With `--fit-on` the thresholds come instead from out-of-fold answers: the answers that
`label_efficiency.py` points kept for their fold's receipts, each from a model that never trained on
them (`--fit-on benchmarks/results/label_efficiency/steps100/fold*-random-400.json`: five folds' 400-label
models answer every train-part receipt once). That is cross-fitting: an adapter trained on the whole
train part (tune included) gets thresholds from the answers of adapters trained like it on four fifths
of it, judged on dev as before. Every kept answer's checks are made again, with the label rules
learned from the labels its point trained on (as training learns them; the augment arm's made documents
aside), so answers kept before a check existed are judged by today's.

Both parts are extracted once with the constrained engine as `/v1/extract` serves them (the adapter's
calibration and label rules applied, typed candidate ranking: a value it changed is never approved) and
the answers kept in `--cache` (under
runs/, outside git), so a rerun with another target reads them instead of decoding again. Thresholds
come from the tune answers only (`backend/labels/thresholds.py`), by the product's rule (a 95% lower
bound on precision) and, to show what that bound guards against, by weaker ones; dev is only scored.
Writes benchmarks/results/selective_automation_p<target>.json and the precision–coverage plot beside
it (.png).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from backend.evaluation.selective import answer_pairs, chart, curves  # noqa: E402
from backend.labels.thresholds import Pair, ThresholdsError, apply, fit_thresholds, needed  # noqa: E402
from backend.scoring.metrics import score_document  # noqa: E402
from sroie_split import CREDIT, load_split, tune_rows  # noqa: E402
from sroie_split import SOURCE as SROIE  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def collect(adapter: str, rows: list[dict[str, Any]], *, batch_size: int) -> list[dict[str, Any]]:
    """Each receipt's served answer: fields, calibrated confidence, grounding and checks, beside its gold
    fields."""
    from backend.inference.bundle import AdapterBundle
    from backend.inference.extraction import Document, extract_many
    from backend.inference.pool import ModelPool
    from backend.inference.spec import ExtractionSpec
    from backend.inference.stages import reranked

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
                    "checks": answer["checks"],
                    "reranked": sorted(reranked(answer.get("ranking"))),
                }
            )
        print(f"{len(out)}/{len(rows)} receipts", flush=True)
    return out


def answers(adapter: str, cache: Path, *, batch_size: int, tune: bool = True) -> dict[str, list[dict[str, Any]]]:
    """The adapter's answers on dev and (with `tune`) tune, from `cache` where it holds them."""
    parts = json.loads(cache.read_text())["parts"] if cache.is_file() else {}
    wanted = {"dev": load_split()[1], **({"tune": tune_rows()} if tune else {})}
    missing = {name: rows for name, rows in wanted.items() if name not in parts}
    if missing:
        started = time.perf_counter()
        parts |= {name: collect(adapter, rows, batch_size=batch_size) for name, rows in missing.items()}
        cache.parent.mkdir(parents=True, exist_ok=True)
        seconds = round(time.perf_counter() - started, 1)
        cache.write_text(json.dumps({"adapter": adapter, "seconds": seconds, "parts": parts}, ensure_ascii=False))
        print(f"extracted {sum(map(len, missing.values()))} receipts in {seconds} s", flush=True)
    return parts


def out_of_fold(points: list[Path]) -> list[dict[str, Any]]:
    """The answers `label_efficiency.py` points kept, as rows beside their gold fields; refused when a
    point kept none or two points answer the same receipt (a receipt counts once)."""
    rows = [r for path in points for r in point_rows(path)]
    seen: dict[str, str] = {}
    for r in rows:
        if r["id"] in seen:
            raise SystemExit(
                f"receipt {r['id']} is answered by both {seen[r['id']]} and {r['point']}: one point per fold"
            )
        seen[r["id"]] = r["point"]
    return rows


def dev_answers(point: Path) -> list[dict[str, Any]]:
    """The dev answers a `label_efficiency.py --dev` point kept, instead of extracting them again."""
    if json.loads(point.read_text()).get("split") != "dev":
        raise SystemExit(f"{point}: not a --dev point (its answers are not the dev receipts')")
    rows = point_rows(point)
    if sorted(r["id"] for r in rows) != sorted(r["id"] for r in load_split()[1]):
        raise SystemExit(f"{point}: its answers are not exactly the dev receipts")
    return rows


@functools.cache
def receipts() -> dict[str, dict[str, Any]]:
    """Every SROIE receipt by id, read once."""
    return {r["id"]: r for r in map(json.loads, SROIE.read_text().splitlines()) if r}


def point_rows(path: Path) -> list[dict[str, Any]]:
    """A point's kept answers beside their gold fields, checked again by the label rules learned from the
    labels the point trained on (its `ids`)."""
    from backend.inference.stages import check
    from backend.labels.conventions import learn

    by_id = receipts()
    point = json.loads(path.read_text())
    if not point.get("answers"):
        raise SystemExit(f"{path}: the point kept no answers (saved before points kept them): score it again")
    rules = learn([(by_id[i]["text"], by_id[i]["fields"]) for i in point["ids"]], memory=False)  # checks need no memory
    return [
        {
            **a,
            "gold": by_id[a["id"]]["fields"],
            "checks": check(a["fields"], rules, by_id[a["id"]]["text"]),
            "point": path.name,
        }
        for a in point["answers"]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--adapter", help="run or adapter folder of an adapter trained on SROIE (not needed with --dev-from)"
    )
    parser.add_argument("--target-precision", type=float, default=0.99)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cache", type=Path, help="answers file (default runs/selective_automation/<adapter>.json)")
    parser.add_argument("--collect-only", action="store_true", help="extract and cache the answers, then stop")
    parser.add_argument(
        "--dev-from",
        type=Path,
        metavar="POINT",
        help="with --fit-on: the dev answers a label_efficiency --dev point kept instead of extracting them again",
    )
    parser.add_argument(
        "--fit-on",
        type=Path,
        nargs="+",
        metavar="POINT",
        help="fit the thresholds on these label_efficiency points' out-of-fold answers instead of tune",
    )
    args = parser.parse_args()
    if not args.adapter and not args.dev_from:
        raise SystemExit("--adapter: required (the adapter whose dev answers are judged), unless --dev-from")
    if args.dev_from and not args.fit_on:
        raise SystemExit("--dev-from: only with --fit-on (without it the thresholds are fitted on tune answers)")
    if args.dev_from:
        parts = {"dev": dev_answers(args.dev_from)}
    else:
        cache = args.cache or ROOT / "runs" / "selective_automation" / f"{Path(args.adapter).resolve().name}.json"
        parts = answers(args.adapter, cache, batch_size=args.batch_size, tune=not args.fit_on)
    if args.collect_only:
        return
    fit = out_of_fold(args.fit_on) if args.fit_on else parts["tune"]
    report(fit, parts["dev"], args)


VARIANTS = (  # (name, one-sided confidence of the precision bound): the product's default first
    ("95% lower bound (default)", 0.95),
    ("80% lower bound", 0.8),
    ("no bound: precision seen where fitted", 0.5),  # z = 0: the Wilson bound is the observed precision
)


def pairs_of(rows: list[dict[str, Any]]) -> dict[str, list[Pair]]:
    names = list(rows[0]["gold"])
    docs = [score_document(i, json.dumps(r["fields"]), r["gold"], names) for i, r in enumerate(rows)]
    answers = [{**r, "grounding": {k: (True if v else None) for k, v in r["grounded"].items()}} for r in rows]
    return answer_pairs(docs, answers)


def report(fit_rows: list[dict[str, Any]], dev_rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Thresholds fitted on `fit_rows` (tune, or out-of-fold answers) by each variant, judged on dev."""
    import torch

    fit, dev = pairs_of(fit_rows), pairs_of(dev_rows)
    part = "out_of_fold" if args.fit_on else "tune"
    cpu = torch.backends.cpu.get_cpu_capability()
    variants = []
    for name, confidence in VARIANTS:
        entry: dict[str, Any] = {"name": name, "confidence": confidence, "target": args.target_precision}
        try:
            fitted = fit_thresholds(fit, target=args.target_precision, confidence=confidence)
        except ThresholdsError as exc:
            entry["refused"] = str(exc)
        else:
            entry["thresholds"] = {f: asdict(t) for f, t in fitted.fields.items()}
            entry[part] = apply(fitted, fit)
            entry["dev"] = apply(fitted, dev)
        variants.append(entry)
    curves_fit, curves_dev = curves(fit), curves(dev)
    print(f"cpu: {cpu}; {len(fit_rows)} {part} receipts (thresholds fitted), {len(dev_rows)} dev receipts (scored)")
    print(
        f"precision needed: {args.target_precision:g}; a field needs at least "
        f"{needed(args.target_precision)} accepted {part} answers, all right, at the default 95% bound"
    )
    for v in variants:
        if "refused" in v:
            print(f"- {v['name']}: refused: {v['refused']}")
            continue
        d, t = v["dev"]["overall"], v[part]["overall"]
        kept = ", ".join(f"{f} {x['threshold']:.4f}" for f, x in v["thresholds"].items() if x["threshold"] is not None)
        print(
            f"- {v['name']}: thresholds {kept or 'none'}; {part} precision {_f(t['precision'])} at coverage "
            f"{t['coverage']:.3f}; dev precision {_f(d['precision'])} at coverage {d['coverage']:.3f} "
            f"({d['auto']} of {d['answers']} fields auto-approved, {d['wrong_auto']} of them wrong; "
            + ", ".join(f"{f} {x['coverage']:.0%}" for f, x in v["dev"]["fields"].items())
            + ")"
        )
    at = curves_dev["overall"]["coverage_at"]
    print(
        f"dev in hindsight (one threshold over all fields, chosen on dev: not a result, a ceiling): "
        f"coverage {at['0.99']:.3f} at precision >= 0.99, {at['0.95']:.3f} at >= 0.95"
    )
    marks = {"dev (held back: only scored)": {v["name"]: v["dev"]["overall"] for v in variants if "dev" in v}}
    summaries = {f"{part} (thresholds fitted here)": curves_fit, "dev (held back: only scored)": curves_dev}
    fit_rank = (json.loads(args.fit_on[0].read_text()).get("rank") or "none") if args.fit_on else "typed"
    dev_rank = (json.loads(args.dev_from.read_text()).get("rank") or "none") if args.dev_from else "typed"
    stem = f"selective_automation_p{args.target_precision:g}".replace(".", "") + ("_folds" if args.fit_on else "")
    stem += "" if dev_rank == "none" else f"_dev_{dev_rank}"
    png = chart(summaries, RESULTS / f"{stem}.png", marks=marks)
    out = RESULTS / f"{stem}.json"
    out.write_text(
        json.dumps(
            {
                "credit": CREDIT,
                "adapter": Path(args.adapter).resolve().name if args.adapter else args.dev_from.stem,
                **({"fit_on": [p.name for p in args.fit_on]} if args.fit_on else {}),
                "cpu": cpu,
                "receipts": {part: len(fit_rows), "dev": len(dev_rows)},
                "extraction": "constrained, the adapter's calibration and label rules",
                "ranking": {part: fit_rank, "dev": dev_rank},  # a value ranking changed is never approved
                "target_precision": args.target_precision,
                "needed_per_field_at_95": needed(args.target_precision),
                "variants": variants,
                "curves": {part: _rounded(curves_fit), "dev": _rounded(curves_dev)},
            },
            indent=1,
        )
        + "\n"
    )
    print(f"written: {out.relative_to(ROOT)}, {png.relative_to(ROOT)}")


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _rounded(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        k: {**v, "curve": [{m: round(x, 4) for m, x in pt.items()} for pt in v["curve"]]} for k, v in summary.items()
    }


if __name__ == "__main__":
    main()
