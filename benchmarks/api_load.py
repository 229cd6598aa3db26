"""API load: concurrent chat-completion and extract requests against the running service,
with dynamic batching on and off, side by side on this machine.

    .venv/bin/python benchmarks/api_load.py [--requests 32 --concurrency 8 --batch-max 8 --max-tokens 32]

For each setting the script starts `tunebridge serve --workers 0` on a loopback port (a fresh data
folder, the bundled base model unless --model), sends one warm-up request (the model loads), then
`--requests` requests from `--concurrency` client threads: half `/v1/chat/completions` (questions
about receipts), half `/v1/extract` (bundled receipts, schema "receipt"). It reports requests/s,
generated tokens/s and p50/p95 latency, per route and overall, and `ratio: <batched requests/s /
unbatched requests/s>`. Greedy decoding, so both runs generate the same answers; the script checks
that they agree. Results also go to benchmarks/results/api_load.json.

    .venv/bin/python benchmarks/api_load.py --mixed [--small 50 --concurrency 10]

The mixed run asks whether one oversized request can stall the others: in one server (batching on),
`--small` short chat completions (`max_tokens` 8) from `--concurrency` clients, first alone, then
again while one extract with a 1,000-property schema is submitted at the start. It reports p50/p95
of the small ones both ways, what the oversized one got and how fast, and `p95 change:` (the goal is
under 20%). Results go to benchmarks/results/api_load_mixed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
RECEIPTS = ROOT / "examples" / "data" / "receipts.jsonl"


def _workload(n: int, max_tokens: int) -> list[tuple[str, dict]]:
    texts = [json.loads(line)["text"] for line in RECEIPTS.read_text().splitlines()]
    work = []
    for i in range(n):
        text = texts[i % len(texts)]
        if i % 2 == 0:
            work.append(
                (
                    "chat",
                    {
                        "max_tokens": max_tokens,
                        "messages": [{"role": "user", "content": f"Which shop issued this receipt?\n\n{text[:600]}"}],
                    },
                )
            )
        else:
            work.append(("extract", {"text": text[:1200], "schema": "receipt", "max_tokens": max_tokens * 2}))
    return work


def _run_setting(args, batch_max: int) -> dict:
    from servers import running_service

    data_dir = Path(tempfile.mkdtemp(prefix=f"api-load-b{batch_max}-"))
    env = {
        "TUNEBRIDGE_BATCH_MAX": str(batch_max),
        "TUNEBRIDGE_BATCH_WINDOW_MS": str(args.window_ms),
        "TUNEBRIDGE_DEFAULT_BASE_MODEL": args.model,
        "TUNEBRIDGE_MAX_BODY_MB": "4",
    }
    with running_service(data_dir, env=env, workers=0) as service:
        client = httpx.Client(headers=service["auth"], timeout=600)
        paths = {"chat": "/v1/chat/completions", "extract": "/v1/extract"}

        def send(item):
            route, body = item
            body = {**body, "model": args.model}
            started = time.perf_counter()
            response = client.post(service["url"] + paths[route], json=body)
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            out = response.json()
            text = out["choices"][0]["message"]["content"] if route == "chat" else out["raw"]
            tokens = out["usage"]["completion_tokens"]
            return {"route": route, "latency_s": elapsed, "tokens": tokens, "text": text}

        send(("chat", {"max_tokens": 4, "messages": [{"role": "user", "content": "Hello"}]}))  # loads the model
        work = _workload(args.requests, args.max_tokens)
        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(send, work))
        wall = time.perf_counter() - started
    return {"batch_max": batch_max, "wall_s": wall, "results": results}


def _summary(run: dict) -> dict:
    def stats(rows):
        latencies = sorted(r["latency_s"] for r in rows)
        return {
            "requests": len(rows),
            "p50_s": statistics.median(latencies),
            "p95_s": latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))],
            "tokens": sum(r["tokens"] for r in rows),
        }

    rows = run["results"]
    out = {
        "batch_max": run["batch_max"],
        "wall_s": run["wall_s"],
        "requests_per_s": len(rows) / run["wall_s"],
        "tokens_per_s": sum(r["tokens"] for r in rows) / run["wall_s"],
        **stats(rows),
    }
    for route in ("chat", "extract"):
        out[route] = stats([r for r in rows if r["route"] == route])
    return out


def _mixed(args) -> None:
    from servers import running_service

    data_dir = Path(tempfile.mkdtemp(prefix="api-load-mixed-"))
    env = {"TUNEBRIDGE_DEFAULT_BASE_MODEL": args.model, "TUNEBRIDGE_MAX_BODY_MB": "4"}
    texts = [json.loads(line)["text"] for line in RECEIPTS.read_text().splitlines()]
    huge = {"type": "object", "properties": {f"field_{i}": {"type": "string"} for i in range(1000)}}
    with running_service(data_dir, env=env, workers=0) as service:
        client = httpx.Client(headers=service["auth"], timeout=900)

        def small(i: int) -> float:
            started = time.perf_counter()
            client.post(
                service["url"] + "/v1/chat/completions",
                json={
                    "model": args.model,
                    "max_tokens": 8,
                    "messages": [
                        {"role": "user", "content": f"Which shop issued this receipt?\n\n{texts[i % len(texts)][:300]}"}
                    ],
                },
            ).raise_for_status()
            return time.perf_counter() - started

        def oversized() -> dict:
            started = time.perf_counter()
            response = client.post(
                service["url"] + "/v1/extract", json={"model": args.model, "schema": huge, "text": texts[0]}
            )
            return {
                "status": response.status_code,
                "latency_s": round(time.perf_counter() - started, 3),
                "error": response.json().get("error"),
            }

        small(0)  # loads the model
        runs = {}
        for name in ("alone", "with oversized"):
            with ThreadPoolExecutor(args.concurrency + 1) as pool:
                big = pool.submit(oversized) if name != "alone" else None
                latencies = sorted(pool.map(small, range(args.small)))
            runs[name] = {
                "p50_s": round(statistics.median(latencies), 3),
                "p95_s": round(latencies[int(round(0.95 * (len(latencies) - 1)))], 3),
                **({"oversized": big.result()} if big else {}),
            }
    import torch

    change = runs["with oversized"]["p95_s"] / runs["alone"]["p95_s"] - 1
    print(
        f"cpu: {torch.backends.cpu.get_cpu_capability()}; {args.small} small chats, {args.concurrency} clients, "
        f"model {args.model}"
    )
    for name, run in runs.items():
        print(f"{name:<16} p50 {run['p50_s']:.2f} s  p95 {run['p95_s']:.2f} s")
    print(f"oversized extract: {runs['with oversized']['oversized']}")
    print(f"p95 change: {100 * change:+.1f}%")
    out = ROOT / "benchmarks" / "results" / "api_load_mixed.json"
    out.write_text(
        json.dumps(
            {"args": vars(args), "runs": runs, "p95_change": change, "cpu": torch.backends.cpu.get_cpu_capability()},
            indent=2,
        )
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=32, help="requests per setting (half chat, half extract)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads sending at once")
    parser.add_argument("--batch-max", type=int, default=8, help="largest batch when batching is on")
    parser.add_argument("--window-ms", type=float, default=5.0, help="batcher wait for more requests")
    parser.add_argument("--max-tokens", type=int, default=32, help="chat max_tokens (extract gets twice this)")
    parser.add_argument("--model", default="smollm2-135m", help="base model the service answers with")
    parser.add_argument("--mixed", action="store_true", help="small chats alone, then beside one oversized extract")
    parser.add_argument("--small", type=int, default=50, help="small chat requests in the mixed run")
    args = parser.parse_args()
    if args.mixed:
        args.concurrency = args.concurrency if args.concurrency != 8 else 10
        return _mixed(args)

    runs = [_run_setting(args, 1), _run_setting(args, args.batch_max)]
    plain, batched = (_summary(r) for r in runs)
    same = sum(a["text"] == b["text"] for a, b in zip(runs[0]["results"], runs[1]["results"]))
    print(
        f"{args.requests} requests, {args.concurrency} concurrent clients, model {args.model}, "
        f"{os.cpu_count()} CPU cores"
    )
    print(f"{'setting':<22}{'req/s':>8}{'tok/s':>8}{'p50 s':>8}{'p95 s':>8}{'chat p50':>10}{'extract p50':>13}")
    for name, s in (("no batching", plain), (f"batching (max {args.batch_max})", batched)):
        print(
            f"{name:<22}{s['requests_per_s']:>8.2f}{s['tokens_per_s']:>8.1f}{s['p50_s']:>8.2f}{s['p95_s']:>8.2f}"
            f"{s['chat']['p50_s']:>10.2f}{s['extract']['p50_s']:>13.2f}"
        )
    print(f"identical answers with and without batching: {same}/{args.requests}")
    ratio = batched["requests_per_s"] / plain["requests_per_s"]
    print(f"ratio: {ratio:.2f}")
    out = ROOT / "benchmarks" / "results" / "api_load.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"args": vars(args), "no_batching": plain, "batching": batched, "identical_answers": same, "ratio": ratio},
            indent=2,
        )
    )
    print(f"written: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
