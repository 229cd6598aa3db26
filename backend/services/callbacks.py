"""Job-end callbacks: an outbox in the jobs table, delivered by worker processes.

When a job with a `callback_url` ends, its `callback_state` becomes `pending` in the same transaction.
Workers deliver pending callbacks (right after finishing a job, and while idle): a POST of the job as
JSON, signed like the labelled-data webhook (`X-Tunebridge-Signature: sha256=<hex>` over the raw
body), with `X-Tunebridge-Delivery` = job id (receivers de-duplicate on it). A failed delivery is
retried with exponential back-off, up to MAX_ATTEMPTS; n8n passes its Wait node's resume URL here.
"""

from __future__ import annotations

import json
import time

import httpx
from sqlalchemy import Engine, text

from backend.services.jobs import add_event, get_job
from backend.signing import sign

MAX_ATTEMPTS = 5
CLAIM_S = 60.0  # a worker killed mid-delivery leaves the callback to be retried after this


def deliver_pending(*, engine: Engine, secret: str | None, timeout_s: float = 10.0, limit: int = 10) -> int:
    """Send due callbacks; returns how many were delivered."""
    delivered = 0
    now = time.time()
    with engine.connect() as conn:
        due = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT id FROM jobs WHERE callback_state = 'pending' AND "
                    "callback_next_at <= :now ORDER BY updated_at LIMIT :n"
                ),
                {"now": now, "n": limit},
            )
        ]
    for job_id in due:
        with engine.begin() as conn:  # claim it, so two workers don't both send it
            claimed = conn.execute(
                text(
                    "UPDATE jobs SET callback_next_at = :later WHERE id = :id AND "
                    "callback_state = 'pending' AND callback_next_at <= :now"
                ),
                {"later": now + CLAIM_S, "id": job_id, "now": now},
            ).rowcount
        if claimed and _send(engine=engine, job_id=job_id, secret=secret, timeout_s=timeout_s):
            delivered += 1
    return delivered


def _send(*, engine: Engine, job_id: str, secret: str | None, timeout_s: float) -> bool:
    job = get_job(engine=engine, job_id=job_id)
    body = json.dumps({"event": f"job.{job['status']}", "job": job}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Tunebridge-Delivery": job_id,
        "X-Tunebridge-Event": f"job.{job['status']}",
        "User-Agent": "tunebridge-callback/1",
    }
    if secret:
        headers["X-Tunebridge-Signature"] = sign(body, secret)
    try:
        response = httpx.post(job["callback"]["url"], content=body, headers=headers, timeout=timeout_s)
        error = None if response.is_success else f"HTTP {response.status_code}: {response.text[:200]}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    attempts = job["callback"]["attempts"] + 1
    state = "delivered" if error is None else ("failed" if attempts >= MAX_ATTEMPTS else "pending")
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE jobs SET callback_state = :s, callback_attempts = :a, callback_error = :e, "
                "callback_next_at = :next WHERE id = :id"
            ),
            {"s": state, "a": attempts, "e": error, "next": time.time() + 2**attempts, "id": job_id},
        )
        add_event(conn, job_id=job_id, type="callback", data={"state": state, "attempt": attempts, "error": error})
    return error is None
