"""`tunebridge thresholds`: an adapter's automation thresholds fitted on other adapters' held-out answers
(cross-fitting, `backend/evaluation/crossfit.py`) — every labelled document can train the adapter and
still count toward its thresholds.

    # five parts; part-k.jsonl held out of run k, all-but-k.jsonl its training data
    tunebridge train --data all-but-0.jsonl --out runs/part-0 ...        # and parts 1..4
    tunebridge eval --data part-0.jsonl --adapter runs/part-0 --no-base --constrained --out runs/eval-0
    tunebridge train --data all.jsonl --out runs/final ...
    tunebridge thresholds --adapter runs/final --from runs/eval-0 runs/eval-1 runs/eval-2 runs/eval-3 runs/eval-4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backend.labels.thresholds import DEFAULT_TARGET


def add_command(sub) -> None:
    p = sub.add_parser(
        "thresholds",
        help="fit an adapter's automation thresholds on evaluations of adapters trained without the "
        "documents they answered (cross-fitting: no labels held out of the final adapter)",
    )
    p.add_argument("--adapter", required=True, help="run or adapter folder the thresholds are saved in")
    p.add_argument(
        "--from",
        dest="reports",
        nargs="+",
        required=True,
        metavar="EVAL",
        help="evaluation folders or eval.json files (`tunebridge eval --constrained`), one adapter each, "
        "no document in two",
    )
    p.add_argument(
        "--target-precision",
        type=float,
        default=DEFAULT_TARGET,
        help="the precision the auto-approved answers of each field must reach (by a 95%% lower bound)",
    )
    p.set_defaults(func=cmd_thresholds)


def cmd_thresholds(args: argparse.Namespace) -> int:
    from backend.evaluation.crossfit import pooled_pairs
    from backend.labels.calibration import Platt
    from backend.labels.thresholds import ThresholdsError, fit_thresholds
    from backend.models.adapters import find_adapter

    folder = find_adapter(args.adapter).path
    calibration = Platt.load(folder)
    pairs, sources = pooled_pairs(args.reports, calibration)
    for s in sources:
        print(f"{s.report}: {s.documents} documents answered by {s.adapter}")
    try:
        thresholds = fit_thresholds(pairs, target=args.target_precision, calibration=calibration)
    except ThresholdsError as exc:
        print(f"error: thresholds not saved: {exc}", file=sys.stderr)
        return 2
    saved = thresholds.save(Path(folder))
    for field, t in thresholds.fields.items():
        if t.threshold is None:
            print(f"{field}: always review ({t.support} answers support no threshold)")
        else:
            print(
                f"{field}: auto at confidence ≥ {t.threshold:.4f}: {t.accepted} of {t.support} answers "
                f"({t.coverage:.0%}), precision {t.precision:.3f}, lower bound {t.lower_bound:.3f}"
            )
    under = "its calibration" if calibration is not None else "uncalibrated confidences"
    print(f"thresholds for precision {thresholds.target:g} ({under}) saved to {saved}")
    return 0
