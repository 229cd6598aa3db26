"""Learning curve of the SROIE recipe: micro-F1 against the number of labelled receipts trained on,
from saved `sroie_recipe.py` results of one development slice — how many more labels a business would
need for a target, read off its own data.

    .venv/bin/python benchmarks/sroie_recipe.py --eval-on fold0 --model gemma3-270m --epochs 2 \\
        --rank-mode typed --train-receipts 100 --out benchmarks/results/sroie_recipe_fold0_n100.json
    .venv/bin/python benchmarks/sroie_curve.py benchmarks/results/sroie_recipe_fold0_n{100,200,400}.json

prints each point (engine and final micro-F1, per field), the change per doubling of the training
receipts (least squares on log2 of the count) and, only where the points rise, the count at which that
trend would reach `--target` (an extrapolation, labelled as one); draws benchmarks/results/
sroie_learning_curve.png. The points must come from one slice (the same receipts scored), one per count
(a control run at the same count, e.g. more epochs, is not a point of the curve).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRAIN_PART = {"dev": 500, "tune": 440}  # receipts a run trains on without --train-receipts (folds: 400)
NAMES = ["company", "date", "address", "total"]


def point(path: Path) -> dict[str, Any]:
    saved = json.loads(path.read_text())
    receipts = saved.get("train_receipts") or TRAIN_PART.get(saved["eval_on"], 400)  # results from before the option
    stages = saved["stages"]
    return {
        "file": str(path),
        "slice": saved["eval_on"],
        "receipts": receipts,
        "scored": saved["receipts"],
        "engine": stages["engine"]["micro_f1"],
        "final": saved["micro_f1"],
        "fields": {n: saved["report"]["fields"][n]["f1"] for n in NAMES},
        "steps": (saved.get("train") or {}).get("steps"),
    }


def per_doubling(points: list[dict[str, Any]], key: str) -> tuple[float, float] | None:
    """(slope per doubling, intercept) of `key` against log2(receipts), least squares; None under two counts."""
    xs = [math.log2(p["receipts"]) for p in points]
    if len(set(xs)) < 2:
        return None
    ys = [p[key] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return slope, my - slope * mx


def draw(points: list[dict[str, Any]], out: Path, target: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p["receipts"] for p in points]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(xs, [p["final"] for p in points], "o-", label="recipe (final)", linewidth=2)
    ax.plot(xs, [p["engine"] for p in points], "s--", label="engine only")
    for name in NAMES:
        ax.plot(xs, [p["fields"][name] for p in points], ":", marker=".", alpha=0.6, label=name)
    ax.axhline(target, color="grey", linewidth=0.8, label=f"goal {target}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("training receipts")
    ax.set_ylabel("F1")
    ax.set_title(f"SROIE learning curve ({points[0]['slice']}, {points[0]['scored']} receipts scored)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("results", nargs="+", type=Path, help="sroie_recipe.py results of one slice")
    parser.add_argument("--target", type=float, default=0.95, help="the micro-F1 the trend is read against")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sroie_learning_curve.png")
    args = parser.parse_args()
    points = []
    for path in args.results:
        try:
            points.append(point(path))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            parser.error(f"{path}: not a sroie_recipe.py results file ({type(exc).__name__}: {exc})")
    points.sort(key=lambda p: p["receipts"])
    slices = {(p["slice"], p["scored"]) for p in points}
    if len(slices) > 1:
        parser.error(f"results from different slices cannot share a curve: {sorted(slices)}")
    counts = [p["receipts"] for p in points]
    twice = sorted({n for n in counts if counts.count(n) > 1})
    if twice:
        parser.error(
            f"one result per training-receipt count; several at {twice}: "
            + ", ".join(p["file"] for p in points if p["receipts"] in twice)
        )
    print(f"{'receipts':>8s} {'steps':>6s} {'engine':>7s} {'final':>7s}  " + " ".join(f"{n:>8s}" for n in NAMES))
    for p in points:
        print(
            f"{p['receipts']:8d} {p['steps'] or '-':>6} {p['engine']:7.3f} {p['final']:7.3f}  "
            + " ".join(f"{p['fields'][n]:8.3f}" for n in NAMES)
        )
    for key in ("engine", "final"):
        fit = per_doubling(points, key)
        if fit is None:
            continue
        slope, intercept = fit
        line = f"{key}: {slope:+.3f} micro-F1 per doubling of the training receipts"
        if slope > 0 and points[-1][key] < args.target:
            need = 2 ** ((args.target - intercept) / slope)
            line += f"; the trend (an extrapolation) reaches {args.target} at ≈ {need:.0f} receipts"
        print(line)
    print(f"plot: {draw(points, args.out, args.target)}")


if __name__ == "__main__":
    main()
