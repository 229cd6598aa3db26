"""`tunebridge eval`: score the base model and adapters on labelled data, side by side.

    tunebridge eval --data val.jsonl --adapter runs/<run>
    tunebridge eval --data tune.jsonl --adapter runs/<run> --no-base --constrained --calibrate
    tunebridge eval --data tune.jsonl --adapter runs/<run> --no-base --constrained --thresholds

With --constrained, answers are decoded as `/v1/extract` serves them; --calibrate fits the adapter's
confidence calibration on this data and --thresholds its per-field automation thresholds
(`backend/labels/thresholds.py`), each saved in the adapter's folder and used at serving. Data given to
either should be held out from training, and data that fitted them is no fair test of them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from backend.errors import InvalidRequest
from backend.labels.thresholds import DEFAULT_TARGET


def add_command(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="score the base model and adapters on labelled data, side by side "
        "(field-level F1 for extraction; loss, exact match, token-F1 for chats)",
    )
    p.add_argument("--data", required=True, help="JSONL file (extraction records, chats, ...)")
    p.add_argument(
        "--adapter",
        action="append",
        help="run folder, adapter folder, or with --data-dir a registry "
        "reference (name, name@3, name@prod); repeat to compare several",
    )
    p.add_argument("--no-base", action="store_true", help="leave the base model out of the comparison")
    p.add_argument("--model", help="base model (default: the first adapter's base, else smollm2-135m)")
    p.add_argument("--limit", type=int, help="first N examples only")
    p.add_argument("--batch-size", type=int, default=8, help="examples generated together")
    p.add_argument("--max-new-tokens", type=int, help="generation cap (default: 48 per field + 32)")
    p.add_argument(
        "--constrained",
        action="store_true",
        help="decode extraction answers under the schema "
        "(always valid JSON; per-field confidence, scored for calibration) and score them as serving "
        "returns them (the adapter's label conventions applied)",
    )
    p.add_argument(
        "--rank",
        choices=["typed", "text", "none"],
        help="with --constrained: candidate ranking after decoding, as /v1/extract's rank (default: typed "
        "for an adapter with label conventions, as served; none: the decoded answers as they are)",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="with --constrained: fit Platt scaling of the "
        "confidences on this data and save it in each adapter's folder (used at serving)",
    )
    p.add_argument(
        "--thresholds",
        action="store_true",
        help="with --constrained: fit each field's automation threshold on this data (the lowest "
        "confidence whose answers reach --target-precision, by a 95%% lower bound) and save it in each "
        "adapter's folder as thresholds.json; /v1/extract then marks each field auto or review",
    )
    p.add_argument(
        "--target-precision",
        type=float,
        default=DEFAULT_TARGET,
        help="with --thresholds: the precision the auto-approved answers of each field must reach",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", help="output folder (default: runs/eval-<timestamp>)")
    p.add_argument("--data-dir", help="the service's data folder, for registry references")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from backend.evaluation.runner import evaluate, load_eval_set, write_eval
    from backend.inference.pool import ModelPool
    from backend.services.evaluations import build_candidates
    from backend.settings import from_options

    for flag, given in (("--calibrate", args.calibrate), ("--thresholds", args.thresholds)):
        if given and not args.constrained:
            raise InvalidRequest(f"{flag} needs --constrained (confidences come from constrained decoding)")
    if args.rank not in (None, "none") and not args.constrained:
        raise InvalidRequest("--rank needs --constrained (candidates are ranked after constrained decoding)")
    if not 0 < args.target_precision < 1:
        raise InvalidRequest(f"--target-precision: got {args.target_precision}, expected a number between 0 and 1")
    settings, engine = from_options(data_dir=args.data_dir), None
    if args.data_dir:
        from backend.storage.engine import make_engine

        engine = make_engine(settings.db_url)
    examples, schema = load_eval_set(args.data, limit=args.limit)
    candidates = build_candidates(
        adapters=args.adapter or [],
        include_base=not args.no_base,
        model=args.model,
        default_base=settings.default_base_model,
        engine=engine,
    )
    from tqdm import tqdm

    bar = tqdm(total=len(examples) * len(candidates), unit="example", desc="evaluating")

    def show(p):
        bar.set_postfix_str(p["candidate"])
        bar.update(p["step"] - bar.n)

    result = evaluate(
        examples=examples,
        schema=schema,
        candidates=candidates,
        pool=ModelPool(device=args.device),
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        constrained=args.constrained,
        rank=False if args.rank == "none" else args.rank,
        on_progress=show,
    )
    bar.close()
    fitted = _save_learned(args, candidates, result)
    out = Path(args.out or f"runs/eval-{time.strftime('%Y%m%d-%H%M%S')}")
    paths = write_eval({"data": str(args.data), **result}, out, title=f"Evaluation on {Path(args.data).name}")
    _print_summary(result)
    for line in fitted["lines"]:
        print(line)
    print(f"report: {paths['report']}  (eval.json, eval.png beside it)")
    for label, error in fitted["refused"].items():
        print(f"error: {label}: thresholds not saved: {error}", file=sys.stderr)
    return 2 if fitted["refused"] else 0


def _save_learned(args: argparse.Namespace, candidates, result: dict[str, Any]) -> dict[str, Any]:
    """--calibrate, then --thresholds (on confidences as the new calibration gives them), saved in each
    adapter's folder; what was saved, and the adapters whose thresholds were refused."""
    from backend.labels.calibration import Platt
    from backend.labels.thresholds import ThresholdsError, fit_thresholds, recalibrated

    lines: list[str] = []
    refused: dict[str, str] = {}
    for candidate in candidates:
        folder = candidate.target.adapter_path
        extraction = result["candidates"][candidate.label].get("extraction", {})
        if not folder or "calibration" not in extraction:
            continue
        served = candidate.target.learned.calibration  # what calibrated the confidences just scored
        if args.calibrate:
            platt = Platt(**extraction["calibration"]["platt"])
            saved = platt.save(Path(folder))
            lines.append(
                f"{candidate.label}: calibration (a={platt.a:.3f}, b={platt.b:.3f}) saved to {saved}; "
                "constrained extraction with this adapter now reports calibrated confidence"
            )
        if args.thresholds:
            pairs = extraction["selective"]["pairs"]
            now = Platt.load(folder)
            if args.calibrate:
                pairs = recalibrated(pairs, served, now)
            try:
                thresholds = fit_thresholds(pairs, target=args.target_precision, calibration=now)
            except ThresholdsError as exc:
                refused[candidate.label] = str(exc)
                extraction["selective"]["refused"] = str(exc)
                continue
            saved = thresholds.save(Path(folder))
            extraction["selective"]["thresholds"] = thresholds.as_dict()
            kept = {f: t.threshold for f, t in thresholds.fields.items() if t.threshold is not None}
            lines.append(
                f"{candidate.label}: thresholds for precision {thresholds.target:g} saved to {saved}: "
                + ", ".join(f"{f} ≥ {t:.3f}" for f, t in kept.items())
                + (
                    f"; always review: {', '.join(sorted(set(thresholds.fields) - set(kept)))}"
                    if len(kept) < len(thresholds.fields)
                    else ""
                )
            )
    return {"lines": lines, "refused": refused}


def _print_summary(result: dict[str, Any]) -> None:
    for label, entry in result["candidates"].items():
        if "extraction" in entry:
            s = entry["extraction"]
            fields = ", ".join(f"{f} {v['f1']:.2f}" for f, v in s["fields"].items())
            c = s.get("calibration")
            ece = f"; ECE {c['ece']:.3f}" if c else ""
            if c and c.get("ece_calibrated") is not None:
                ece += f" (Platt-calibrated {c['ece_calibrated']:.3f} out of fold)"
            print(
                f"{label}: micro-F1 {s['micro']['f1']:.3f} ({fields}); exact {s['exact_match']:.2f}; "
                f"JSON-valid {s['json_valid']:.2f}; schema-valid {s['schema_valid']:.2f}{ece}; {entry['seconds']} s"
            )
        if "answers" in entry:
            a = entry["answers"]
            print(
                f"{label}: loss {a['loss']:.4f}, perplexity {a['perplexity']:.2f}, exact {a['exact_match']:.2f}, "
                f"token-F1 {a['token_f1']:.2f}"
            )
