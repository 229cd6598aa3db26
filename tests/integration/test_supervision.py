"""`tunebridge serve` keeps its workers alive and says when none is: kill -9 of its worker mid-job,
the worker is started again and the job finishes, every step trained once; with no worker,
/readyz is 503 and says why. A training's end checks the webhook threshold again."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import uuid
from pathlib import Path

import httpx

from servers import ROOT, WEBHOOK_SECRET, children, running_service, wait_for


def _workers(server_pid: int) -> list[int]:
    return [p for p in children(server_pid) if "spawn_main" in _cmdline(p)]  # not the resource tracker


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_serve_restarts_a_killed_worker_and_the_job_finishes(tiny_model, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = {"TUNEBRIDGE_DEFAULT_BASE_MODEL": tiny_model, "TUNEBRIDGE_LEASE_S": "3"}
    with running_service(data_dir, env=env) as service:
        url, auth = service["url"], service["auth"]
        receipts = (ROOT / "examples" / "data" / "receipts.jsonl").read_bytes()
        assert httpx.post(f"{url}/v1/datasets/r/examples", content=receipts, headers=auth).status_code == 201
        params = {
            "max_steps": 120,
            "batch_size": 1,
            "report_to": "none",
            "precision": "fp32",
            "save_every": 5,
            "val_fraction": 0.0,
        }
        job_id = httpx.post(
            f"{url}/v1/jobs", json={"kind": "train", "dataset": "r", "hyperparameters": params}, headers=auth
        ).json()["id"]
        run_dir = data_dir / "jobs" / job_id
        wait_for(lambda: list((run_dir / "checkpoints").glob("step-*")), what="a checkpoint")
        first = wait_for(lambda: _workers(service["proc"].pid), what="the worker process")
        os.kill(first[0], signal.SIGKILL)
        restarted = wait_for(
            lambda: [p for p in _workers(service["proc"].pid) if p not in first], timeout=60, what="a new worker"
        )
        assert restarted and "exited with code -9; starting it again" in (data_dir / "serve.log").read_text()
        job = wait_for(
            lambda: (
                (j := httpx.get(f"{url}/v1/jobs/{job_id}", headers=auth).json())["status"] in ("succeeded", "failed")
                and j
            ),
            timeout=300,
            what="the job's end",
        )
        assert job["status"] == "succeeded" and job["attempts"] == 2 and job["result"]["steps"] == 120, job
        steps = [
            json.loads(line)["step"]
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if '"loss"' in line
        ]
        assert steps == list(range(1, 121))
        assert httpx.get(f"{url}/readyz").json()["checks"]["workers"] == "ok"


def test_readiness_says_when_no_worker_holds_the_queue(tiny_model, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with running_service(data_dir, env={"TUNEBRIDGE_DEFAULT_BASE_MODEL": tiny_model}, workers=0) as service:
        ready = httpx.get(f"{service['url']}/readyz")
        assert ready.status_code == 503 and ready.json()["live_workers"] == 0
        assert "no live worker holds the job queue" in ready.json()["checks"]["workers"]
        assert str(data_dir) not in ready.text


def _deliver(url: str, examples: list[dict]) -> httpx.Response:
    body = json.dumps({"dataset": "grow", "examples": examples}).encode()
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return httpx.post(
        f"{url}/v1/webhooks/labelled-data",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Tunebridge-Delivery": uuid.uuid4().hex,
            "X-Tunebridge-Signature": signature,
        },
    )


def test_deliveries_that_pass_the_threshold_while_a_job_runs_start_the_next_job(tiny_model, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = {
        "TUNEBRIDGE_DEFAULT_BASE_MODEL": tiny_model,
        "TUNEBRIDGE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "TUNEBRIDGE_TRAIN_THRESHOLD": "3",
    }
    with running_service(data_dir, env=env) as service:
        url, auth = service["url"], service["auth"]

        def batch(start: int) -> list[dict]:
            return [
                {"text": f"Shop {i} total {i}.00", "fields": {"company": f"Shop {i}", "total": f"{i}.00"}}
                for i in range(start, start + 3)
            ]

        first = _deliver(url, batch(0)).json()
        assert first["job"] is not None
        busy = _deliver(url, batch(3)).json()  # the first job is queued or running: no second job now
        assert busy["job"] is None and busy["total"] == 6
        ended = wait_for(
            lambda: (
                (j := httpx.get(f"{url}/v1/jobs/{first['job']}", headers=auth).json())["status"]
                in ("succeeded", "failed", "cancelled")
                and j
            ),
            timeout=300,
            what="the first job",
        )
        assert ended["status"] == "succeeded", ended["error"]
        jobs = wait_for(
            lambda: [
                j
                for j in httpx.get(f"{url}/v1/jobs", headers=auth).json()
                if j["dataset"] == "grow" and j["id"] != first["job"]
            ],
            timeout=60,
            what="the next job",
        )
        events = httpx.get(f"{url}/v1/jobs/{jobs[0]['id']}/events", headers=auth).json()
        triggered = [e for e in events if e["type"] == "triggered"][0]["data"]
        assert triggered["after_job"] == first["job"] and triggered["new_examples"] == 3
