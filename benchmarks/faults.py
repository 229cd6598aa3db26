"""Faults, as an operator meets them: kill -9 and SIGTERM at chosen moments against the real service,
then a restart, and an account per fault of what was tried, what survived, what was lost or doubled.

    .venv/bin/python benchmarks/faults.py [--writes 5 --worker-kills 3 --sigterms 3]

Every run starts `tunebridge serve` on a loopback port over one fresh data folder, on a tiny model
built from a config (the faults concern data and jobs, not the model's quality):
- write window: the server is held inside a dataset write (crash points mid-write, before commit,
  after commit, in turn) while a signed webhook delivery of 500 examples is being stored, killed with
  kill -9, restarted, and the delivery retried with the same delivery id;
- worker kill: kill -9 of the worker `serve` supervises, in the middle of a training job;
- serve SIGTERM: SIGTERM to `serve` in the middle of a training job, then a new `serve`.
Survived means: the dataset's file, count and API agree, every line parses, each acknowledged
delivery is stored exactly once; a job ends `succeeded` with every step trained once. Goal: 0 lost,
0 doubled, 0 manual repairs. Results also go to benchmarks/results/faults.json.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
POINTS = ["dataset-mid-write", "dataset-before-commit", "dataset-after-commit"]
SECRET = "faults-secret"


def _delivery(n: int) -> bytes:
    examples = [{"text": f"delivery {n} receipt {i} total {i}.00", "fields": {"total": f"{i}.00"}} for i in range(500)]
    return json.dumps({"dataset": "faults", "examples": examples}).encode()


def _post(url: str, body: bytes, delivery: str) -> httpx.Response:
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return httpx.post(
        f"{url}/v1/webhooks/labelled-data",
        content=body,
        timeout=120,
        headers={
            "Content-Type": "application/json",
            "X-Tunebridge-Delivery": delivery,
            "X-Tunebridge-Signature": signature,
        },
    )


def _serve(data_dir: Path, env: dict[str, str], log_name: str, **extra: str) -> tuple[subprocess.Popen, str]:
    from servers import free_port, healthy, wait_for

    port = free_port()
    log = open(data_dir / log_name, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env, **extra},
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: healthy(url) or proc.poll() is not None, timeout=120, what="server start")
    return proc, url


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    os.killpg(proc.pid, sig) if sig == signal.SIGKILL else proc.send_signal(sig)
    proc.wait(timeout=180)


def _dataset_state(data_dir: Path, url: str, auth: dict) -> dict:
    lines = (data_dir / "datasets" / "faults.jsonl").read_bytes().splitlines()
    parsed = sum(1 for line in lines if _parses(line))
    api = httpx.get(f"{url}/v1/datasets/faults", headers=auth).json().get("examples")
    return {"lines": len(lines), "parsed": parsed, "distinct": len(set(lines)), "api": api}


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def write_window(data_dir: Path, env: dict, auth: dict, tries: int) -> dict:
    from servers import wait_for

    acknowledged = 0
    outcome = {
        "fault": "kill -9 inside a dataset write",
        "tried": tries,
        "survived": 0,
        "lost": 0,
        "doubled": 0,
        "manual_repairs": 0,
        "retried_as": [],
    }
    for n in range(tries):
        point = POINTS[n % len(POINTS)]
        crash_dir = data_dir / f"crash-{n}"
        proc, url = _serve(
            data_dir,
            env,
            f"serve-write-{n}.log",
            TUNEBRIDGE_CRASH_POINT=point,
            TUNEBRIDGE_CRASH_DIR=str(crash_dir),
            TUNEBRIDGE_WORKERS="0",
        )
        body = _delivery(n)
        sender = threading.Thread(
            target=lambda url=url, body=body, n=n: _quiet(lambda: _post(url, body, f"d-{n}")), daemon=True
        )
        sender.start()
        wait_for(lambda: (crash_dir / f"{point}.reached").exists(), timeout=60, what=point)  # noqa: B023 - polled here
        _stop(proc, signal.SIGKILL)
        sender.join(30)
        proc, url = _serve(data_dir, env, f"serve-after-{n}.log", TUNEBRIDGE_WORKERS="0")
        retried = _post(url, body, f"d-{n}")  # the client's retry, same delivery id
        outcome["retried_as"].append(f"{point}: {retried.status_code}")
        acknowledged += 500
        state = _dataset_state(data_dir, url, auth)
        _stop(proc)
        ok = state["lines"] == state["parsed"] == state["distinct"] == state["api"] == acknowledged
        outcome["survived"] += ok
        outcome["lost"] += max(0, acknowledged - state["distinct"])
        outcome["doubled"] += state["lines"] - state["distinct"]
    return outcome


def _quiet(call) -> None:
    try:
        call()
    except httpx.HTTPError:
        pass


def _train(url: str, auth: dict, steps: int) -> str:
    receipts = (ROOT / "examples" / "data" / "receipts.jsonl").read_bytes()
    httpx.post(f"{url}/v1/datasets/jobs-data/examples", content=receipts, headers=auth)
    params = {
        "max_steps": steps,
        "batch_size": 1,
        "report_to": "none",
        "precision": "fp32",
        "save_every": 5,
        "val_fraction": 0.0,
    }
    return httpx.post(
        f"{url}/v1/jobs", json={"kind": "train", "dataset": "jobs-data", "hyperparameters": params}, headers=auth
    ).json()["id"]


def _steps_once(data_dir: Path, job_id: str, steps: int) -> bool:
    logged = [
        json.loads(line)["step"]
        for line in (data_dir / "jobs" / job_id / "metrics.jsonl").read_text().splitlines()
        if '"loss"' in line
    ]
    return logged == list(range(1, steps + 1))


def job_faults(data_dir: Path, env: dict, auth: dict, tries: int, *, kind: str) -> dict:
    from servers import children, wait_for

    outcome = {
        "fault": "kill -9 of the worker mid-job" if kind == "worker" else "SIGTERM of serve mid-job",
        "tried": tries,
        "survived": 0,
        "lost": 0,
        "doubled": 0,
        "manual_repairs": 0,
    }
    steps = 60
    for n in range(tries):
        proc, url = _serve(data_dir, env, f"serve-{kind}-{n}.log", TUNEBRIDGE_LEASE_S="3")
        job_id = _train(url, auth, steps)
        run_dir = data_dir / "jobs" / job_id
        wait_for(lambda: list((run_dir / "checkpoints").glob("step-*")), timeout=300, what="a checkpoint")  # noqa: B023
        if kind == "worker":
            worker = [p for p in children(proc.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
            os.kill(worker[0], signal.SIGKILL)
        else:
            _stop(proc)
            proc, url = _serve(data_dir, env, f"serve-{kind}-{n}-again.log", TUNEBRIDGE_LEASE_S="3")
        job = wait_for(
            lambda: (
                (j := httpx.get(f"{url}/v1/jobs/{job_id}", headers=auth).json())["status"]  # noqa: B023
                in ("succeeded", "failed", "cancelled")
                and j
            ),
            timeout=600,
            what="the job's end",
        )
        _stop(proc)
        outcome["survived"] += job["status"] == "succeeded" and _steps_once(data_dir, job_id, steps)
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=5, help="kill -9 inside a dataset write, this many times")
    parser.add_argument("--worker-kills", type=int, default=3, help="kill -9 of the worker mid-job, this many times")
    parser.add_argument("--sigterms", type=int, default=3, help="SIGTERM of serve mid-job, this many times")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "faults.json"))
    args = parser.parse_args()

    import torch

    from backend.models.tiny import build_tiny_model
    from servers import cli

    work = Path(tempfile.mkdtemp(prefix="tunebridge-faults-"))
    texts = [
        json.loads(line)["text"]
        for line in (ROOT / "examples" / "data" / "receipts.jsonl").read_text().splitlines()[:16]
    ]
    model = build_tiny_model(work / "model", texts=texts)
    data_dir = work / "data"
    data_dir.mkdir()
    env = {
        "TUNEBRIDGE_DEFAULT_BASE_MODEL": str(model),
        "TUNEBRIDGE_WEBHOOK_SECRET": SECRET,
        "TUNEBRIDGE_TRAIN_THRESHOLD": "1000000",
        "WANDB_MODE": "offline",
    }
    key = cli("keys", "create", data_dir=data_dir, env=env).stdout.strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {key}"}
    results = [
        write_window(data_dir, env, auth, args.writes),
        job_faults(data_dir, env, auth, args.worker_kills, kind="worker"),
        job_faults(data_dir, env, auth, args.sigterms, kind="sigterm"),
    ]
    print(f"cpu: {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'fault':36} tried survived lost doubled manual-repairs")
    for r in results:
        print(
            f"{r['fault']:36} {r['tried']:5} {r['survived']:8} {r['lost']:4} {r['doubled']:7} {r['manual_repairs']:14}"
        )
    print("retried deliveries: " + ", ".join(results[0]["retried_as"]))
    Path(args.out).write_text(
        json.dumps({"cpu": torch.backends.cpu.get_cpu_capability(), "results": results}, indent=2) + "\n"
    )
    return 0 if all(r["survived"] == r["tried"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
