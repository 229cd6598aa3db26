"""Jobs in the database: created by the API, claimed by worker processes under a lease.

A worker holds a job while it renews the lease (heartbeats); a job whose lease ran out (its worker
was killed) is claimed again and resumes from its last checkpoint, up to MAX_ATTEMPTS, after which
it is marked failed with the reason. A job is never left "running" forever.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, text

from backend.services.datasets import DatasetNotFoundError
from backend.services.errors import ConflictError, NotFoundError
from backend.training.config import TrainConfig

KINDS = ("train",)
MAX_ATTEMPTS = 3
COLUMNS = "id, kind, status, dataset, params, progress, result, error, cancel_requested, attempts, created_at, updated_at"


class JobNotFoundError(NotFoundError):
    pass


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def create_job(*, engine: Engine, kind: str, dataset: str, params: dict[str, Any]) -> dict[str, Any]:
    if kind not in KINDS:
        raise ValueError(f"kind: got {kind!r}, expected one of {list(KINDS)}")
    reserved = sorted({"data", "output_dir", "run_name"} & set(params))
    if reserved:
        raise ValueError(f"hyperparameters {reserved} are set by the service; leave them out")
    TrainConfig.from_dict({**params, "data": ["(dataset)"]})  # validates every option now, not in the worker
    with engine.begin() as conn:
        if conn.execute(text("SELECT 1 FROM datasets WHERE name = :n"), {"n": dataset}).first() is None:
            raise DatasetNotFoundError(f"dataset {dataset!r} does not exist; upload examples first")
        job_id = uuid.uuid4().hex
        conn.execute(text(f"INSERT INTO jobs ({COLUMNS}) VALUES (:id, :kind, 'queued', :dataset, :params, NULL, NULL, "
                          "NULL, 0, 0, :t, :t)"),
                     {"id": job_id, "kind": kind, "dataset": dataset, "params": json.dumps(params), "t": _now()})
    return get_job(engine=engine, job_id=job_id)


def get_job(*, engine: Engine, job_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT {COLUMNS} FROM jobs WHERE id = :id"), {"id": job_id}).first()
    if row is None:
        raise JobNotFoundError(f"job {job_id!r} does not exist")
    job = dict(row._mapping)
    for key in ("params", "progress", "result"):
        job[key] = json.loads(job[key]) if job[key] else None
    job["cancel_requested"] = bool(job["cancel_requested"])
    return job


def list_jobs(*, engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM jobs ORDER BY created_at DESC LIMIT :n"), {"n": limit})]
    return [get_job(engine=engine, job_id=i) for i in ids]


def request_cancel(*, engine: Engine, job_id: str) -> dict[str, Any]:
    get_job(engine=engine, job_id=job_id)
    with engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET status = 'cancelled', updated_at = :t WHERE id = :id AND status = 'queued'"),
                     {"id": job_id, "t": _now()})
        conn.execute(text("UPDATE jobs SET cancel_requested = 1, updated_at = :t WHERE id = :id AND status = 'running'"),
                     {"id": job_id, "t": _now()})
    return get_job(engine=engine, job_id=job_id)


def resume_job(*, engine: Engine, job_id: str) -> dict[str, Any]:
    """Queue a cancelled or failed job again; its worker continues from the last checkpoint."""
    job = get_job(engine=engine, job_id=job_id)
    if job["status"] not in ("cancelled", "failed"):
        raise ConflictError(f"job {job_id} is {job['status']}; only cancelled or failed jobs can be resumed")
    with engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET status = 'queued', cancel_requested = 0, error = NULL, attempts = 0, "
                          "updated_at = :t WHERE id = :id"), {"id": job_id, "t": _now()})
    return get_job(engine=engine, job_id=job_id)


def claim_next(*, engine: Engine, owner: str, lease_s: float) -> dict[str, Any] | None:
    """Atomically take the oldest queued job, or a running one whose worker stopped renewing its lease."""
    now = time.time()
    with engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET status = 'failed', error = :e, updated_at = :t WHERE status = 'running' "
                          "AND lease_expires_at < :now AND attempts >= :max"),
                     {"e": f"worker stopped (killed or crashed) {MAX_ATTEMPTS} times; giving up", "t": _now(),
                      "now": now, "max": MAX_ATTEMPTS})
        candidates = conn.execute(text("SELECT id FROM jobs WHERE status = 'queued' OR (status = 'running' AND "
                                       "lease_expires_at < :now) ORDER BY created_at LIMIT 5"), {"now": now}).all()
        for (job_id,) in candidates:
            taken = conn.execute(text("UPDATE jobs SET status = 'running', lease_owner = :o, lease_expires_at = :exp, "
                                      "attempts = attempts + 1, updated_at = :t WHERE id = :id AND (status = 'queued' "
                                      "OR (status = 'running' AND lease_expires_at < :now))"),
                                 {"o": owner, "exp": now + lease_s, "t": _now(), "id": job_id, "now": now}).rowcount
            if taken:
                break
        else:
            return None
    return get_job(engine=engine, job_id=job_id)


def heartbeat(*, engine: Engine, job_id: str, owner: str, lease_s: float, progress: dict | None = None) -> bool:
    """Renew the lease (and store progress). Returns True when a cancel was requested."""
    values = {"id": job_id, "o": owner, "exp": time.time() + lease_s, "t": _now()}
    sql = "UPDATE jobs SET lease_expires_at = :exp, updated_at = :t"
    if progress is not None:
        sql += ", progress = :p"
        values["p"] = json.dumps(progress)
    with engine.begin() as conn:
        conn.execute(text(sql + " WHERE id = :id AND lease_owner = :o AND status = 'running'"), values)
        flag = conn.execute(text("SELECT cancel_requested FROM jobs WHERE id = :id"), {"id": job_id}).scalar()
    return bool(flag)


def finish(*, engine: Engine, job_id: str, owner: str, status: str, result: dict | None = None, error: str | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET status = :s, result = :r, error = :e, lease_owner = NULL, "
                          "lease_expires_at = NULL, updated_at = :t WHERE id = :id AND lease_owner = :o"),
                     {"s": status, "r": json.dumps(result) if result is not None else None, "e": error,
                      "t": _now(), "id": job_id, "o": owner})
