"""Peak memory of training and of serving, per CPU kind: each measured in a fresh process of its own.

    .venv/bin/python benchmarks/memory.py                                   # train + serve, bundled model
    .venv/bin/python benchmarks/memory.py --model gemma3-270m --only train  # after installing Gemma 3 270M
    .venv/bin/python benchmarks/memory.py --adapter runs/sroie/<run> --only serve --dtypes auto int8

train: `tunebridge train` on receipts (batch 8, `--steps` steps, default settings otherwise: the token
budget per pass, the compute path of this CPU). serve: the serving pool (`ModelPool`) with the adapter
(or the base model) extracting `--docs` receipts in batches of 8, per inference dtype. Peak RSS is the
child process's maximum resident set (`wait4`), so nothing else in this process counts; `--trace S`
also samples its resident set every S seconds, to find when a peak happens. Training also keeps each
step's record (tokens, answer tokens, passes recomputed, the peak so far) and prints the steps that
raised the peak. Prints the CPU kind and one line per measurement; results in
benchmarks/results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECEIPTS = ROOT / "examples" / "data" / "receipts.jsonl"

SERVE = """
import json, sys, torch
from backend.inference.bundle import AdapterBundle
from backend.inference.constrained import flat_schema
from backend.inference.extraction import Document, extract_many
from backend.inference.pool import ModelPool
from backend.inference.spec import ExtractionSpec
adapter, dtype, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [json.loads(line) for line in open(sys.argv[4]) if line.strip()]
docs = [rows[i % len(rows)]["text"] for i in range(n)]
pool = ModelPool(dtype=dtype)
target = AdapterBundle.of_folder(adapter) if adapter else AdapterBundle("smollm2-135m")
spec = ExtractionSpec.of(flat_schema(["company", "date", "address", "total"]))
out = extract_many(pool, target, [Document(d, spec) for d in docs], batch_size=8)
print(json.dumps({"weights": pool.weights, "documents": len(out)}))
"""


def peak_of(
    command: list[str], env: dict | None = None, trace: float = 0.0
) -> tuple[float, float, list[str], list[list[float]]]:
    """Run `command`; its peak RSS in GiB, its wall time in s, its output lines and, with `trace`, its
    resident set sampled every `trace` s ([[seconds, GiB], ...])."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert child.stdout is not None
    samples: list[list[float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(trace):
            try:
                status = Path(f"/proc/{child.pid}/status").read_text()
            except OSError:
                return
            kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), None)
            if kib is not None:
                samples.append([round(time.perf_counter() - started, 1), round(kib / 2**20, 3)])

    sampler = threading.Thread(target=sample, daemon=True)
    if trace > 0:
        sampler.start()
    lines = child.stdout.read().splitlines()
    done.set()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])}... failed ({child.returncode}):\n" + "\n".join(lines[-20:]))
    return usage.ru_maxrss / 2**20, time.perf_counter() - started, lines, samples


def steps_of(records: list[dict]) -> list[dict]:
    """The training steps' records as kept here: what each step held, the process's peak so far, and
    how much the step raised it (0 for the first)."""
    steps, before = [], 0.0
    for record in records:
        if "tokens" not in record:  # an evaluation line
            continue
        keep = ("step", "tokens", "answer_tokens", "recomputed_passes", "step_time_s", "peak_rss_gib")
        step = {k: record[k] for k in keep if k in record}
        if "peak_rss_gib" in step:
            step["peak_rss_rise_gib"] = round(max(0.0, step["peak_rss_gib"] - before), 3) if before else 0.0
            before = step["peak_rss_gib"]
        steps.append(step)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="smollm2-135m", help="base model for training (and serving without --adapter)"
    )
    parser.add_argument("--adapter", help="a training run folder to serve (default: the base model alone)")
    parser.add_argument("--steps", type=int, default=3, help="training steps (batch 8)")
    parser.add_argument(
        "--pass-tokens", type=int, help="training's token budget per pass (default: the trainer's, sized to the model)"
    )
    parser.add_argument("--docs", type=int, default=16, help="receipts extracted by the serving pool")
    parser.add_argument("--dtypes", nargs="+", default=["auto"], help="inference dtypes to serve with")
    parser.add_argument("--only", choices=["train", "serve"])
    parser.add_argument("--data", type=Path, default=RECEIPTS, help="extraction records to train and serve on")
    parser.add_argument(
        "--env",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="set in the measured processes (e.g. GLIBC_TUNABLES=glibc.malloc.trim_threshold=268435456)",
    )
    parser.add_argument(
        "--trace",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="also sample the measured process's resident set this often (kept in the results: where a peak is)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "memory.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from backend.models.hardware import cpu_kind

    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    env |= dict(pair.split("=", 1) for pair in args.env)
    print(f"cpu: {cpu_kind()}" + (f"; {' '.join(args.env)}" if args.env else ""))
    results = []
    if args.only != "serve":
        with tempfile.TemporaryDirectory() as runs:
            command = [sys.executable, "-m", "backend.cli", "train", "--quiet", "--model", args.model]
            command += ["--data", str(args.data), "--batch-size", "8", "--max-steps", str(args.steps)]
            command += ["--val-fraction", "0", "--report-to", "none", "--save-every", "0", "--output-dir", runs]
            command += ["--pass-tokens", str(args.pass_tokens)] if args.pass_tokens is not None else []
            gib, wall, lines, samples = peak_of(command, env, args.trace)
            steps = steps_of([json.loads(line) for m in Path(runs).glob("*/metrics.jsonl") for line in m.open()])
        status = next((line for line in lines if "tokens/s" in line), "")  # "finished: 3/3 steps, N tokens/s, ..."
        speed = float(status.split(" tokens/s")[0].rsplit(" ", 1)[-1]) if status else None
        what = f"train {args.model} on {args.data.name}, batch 8, {args.steps} steps" + (
            f", {args.pass_tokens}-token passes" if args.pass_tokens is not None else ""
        )
        results.append(
            {"what": what, "env": args.env, "peak_rss_gib": gib, "wall_s": wall, "tokens_per_s": speed}
            | ({"rss_trace": samples} if samples else {})
            | {"steps": steps}
        )
        print(
            f"train  {args.model:<14} batch 8, {args.steps} steps   peak RSS {gib:5.2f} GiB  ({wall:.0f} s, "
            f"{speed} tokens/s)"
        )
        if samples:
            at, top = max(samples, key=lambda s: s[1])
            print(
                f"       resident set sampled every {args.trace:g} s: highest {top:.2f} GiB at {at:.0f} s of {wall:.0f}"
            )
        rises = [s for s in steps if s.get("peak_rss_rise_gib", 0) >= 0.05]
        for step in rises:  # the steps that raised the peak, and what they held
            print(
                f"       step {step['step']:>4}: peak {step['peak_rss_gib']:.2f} GiB (+{step['peak_rss_rise_gib']:.2f}), "
                f"{step['tokens']} tokens, {step['answer_tokens']} answer tokens, "
                f"{step.get('recomputed_passes', 0)} passes recomputed"
            )
    if args.only != "train":
        for dtype in args.dtypes:
            command = [sys.executable, "-c", SERVE, args.adapter or "", dtype, str(args.docs), str(args.data)]
            gib, wall, lines, samples = peak_of(command, env, args.trace)
            weights = json.loads(lines[-1])["weights"]
            what = f"serve {args.adapter or args.model}, {args.docs} receipts in batches of 8, {weights}"
            results.append(
                {"what": what, "peak_rss_gib": gib, "wall_s": wall} | ({"rss_trace": samples} if samples else {})
            )
            print(f"serve  {weights:<14} {args.docs} receipts, batches of 8   peak RSS {gib:5.2f} GiB  ({wall:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": str(cpu_kind()), "results": results}, indent=2))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
