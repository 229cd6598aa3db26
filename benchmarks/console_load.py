"""Console page loads on a full store: 100 jobs (20 progress events each) and 1,000 documents held for
review, each console page timed on the running service.

    .venv/bin/python benchmarks/console_load.py [--jobs 100 --documents 1000 --repeat 5]

The script fills a fresh data folder through the services (jobs claimed, given progress and finished
as a worker does; documents through the service's document graph with a scripted model that answers
from the text, so every field has its span), starts `tunebridge serve --workers 0` on it, logs in
with a key, and times each page: the server's answer (median of `--repeat` GETs over loopback) and,
where Debian's chromium is installed, a browser load (navigation to the load event, scripts and styles
included; median of `--repeat`). Goal: every page under 1 s. Results go to
benchmarks/results/console_load.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
RECEIPTS = ROOT / "examples" / "data" / "receipts.jsonl"
GOAL_S = 1.0


def fill(data_dir: Path, *, jobs: int, documents: int) -> dict[str, str]:
    """The store: a dataset, `jobs` finished train jobs with progress, `documents` held documents."""
    from backend.services import datasets
    from backend.services import jobs as service
    from backend.settings import Settings
    from backend.storage.engine import make_engine
    from backend.storage.migrations import migrate
    from console_helpers import hold_documents

    settings = Settings(data_dir=data_dir)
    engine = make_engine(settings.db_url)
    migrate(engine)
    datasets.append_examples(
        engine=engine, data_dir=data_dir, name="receipts", body=RECEIPTS.read_bytes(), source=RECEIPTS.name
    )
    models = service.ServerModels.of(settings.default_base_model, "")
    job_id = ""
    for n in range(jobs):
        job_id = service.create_job(
            engine=engine, kind="train", dataset="receipts", params={"max_steps": 20}, models=models
        )["id"]
        claimed = service.claim_next(engine=engine, owner="bench", lease_s=60)
        assert claimed is not None and claimed["id"] == job_id
        for step in range(1, 21):
            progress = {
                "step": step,
                "total_steps": 20,
                "loss": 2.0 / step,
                "tokens_per_s": 400.0 + n,
                "eta_s": 20 - step,
            }
            service.heartbeat(
                engine=engine, job_id=job_id, owner="bench", lease_s=60, progress=progress, new_progress=True
            )
        service.finish(engine=engine, job_id=job_id, owner="bench", status="succeeded", result={"steps": 20})
    engine.dispose()
    texts = [json.loads(line) for line in RECEIPTS.read_text().splitlines()]
    held = {}
    for n in range(documents):
        record = texts[n % len(texts)]
        text = f"RECEIPT {n:05d}\n{record['text']}"
        held[f"receipt_{n:05d}.txt"] = (
            text,
            {k: record["fields"].get(k) for k in ("company", "date", "address", "total")},
        )
    doc_ids = hold_documents(data_dir, held)
    return {"job": job_id, "document": doc_ids[-1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import torch

    from console_helpers import CHROMIUM_FLAGS, chromium_path
    from servers import running_service

    data_dir = Path(tempfile.mkdtemp(prefix="console-load-"))
    started = time.perf_counter()
    ids = fill(data_dir, jobs=args.jobs, documents=args.documents)
    fill_s = time.perf_counter() - started
    pages = {
        "jobs": "/console/jobs",
        "job": f"/console/jobs/{ids['job']}",
        "adapters": "/console/adapters",
        "datasets": "/console/datasets",
        "dataset": "/console/datasets/receipts",
        "review queue": "/console/review",
        "document": f"/console/review/{ids['document']}",
    }
    rows: dict[str, dict[str, float | None]] = {}
    with running_service(data_dir, env={}, workers=0) as service:
        url = service["url"]
        with httpx.Client(base_url=url, headers={"Origin": url}, timeout=60) as client:
            assert client.post("/console/login", data={"key": service["key"]}).status_code == 303
            for name, path in pages.items():
                times = []
                for _ in range(args.repeat + 1):  # the first answer warms up (templates compile, caches fill)
                    begin = time.perf_counter()
                    answer = client.get(path)
                    times.append(time.perf_counter() - begin)
                    assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
                rows[name] = {"server_s": statistics.median(times[1:]), "bytes": len(answer.content), "browser_s": None}
        executable = chromium_path()
        if executable is not None:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
                page = browser.new_page()
                page.goto(f"{url}/console/login")
                page.fill("input[name=key]", service["key"])
                page.click("button:has-text('Log in')")
                page.wait_for_url(f"{url}/console")
                for name, path in pages.items():
                    times = []
                    for _ in range(args.repeat + 1):
                        begin = time.perf_counter()
                        page.goto(url + path, wait_until="load")
                        times.append(time.perf_counter() - begin)
                    rows[name]["browser_s"] = statistics.median(times[1:])
                browser.close()

    shutil.rmtree(data_dir, ignore_errors=True)
    cpu = torch.backends.cpu.get_cpu_capability()
    print(
        f"store: {args.jobs} jobs (20 progress events each), {args.documents} held documents; filled in {fill_s:.0f} s"
    )
    print(f"{'page':<14}{'server':>10}{'browser':>10}{'KB':>8}")
    for name, row in rows.items():
        browser_s = "-" if row["browser_s"] is None else f"{row['browser_s'] * 1000:.0f} ms"
        print(f"{name:<14}{row['server_s'] * 1000:>7.0f} ms{browser_s:>10}{row['bytes'] / 1024:>8.0f}")
    slowest = max(max(r["server_s"] or 0, r["browser_s"] or 0) for r in rows.values())
    print(
        f"slowest: {slowest * 1000:.0f} ms (goal < {GOAL_S * 1000:.0f} ms: {'met' if slowest < GOAL_S else 'missed'})"
    )
    print(f"cpu: {cpu}")
    out = ROOT / "benchmarks" / "results" / "console_load.json"
    out.write_text(
        json.dumps(
            {"args": vars(args), "pages": pages, "results": rows, "slowest_s": slowest, "goal_s": GOAL_S, "cpu": cpu},
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out.relative_to(ROOT)}")
    return 0 if slowest < GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
