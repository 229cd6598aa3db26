"""Extraction speed and validity: plain transformers vs tunebridge's engine, side by side, one run.

    .venv/bin/python benchmarks/extract_latency.py                       # the bundled base model
    .venv/bin/python benchmarks/extract_latency.py --adapter runs/sroie/<run>   # a fine-tuned adapter

Documents: `--n` receipts (default 50) from sroie_train.jsonl (kept outside the repository: benchmarks/README.md; SROIE, CC BY 4.0), the
held-out part of the split `benchmarks/sroie_eval.py` makes (seed 42), so a SROIE adapter has never
seen them (`--fold K`: development fold K's receipts instead, for an adapter `label_efficiency.py`
trained on the other folds). Every contender gets the same prompt (backend/prompts.py) and the receipt schema
(company, date, address, total: strings or null).

(a) plain: `AutoModelForCausalLM` as loaded by default (fp32), one document at a time, greedy
    `generate` (max 256 new tokens), `json.loads` + schema check; on failure up to `--retries` more
    attempts, sampled (temperature 0.7), as a script without constrained decoding would do.
(b) tunebridge: `extraction.extract_many` — schema-constrained decoding (never invalid, so never
    retried), forced stretches jumped over, copy drafting (guesses from the document verified in the
    same pass, `--draft`), the shared prompt prefix read from the KV cache, documents decoded in
    batches of `--batch`, bf16 weights where the CPU has bf16 units.
(b1) tunebridge, one document at a time (the latency of a lone request).
(c) llama.cpp (llama-cpp-python, when installed) on the bundled GGUF itself: the reference for raw CPU
    decoding speed; greedy, max 256 tokens, no retries.

Reported per contender: documents/s, p50/p95 latency per document (a batched document's latency is
its batch's wall time), generated tokens/s, JSON/schema validity and micro-F1 against the gold
fields. The last lines are `ratio: <(b) documents/s over (a)>` and `valid: <(b) validity>`.
Results: benchmarks/results/extract_latency[-<adapter>].json. Run it alone: other CPU work beside it
skews every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
SROIE = ROOT.parent / "shared" / "data" / "sroie_train.jsonl"
NAMES = ["company", "date", "address", "total"]


def receipts(n: int, seed: int, fold: int | None = None) -> list[dict]:
    """The first `n` held-out receipts of the split of `seed`, or with `fold` the first `n` of that
    development fold (`sroie_split.fold_rows`: what an adapter `label_efficiency.py` trained on the
    other folds has never seen)."""
    if fold is not None:
        from sroie_split import fold_rows

        try:
            rows = fold_rows(fold)[1]
        except ValueError as err:
            raise SystemExit(f"--fold: {err}") from None
    else:
        from sroie_eval import split

        _, held = split(SROIE, ROOT / "runs" / "sroie", val=60, seed=seed)
        rows = [json.loads(line) for line in held.read_text().splitlines() if line.strip()]
    if n > len(rows):
        raise SystemExit(f"--n {n}: only {len(rows)} held-out receipts")
    return rows[:n]


FOLD_HELP = "read development fold K's receipts instead (for an adapter trained on the other folds)"


def check(raw: str, schema: dict) -> dict | None:
    """The parsed answer when it is JSON matching the schema, else None."""
    import jsonschema

    try:
        value = json.loads(raw)
        jsonschema.validate(value, schema)
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return None
    return value


def summary(
    name: str, latencies: list[float], wall: float, tokens: int, valid: list[bool], f1: float, extra: dict | None = None
) -> dict:
    ordered = sorted(latencies)
    return {
        "name": name,
        "documents": len(latencies),
        "wall_s": round(wall, 2),
        "docs_per_s": len(latencies) / wall,
        "p50_s": statistics.median(ordered),
        "p95_s": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "tokens_per_s": tokens / wall,
        "generated_tokens": tokens,
        "valid": sum(valid) / len(valid),
        "micro_f1": f1,
        **(extra or {}),
    }


def micro_f1(predictions: list[dict | None], docs: list[dict]) -> float:
    from backend.scoring.metrics import score_document, summarize

    scored = [
        score_document(i, json.dumps(p) if p is not None else "", d["fields"], NAMES, d["text"])
        for i, (p, d) in enumerate(zip(predictions, docs))
    ]
    return summarize(scored, NAMES)["micro"]["f1"]


def run_plain(docs: list[dict], adapter: str | None, retries: int, schema: dict, max_new_tokens: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from backend.models.loading import load_tokenizer, resolve_model
    from backend.prompts import ExtractionSchema, extraction_messages

    path = resolve_model(None)
    tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(Path(adapter) / "adapter"))
    model.eval()
    fields = ExtractionSchema.from_names(NAMES)

    def attempt(text: str, sampled: bool) -> tuple[str, int]:
        ids = tokenizer.apply_chat_template(
            extraction_messages(text, fields), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        sampling = {"do_sample": True, "temperature": 0.7, "top_p": 0.95} if sampled else {"do_sample": False}
        with torch.no_grad():
            out = model.generate(
                **ids,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                top_k=None,
                **({"temperature": None, "top_p": None} | sampling),
            )
        new = out[0, ids["input_ids"].shape[1] :]
        return tokenizer.decode(new, skip_special_tokens=True).strip(), len(new)

    attempt(docs[0]["text"], False)  # warm-up
    torch.manual_seed(0)
    latencies, valid, predictions, tokens, attempts = [], [], [], 0, 0
    started = time.perf_counter()
    for doc in progress(docs, "(a) plain"):
        t = time.perf_counter()
        for n in range(retries + 1):
            raw, count = attempt(doc["text"], sampled=n > 0)
            tokens, attempts = tokens + count, attempts + 1
            parsed = check(raw, schema)
            if parsed is not None:
                break
        latencies.append(time.perf_counter() - t)
        valid.append(parsed is not None)
        predictions.append(parsed)
    wall = time.perf_counter() - started
    return summary(
        "(a) plain generate + json.loads, retry",
        latencies,
        wall,
        tokens,
        valid,
        micro_f1(predictions, docs),
        {"attempts": attempts, "dtype": str(model.dtype).removeprefix("torch.")},
    )


def run_engine(
    docs: list[dict],
    adapter: str | None,
    schema: dict,
    batch: int,
    name: str,
    draft: int,
    dtype: str = "auto",
    merge: bool = True,
) -> dict:
    from backend.inference.bundle import AdapterBundle
    from backend.inference.extraction import Document, extract_many
    from backend.inference.pool import ModelPool
    from backend.inference.spec import ExtractionSpec

    pool = ModelPool(dtype=dtype, merge=merge)
    target = AdapterBundle.of_folder(adapter) if adapter else AdapterBundle("smollm2-135m")
    spec = ExtractionSpec.of(schema)
    items = [Document(d["text"], spec) for d in docs]
    extract_many(pool, target, items[:1])  # warm-up: loads the model, compiles the grammar
    pool.prefixes.clear()
    latencies, outputs, passes = [], [], 0
    started = time.perf_counter()
    bar = progress(None, name, total=len(items))
    for start in range(0, len(items), batch):
        t = time.perf_counter()
        out = extract_many(pool, target, items[start : start + batch], batch_size=batch, draft=draft)
        latencies += [time.perf_counter() - t] * len(out)
        outputs += out
        passes += max(o["usage"]["forward_passes"] for o in out)
        bar.update(len(out))
    bar.close()
    wall = time.perf_counter() - started
    predictions = [check(o["raw"], schema) for o in outputs]
    tokens = sum(o["usage"]["completion_tokens"] for o in outputs)
    return summary(
        name,
        latencies,
        wall,
        tokens,
        [p is not None for p in predictions],
        micro_f1(predictions, docs),
        {
            "dtype": pool.weights,
            "merge": pool.merge,
            "batch": batch,
            "forward_passes": passes,
            "draft": draft,
            "drafted_tokens": sum(o["usage"]["drafted_tokens"] for o in outputs),
            "accepted_draft_tokens": sum(o["usage"]["accepted_draft_tokens"] for o in outputs),
            "forced_tokens": sum(o["usage"]["forced_tokens"] for o in outputs),
            "cached_prompt_tokens": sum(o["usage"]["cached_prompt_tokens"] for o in outputs),
            "prompt_tokens": sum(o["usage"]["prompt_tokens"] for o in outputs),
        },
    )


def run_llama_cpp(docs: list[dict], schema: dict, threads: int, max_new_tokens: int) -> dict | None:
    try:
        from llama_cpp import Llama
    except ImportError:
        print("(c) llama.cpp: llama-cpp-python is not installed; skipped")
        return None
    from backend.models.bundled import BUNDLED, DEFAULT_MODEL
    from backend.prompts import ExtractionSchema, extraction_messages

    llm = Llama(
        model_path=str(BUNDLED[DEFAULT_MODEL].locate(BUNDLED[DEFAULT_MODEL])),
        n_ctx=2048,
        n_threads=threads,
        verbose=False,
    )
    fields = ExtractionSchema.from_names(NAMES)
    llm.create_chat_completion(extraction_messages(docs[0]["text"], fields), max_tokens=8, temperature=0)
    latencies, valid, predictions, tokens = [], [], [], 0
    started = time.perf_counter()
    for doc in progress(docs, "(c) llama.cpp"):
        t = time.perf_counter()
        out = llm.create_chat_completion(
            extraction_messages(doc["text"], fields), max_tokens=max_new_tokens, temperature=0
        )
        latencies.append(time.perf_counter() - t)
        tokens += out["usage"]["completion_tokens"]
        parsed = check(out["choices"][0]["message"]["content"].strip(), schema)
        valid.append(parsed is not None)
        predictions.append(parsed)
    wall = time.perf_counter() - started
    return summary(
        "(c) llama.cpp, same GGUF (Q4_1), greedy",
        latencies,
        wall,
        tokens,
        valid,
        micro_f1(predictions, docs),
        {"note": "base model only: no LoRA adapter, no constraint"},
    )


def progress(items, desc: str, total: int | None = None):
    from tqdm import tqdm

    return tqdm(items, desc=desc, total=total, unit="doc", leave=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50, help="receipts (held-out part of the SROIE split)")
    parser.add_argument("--adapter", help="a training run folder (e.g. runs/sroie/<run>); default: base model")
    parser.add_argument("--batch", type=int, default=8, help="documents per batch in (b)")
    parser.add_argument(
        "--draft",
        type=int,
        default=None,
        help="copied guesses per pass in (b) (default: the engine's, extraction.DRAFT_ALONE / DRAFT_BATCHED; 0 = off)",
    )
    parser.add_argument("--retries", type=int, default=2, help="extra attempts of (a) after invalid JSON")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="answer cap of (a) and (c)")
    parser.add_argument("--threads", type=int, default=0, help="torch / llama.cpp threads (0: all cores)")
    parser.add_argument("--seed", type=int, default=42, help="the SROIE split's seed")
    parser.add_argument("--fold", type=int, help=FOLD_HELP)
    parser.add_argument("--out", type=Path, help="results file (default: benchmarks/results/extract_latency*.json)")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "int8"],
        help="weights of (b) and (b1) (auto: what the service picks on this CPU)",
    )
    parser.add_argument(
        "--also-dtype",
        nargs="*",
        default=[],
        choices=["float32", "bfloat16", "int8"],
        help="more (b) runs with these weights, for their speed and micro-F1 side by side",
    )
    parser.add_argument(
        "--also-unmerged",
        action="store_true",
        help="one more (b) run that never merges the adapter into fp32 weights (the pool merges it by default)",
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["plain", "single", "llama"])
    args = parser.parse_args()

    import os

    import torch

    from backend.inference.constrained import flat_schema

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    docs = receipts(args.n, args.seed, args.fold)
    schema = flat_schema(NAMES)
    results = []
    if "plain" not in args.skip:
        results.append(run_plain(docs, args.adapter, args.retries, schema, args.max_new_tokens))
    batched = f"(b) tunebridge, batches of {args.batch}"
    results.append(run_engine(docs, args.adapter, schema, args.batch, batched, args.draft, args.dtype))
    if "single" not in args.skip:
        results.append(
            run_engine(docs, args.adapter, schema, 1, "(b1) tunebridge, one at a time", args.draft, args.dtype)
        )
    for dtype in args.also_dtype:
        results.append(run_engine(docs, args.adapter, schema, args.batch, f"{batched}, {dtype}", args.draft, dtype))
    if args.also_unmerged:
        name = f"{batched}, never merged"
        results.append(run_engine(docs, args.adapter, schema, args.batch, name, args.draft, args.dtype, merge=False))
    if "llama" not in args.skip:
        llama = run_llama_cpp(docs, schema, threads, args.max_new_tokens)
        if llama:
            results.append(llama)

    print(
        f"\n{len(docs)} SROIE receipts, model: {args.adapter or 'smollm2-135m (bundled base)'}, {threads} threads, "
        f"copy drafting {'default' if args.draft is None else args.draft}"
    )
    from backend.models.hardware import cpu_kind

    print(f"cpu: {cpu_kind()}")
    print(
        f"{'contender':44} {'weights':>8} {'docs/s':>7} {'p50 s':>7} {'p95 s':>7} {'tok/s':>7} {'valid':>6} {'F1':>6}"
    )
    for r in results:
        print(
            f"{r['name']:44} {r.get('dtype', ''):>8} {r['docs_per_s']:7.3f} {r['p50_s']:7.2f} {r['p95_s']:7.2f} {r['tokens_per_s']:7.1f} "
            f"{r['valid']:6.2f} {r['micro_f1']:6.3f}"
        )
    engine = results[0 if "plain" in args.skip else 1]
    comparisons = {}
    if "plain" not in args.skip:
        plain = results[0]
        comparisons["ratio"] = engine["docs_per_s"] / plain["docs_per_s"]
        if "single" not in args.skip:
            comparisons["ratio_one_at_a_time"] = results[2]["docs_per_s"] / plain["docs_per_s"]
    llama = next((r for r in results if r["name"].startswith("(c)")), None)
    if llama:
        comparisons["llama_cpp_over_tunebridge"] = llama["docs_per_s"] / engine["docs_per_s"]
        print(f"llama.cpp over tunebridge (documents/s): {comparisons['llama_cpp_over_tunebridge']:.2f}")
    if "ratio_one_at_a_time" in comparisons:
        print(f"ratio one at a time: {comparisons['ratio_one_at_a_time']:.2f}")
    if "ratio" in comparisons:
        print(f"ratio: {comparisons['ratio']:.2f}")
    print(f"valid: {engine['valid']:.2f}")
    suffix = f"-{Path(args.adapter).name}" if args.adapter else ""
    out = args.out or ROOT / "benchmarks" / "results" / f"extract_latency{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "cpu": str(cpu_kind()),
                "threads": threads,
                "results": results,
                **comparisons,
            },
            indent=2,
        )
    )
    print(f"written: {out}")


if __name__ == "__main__":
    main()
