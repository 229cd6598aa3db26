"""One extraction lever, on and off, in interleaved batches: a paired measurement that the noise of a
shared 2-core machine (±10% between runs) does not swamp.

    .venv/bin/python benchmarks/extract_ab.py --adapter runs/sroie/<run> --lever merge
    .venv/bin/python benchmarks/extract_ab.py --adapter runs/sroie/<run> --lever decoding --against <git revision>
    .venv/bin/python benchmarks/extract_ab.py --adapter runs/sroie/<run> --lever attention
    .venv/bin/python benchmarks/extract_ab.py --adapter runs/sroie/<run> --lever kept-prompt
    .venv/bin/python benchmarks/extract_ab.py --adapter runs/sroie/<run> --lever draft --draft 8

- `merge`: the adapter merged into the fp32 base weights (what the pool does once an adapter has run
  `MERGE_AFTER_S` in a row) against a pool that never merges;
- `decoding`: this tree's `backend/inference/decoding.py` against the same file at an earlier git
  revision (e.g. the padded prefill before per-row prefill), in the same process and pool, candidate
  ranking off in both (an earlier revision's results may lack what ranking reads now);
- `attention`: the pool's grouped attention (`backend/inference/kv.py`) against transformers' SDPA
  attention, both merged at once;
- `kept-prompt`: candidate ranking (the default "typed") going on from each ranked receipt's prompt as
  decoding read it, against reading the prompt again, both merged at once;
- `draft`: batches decoded with `--draft N` copied guesses a row against the product's width
  (`extraction.DRAFT_BATCHED`), both merged at once.
The held-out SROIE receipts of benchmarks/extract_latency.py (with `--fold K`, development fold K's:
for an adapter `label_efficiency.py` trained on the other folds) go through both arms batch by batch, the
arm that goes first alternating; prints each arm's documents/s, the batches the lever won, the ratio,
the seconds each arm spent in decode passes (the part most levers change: less noisy than the whole),
and whether the answers agree. Results: benchmarks/results/extract_ab-<lever>[-<tag>]-<cpu>.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from extract_latency import FOLD_HELP, NAMES, receipts  # noqa: E402


def old_decoding(revision: str):
    """backend/inference/decoding.py as it was at `revision`, loaded as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{revision}:backend/inference/decoding.py"], cwd=ROOT, capture_output=True, text=True
    )
    if source.returncode:
        raise SystemExit(f"--against {revision}: {source.stderr.strip()}")
    path = ROOT / "runs" / "extract_ab" / "decoding_then.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source.stdout)
    spec = importlib.util.spec_from_file_location("decoding_then", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["decoding_then"] = module
    spec.loader.exec_module(module)
    return module


def accepting(decode):
    """`decode` called with only the keyword arguments it knows (an earlier revision's knows fewer)."""
    known = inspect.signature(decode).parameters
    return lambda *a, **k: decode(*a, **{n: v for n, v in k.items() if n in known})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", required=True, help="a training run folder (e.g. runs/sroie/<run>)")
    parser.add_argument("--lever", choices=["merge", "decoding", "attention", "kept-prompt", "draft"], required=True)
    parser.add_argument("--against", help="--lever decoding: the git revision whose decoding.py is the baseline")
    parser.add_argument("--draft", type=int, help="--lever draft: the copy-drafting width to try in batches")
    parser.add_argument("--n", type=int, default=24, help="held-out receipts per repeat")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42, help="the SROIE split's seed")
    parser.add_argument("--fold", type=int, help=FOLD_HELP)
    parser.add_argument("--tag", help="added to the results file's name, to keep another run of the same lever")
    args = parser.parse_args()
    if args.lever == "decoding" and not args.against:
        parser.error("--lever decoding needs --against <git revision>")
    if args.lever == "draft" and (args.draft is None or args.draft < 0):
        parser.error("--lever draft needs --draft N (0 or more)")

    import backend.inference.decoding as decoding
    import backend.inference.extraction as extraction
    from backend.inference.bundle import AdapterBundle
    from backend.inference.constrained import flat_schema
    from backend.inference.pool import ModelPool
    from backend.inference.spec import ExtractionSpec
    from backend.models.hardware import cpu_kind

    docs = receipts(args.n, args.seed, args.fold)
    spec = ExtractionSpec.of(flat_schema(NAMES))
    items = [extraction.Document(d["text"], spec) for d in docs]
    target = AdapterBundle.of_folder(args.adapter)
    now, keeping = extraction.constrained_batch, extraction._scored_later
    kept = {"prompt read again": lambda *_: None}  # per arm, where it differs: whether decoding keeps prompts
    extra: dict[str, dict] = {}  # per arm, where it differs: keyword arguments of extract_many
    if args.lever == "kept-prompt":
        pool = ModelPool()
        arms = {"kept prompt": (pool, now), "prompt read again": (pool, now)}
    elif args.lever == "draft":
        if args.draft == extraction.DRAFT_BATCHED:
            raise SystemExit(f"--draft {args.draft}: that is the product's width already; try another")
        pool = ModelPool()
        arms = {f"draft {args.draft}": (pool, now), f"draft {extraction.DRAFT_BATCHED}": (pool, now)}
        extra = {f"draft {args.draft}": {"draft": args.draft}}
    elif args.lever == "merge":
        arms = {"merged": (ModelPool(), now), "never merged": (ModelPool(merge=False), now)}
    elif args.lever == "attention":
        arms = {"grouped": (ModelPool(), now), "stock SDPA": (ModelPool(), now)}
    else:
        pool = ModelPool(merge=False)
        arms = {
            "this tree": (pool, now),
            f"at {args.against}": (pool, accepting(old_decoding(args.against).constrained_batch)),
        }
    options = {"rank": False} if args.lever == "decoding" else {}
    for name, (pool, _) in arms.items():
        extraction.extract_many(pool, target, items[:1], **options)  # loads the model and the adapter
        base = next(iter(pool._bases.values()))
        if name == "stock SDPA":
            base.model.set_attn_implementation("sdpa")
        merging = name == "merged" or pool.merge
        if merging and base.merged is None:  # as the product would, at once, not after MERGE_AFTER_S
            base.model.merge_adapter()
            base.merged = base.streak[0]
    names = list(arms)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    passes = {n: 0.0 for n in names}  # seconds in decode passes (this tree's passes; not an earlier revision's)
    forward, arm = decoding._forward, [names[0]]

    def timed_forward(*a, **k):
        started = time.perf_counter()
        try:
            return forward(*a, **k)
        finally:
            passes[arm[0]] += time.perf_counter() - started

    decoding._forward = timed_forward
    answers: dict[str, list[dict]] = {n: [] for n in names}
    for repeat in range(args.repeats):
        for k, start in enumerate(range(0, len(items), args.batch)):
            for name in names if (repeat + k) % 2 == 0 else names[::-1]:
                pool, decode = arms[name]
                arm[0] = name
                extraction.constrained_batch = decode
                extraction._scored_later = kept.get(name, keeping)
                pool.prefixes.clear()
                started = time.perf_counter()
                batch = items[start : start + args.batch]
                out = extraction.extract_many(
                    pool, target, batch, batch_size=args.batch, **options, **extra.get(name, {})
                )
                seconds[name].append(time.perf_counter() - started)
                if repeat == 0:
                    answers[name] += [o["fields"] for o in out]
                print(
                    f"{name:>14}  repeat {repeat}  documents {start}–{start + len(out) - 1}: {seconds[name][-1]:.2f} s"
                )
    extraction.constrained_batch, extraction._scored_later = now, keeping
    decoding._forward = forward
    lever, plain = names
    total = len(items) * args.repeats
    rates = {n: total / sum(seconds[n]) for n in names}
    wins = sum(a < b for a, b in zip(seconds[lever], seconds[plain]))
    same = sum(a == b for a, b in zip(answers[lever], answers[plain]))
    cpu = str(cpu_kind())
    print(f"\ncpu: {cpu}")
    for n in names:
        print(f"{n:>14}: {rates[n]:.3f} documents/s")
    print(f"batches won by {lever}: {wins} of {len(seconds[lever])}; same answers: {same} of {len(answers[plain])}")
    if passes[lever] and passes[plain]:
        print(
            f"decode passes: {passes[lever]:.1f} s against {passes[plain]:.1f} s ({passes[lever] / passes[plain]:.3f})"
        )
    print(f"ratio: {rates[lever] / rates[plain]:.3f}")
    kind = cpu.split()[1].lower()
    stem = "-".join(filter(None, ["extract_ab", args.lever, args.tag, kind]))
    out_file = ROOT / "benchmarks" / "results" / f"{stem}.json"
    result = {
        "args": vars(args),
        "cpu": cpu,
        "seconds": seconds,
        "docs_per_s": rates,
        "wins": wins,
        "same": same,
        "decode_pass_s": passes,
    }
    out_file.write_text(json.dumps({**result, "ratio": rates[lever] / rates[plain]}, indent=1))
    print(f"written: {out_file.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
