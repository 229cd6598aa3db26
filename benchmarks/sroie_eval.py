"""Real-data check: fine-tune the bundled model on SROIE receipts, then evaluate base vs fine-tuned.

    .venv/bin/python benchmarks/sroie_eval.py [--epochs 2 --max-minutes 40 --val 60 --lr 4e-4]
    .venv/bin/python benchmarks/sroie_eval.py --adapter runs/sroie/<run>   # evaluate an existing run only

Data: sroie_train.jsonl, kept outside the repository (benchmarks/README.md; --data FILE) (626 receipts from the ICDAR 2019 SROIE dataset, CC BY 4.0,
with gold company/date/address/total), shuffled with a fixed seed and split into a training part and
`--val` held-out receipts; both parts are written to the output folder. Training uses tunebridge's
trainer with its defaults except the options below; evaluation (`backend/evaluation`) runs the base
model and the adapter on the held-out receipts with the training prompt, greedy, and reports
micro-F1, per-field F1, exact match and JSON/schema validity. Results go to
benchmarks/results/sroie_eval.json and the run's eval/ folder (report.md, eval.png).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SROIE = ROOT.parent / "shared" / "data" / "sroie_train.jsonl"


def split(data: Path, out: Path, *, val: int, seed: int) -> tuple[Path, Path]:
    lines = [line for line in data.read_text().splitlines() if line.strip()]
    random.Random(seed).shuffle(lines)
    out.mkdir(parents=True, exist_ok=True)
    train, held = out / "train.jsonl", out / "val.jsonl"
    train.write_text("\n".join(lines[val:]) + "\n")
    held.write_text("\n".join(lines[:val]) + "\n")
    (out / "CREDITS.md").write_text("Receipts from the ICDAR 2019 SROIE dataset (Huang et al.), CC BY 4.0.\n")
    return train, held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SROIE, help="SROIE JSONL with text + fields")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "sroie", help="split files and run folders")
    parser.add_argument("--val", type=int, default=60, help="held-out receipts")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--max-minutes", type=float, default=40.0, help="training time budget")
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--adapter", help="skip training: evaluate this run folder")
    parser.add_argument("--no-base", action="store_true", help="skip the base model's evaluation")
    parser.add_argument("--constrained", action="store_true", help="decode under the schema (the constrained extraction engine)")
    parser.add_argument("--span-copy", action="store_true",
                        help="with --constrained: every field may only be a substring of the receipt's text or of "
                             "its whitespace-normalised variant (backend/inference/spans.py)")
    args = parser.parse_args()
    if args.span_copy and not args.constrained:
        parser.error("--span-copy needs --constrained")

    from backend.evaluation.runner import evaluate, load_eval_set, write_eval
    from backend.inference.pool import ModelPool
    from backend.services.evaluations import build_candidates
    from backend.training.config import TrainConfig
    from backend.training.trainer import train

    train_file, val_file = split(args.data, args.out, val=args.val, seed=args.seed)
    run_dir, train_s, summary = args.adapter, None, {}
    if run_dir is None:
        config = TrainConfig(data=[str(train_file)], output_dir=str(args.out), run_name=f"sroie-{time.strftime('%m%d-%H%M')}",
                             epochs=args.epochs, max_minutes=args.max_minutes, learning_rate=args.lr,
                             batch_size=args.batch_size, val_fraction=0.0, save_every=25)
        result = train(config)
        run_dir, summary = str(result.run_dir), result.summary
        train_s = summary["train_time_s"]
    examples, schema = load_eval_set(val_file)
    candidates = build_candidates(adapters=[run_dir], include_base=not args.no_base, model=None,
                                  default_base="smollm2-135m")
    from tqdm import tqdm

    if args.span_copy:  # the evaluation runner has no option for it: its extraction call gets one
        import functools

        import backend.evaluation.runner as runner

        runner.extract_many = functools.partial(runner.extract_many, span_copy=True)
    kind = "-constrained-span" if args.span_copy else "-constrained" if args.constrained else ""

    bar = tqdm(total=len(examples) * len(candidates), unit="receipt", desc="evaluating")
    outcome = evaluate(examples=examples, schema=schema, candidates=candidates, pool=ModelPool(),
                       constrained=args.constrained, on_progress=lambda p: bar.update(p["step"] - bar.n))
    bar.close()
    eval_dir = Path(run_dir) / f"eval{kind}"
    write_eval({"data": str(val_file), **outcome}, eval_dir, title="SROIE held-out receipts")
    lines = []
    for label, entry in outcome["candidates"].items():
        s = entry["extraction"]
        fields = ", ".join(f"{f} {v['f1']:.3f}" for f, v in s["fields"].items())
        ece = f"; ECE {s['calibration']['ece']:.3f}" if "calibration" in s else ""
        lines.append(f"{label}: micro-F1 {s['micro']['f1']:.3f} ({fields}); exact match {s['exact_match']:.3f}; "
                     f"JSON-valid {s['json_valid']:.3f}; schema-valid {s['schema_valid']:.3f}{ece}; "
                     f"eval {entry['seconds']} s")
    print("\n".join(lines))
    tuned = outcome["candidates"][candidates[-1].label]["extraction"]
    if train_s is not None:
        print(f"training: {summary['steps']} steps, {train_s:.0f} s, {summary['tokens_per_s']:.0f} tokens/s, "
              f"{summary['runtime']}")
    print(f"SROIE micro-F1 {tuned['micro']['f1']:.3f} on {len(examples)} held-out receipts")
    out = ROOT / "benchmarks" / "results" / f"sroie_eval{kind.replace('-', '_')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "run_dir": run_dir,
                               "train_time_s": train_s, "train_summary": {k: summary.get(k) for k in (
                                   "steps", "tokens_per_s", "final_loss", "runtime")} if summary else None,
                               "results": {label: {k: v for k, v in e.items() if k != "predictions"}
                                           for label, e in outcome["candidates"].items()}}, indent=2, default=str))
    print(f"written: {out.relative_to(ROOT)}; report: {eval_dir / 'report.md'}")


if __name__ == "__main__":
    main()
