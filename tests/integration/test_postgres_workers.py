"""Scale-out on a real PostgreSQL server: three `tunebridge worker` processes (as on three hosts: one
database, one shared data folder) take twenty queued jobs; every job runs exactly once, and the job
of a worker killed mid-job (kill -9) is taken over when its lease runs out and finishes once."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from backend.services import datasets, jobs
from backend.storage.engine import make_engine
from backend.storage.migrations import migrate
from postgres_server import find_bin_dir, start_postgres
from servers import wait_for

pytestmark = [
    pytest.mark.skipif(find_bin_dir() is None, reason="no PostgreSQL binaries: pip install the test extras (pgserver)"),
    pytest.mark.skipif(importlib.util.find_spec("psycopg") is None, reason="no PostgreSQL driver: pip install psycopg"),
]
ROOT = Path(__file__).resolve().parents[2]
QUICK = {
    "max_steps": 1,
    "batch_size": 1,
    "report_to": "none",
    "precision": "fp32",
    "val_fraction": 0.0,
    "save_every": 0,
    "warmup_ratio": 0.0,
}
LONG = {**QUICK, "max_steps": 120, "save_every": 5}


def test_three_workers_run_twenty_jobs_exactly_once_and_take_over_a_killed_one(tiny_model, tmp_path):
    with start_postgres() as pg:
        url = pg.create_database(f"t_{uuid.uuid4().hex[:12]}")
        engine = make_engine(url)
        migrate(engine)
        data_dir = tmp_path / "shared"  # on several hosts: one mounted volume (NFS, a cloud disk)
        receipts = (ROOT / "examples" / "data" / "receipts.jsonl").read_bytes()
        datasets.append_examples(engine=engine, data_dir=data_dir, name="r", body=receipts, source="test")
        long_job = jobs.create_job(engine=engine, kind="train", dataset="r", params=LONG)["id"]  # oldest: taken first
        quick = [jobs.create_job(engine=engine, kind="train", dataset="r", params=QUICK)["id"] for _ in range(19)]

        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": url,
            "TUNEBRIDGE_DEFAULT_BASE_MODEL": tiny_model,
            "TUNEBRIDGE_LEASE_S": "3",
            "TUNEBRIDGE_WORKER_THREADS": "1",
        }
        env.pop("TUNEBRIDGE_DATABASE_URL", None)
        logs = [open(tmp_path / f"worker-{i}.log", "w") for i in range(3)]  # noqa: SIM115 - closed below
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "backend.cli", "worker", "--data-dir", str(data_dir)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for log in logs
        ]
        try:

            def job(job_id):
                return jobs.get_job(engine=engine, job_id=job_id)

            run_dir = data_dir / "jobs" / long_job
            wait_for(
                lambda: list((run_dir / "checkpoints").glob("step-*")), timeout=240, what="a checkpoint of the long job"
            )
            with engine.connect() as conn:
                owner = conn.execute(text("SELECT lease_owner FROM jobs WHERE id = :i"), {"i": long_job}).scalar()
            victim = next(w for w in workers if owner.endswith(f":{w.pid}"))
            victim.send_signal(signal.SIGKILL)  # no checkpoint, no re-queue: only its lease can tell
            victim.wait(timeout=30)
            assert job(long_job)["status"] == "running"

            every = [long_job, *quick]
            wait_for(lambda: all(job(j)["status"] in jobs.ENDED for j in every), timeout=600, what="all twenty jobs")
        finally:
            for w in workers:
                if w.poll() is None:
                    w.terminate()
            for w in workers:
                w.wait(timeout=60)
            for log in logs:
                log.close()

        logs_text = "\n".join((tmp_path / f"worker-{i}.log").read_text()[-3000:] for i in range(3))
        ended = {j: job(j) for j in every}
        assert all(j["status"] == "succeeded" for j in ended.values()), logs_text
        with engine.connect() as conn:
            started = conn.execute(text("SELECT job_id, data FROM job_events WHERE type = 'started'")).all()
        starts: dict[str, list[str]] = {}
        for job_id, data in started:
            starts.setdefault(job_id, []).append(json.loads(data)["worker"])
        assert all(len(starts[j]) == 1 and ended[j]["attempts"] == 1 for j in quick)  # exactly once each
        assert len(starts[long_job]) == 2 and ended[long_job]["attempts"] == 2  # killed, then taken over once
        assert starts[long_job][0] == owner and starts[long_job][1] != owner
        survivors = {f"{w.pid}" for w in workers if w is not victim}
        assert {s.rsplit(":", 1)[1] for j in quick for s in starts[j]} <= {f"{w.pid}" for w in workers}
        assert len({starts[j][0] for j in quick}) >= 2  # the work was shared
        assert starts[long_job][1].rsplit(":", 1)[1] in survivors
        steps = [
            json.loads(line)["step"]
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if '"loss"' in line
        ]
        assert steps == list(range(1, LONG["max_steps"] + 1))  # resumed from its checkpoint, no step twice
        adapters = {ended[j]["result"]["adapter"] for j in every}
        assert len(adapters) == 20  # one registered version per job: r@1 … r@20
        engine.dispose()
