"""The learning curve over saved SROIE recipe results (benchmarks/sroie_curve.py): points, the trend per
doubling, the extrapolation only where the points rise, one slice per curve, and the plot."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("sroie_curve", ROOT / "benchmarks" / "sroie_curve.py")
sroie_curve = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sroie_curve)

NAMES = ["company", "date", "address", "total"]


def result(
    path: Path, receipts: int | None, engine: float, final: float, eval_on: str = "fold0", scored: int = 100
) -> Path:
    saved = {
        "eval_on": eval_on,
        "receipts": scored,
        "micro_f1": final,
        "train": {"steps": receipts and receipts // 4},
        "stages": {"engine": {"micro_f1": engine}, "recall": {"micro_f1": final}},
        "report": {"fields": {n: {"f1": final} for n in NAMES}},
    }
    if receipts is not None:
        saved["train_receipts"] = receipts
    path.write_text(json.dumps(saved))
    return path


def test_points_and_the_trend_per_doubling(tmp_path):
    files = [
        result(tmp_path / "a.json", 100, 0.80, 0.85),
        result(tmp_path / "b.json", 200, 0.84, 0.88),
        result(tmp_path / "c.json", None, 0.88, 0.91),
    ]  # before --train-receipts: a fold trains on 400
    points = sorted((sroie_curve.point(f) for f in files), key=lambda p: p["receipts"])
    assert [p["receipts"] for p in points] == [100, 200, 400]
    slope, intercept = sroie_curve.per_doubling(points, "engine")
    assert slope == pytest.approx(0.04) and intercept + slope * 8.643856 == pytest.approx(0.88, abs=1e-4)  # at 400
    assert sroie_curve.per_doubling(points[:1], "engine") is None  # one count: no trend


def test_the_command_prints_the_curve_extrapolates_only_upwards_and_draws_it(tmp_path):
    rising = [
        result(tmp_path / f"r{n}.json", n, 0.70 + 0.04 * k, 0.80 + 0.04 * k) for k, n in enumerate((100, 200, 400))
    ]
    png = tmp_path / "curve.png"
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sroie_curve.py"), *map(str, rising), "--out", str(png)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "final: +0.040 micro-F1 per doubling" in run.stdout
    assert "reaches 0.95 at ≈ 1345 receipts" in run.stdout  # 0.88 at 400, +0.04 per doubling: 400 * 2**1.75
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    flat = [result(tmp_path / f"f{n}.json", n, 0.9, 0.9) for n in (100, 200)]
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sroie_curve.py"), *map(str, flat), "--out", str(png)],
        capture_output=True,
        text=True,
    )
    assert "+0.000 micro-F1 per doubling" in run.stdout and "reaches" not in run.stdout


def test_results_of_different_slices_or_the_same_count_twice_are_refused(tmp_path):
    files = [
        result(tmp_path / "a.json", 100, 0.8, 0.8),
        result(tmp_path / "b.json", 440, 0.9, 0.9, eval_on="tune", scored=60),
    ]
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "sroie_curve.py"),
            *map(str, files),
            "--out",
            str(tmp_path / "x.png"),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "different slices" in run.stderr

    twice = [result(tmp_path / "c.json", 100, 0.8, 0.8), result(tmp_path / "d.json", 100, 0.85, 0.85)]
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "sroie_curve.py"),
            *map(str, twice),
            "--out",
            str(tmp_path / "x.png"),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "several at [100]" in run.stderr and "d.json" in run.stderr


def test_a_file_that_is_not_a_recipe_result_is_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"eval_on": "fold0"}))
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sroie_curve.py"), str(bad), "--out", str(tmp_path / "x.png")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and f"{bad}: not a sroie_recipe.py results file (KeyError" in run.stderr
