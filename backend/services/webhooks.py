"""The labelled-data webhook: signed deliveries of new examples that grow a dataset and, past a
threshold, start training.

A delivery is `{"dataset": NAME, "examples": [record, ...]}` (or `"example": record`), signed with
HMAC-SHA256 over the raw body (`X-Tunebridge-Signature: sha256=<hex>`, as GitHub does) and named by
`X-Tunebridge-Delivery`. A delivery id is stored with the examples in one transaction, so a replay
stores nothing twice. When the dataset has `threshold` examples more than at its last training and
no training job of it is queued or running, one job starts with the hyperparameters of the
dataset's previous job (decided under the dataset's row lock: concurrent deliveries start one job).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from backend.errors import InvalidRequest
from backend.services import datasets, jobs

DELIVERY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def parse_delivery(body: bytes) -> tuple[str, bytes]:
    """The dataset name and its examples as JSON lines (one per example, in order)."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"body is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidRequest("body is not JSON this service reads: nested too deeply") from exc
    if not isinstance(payload, dict):
        raise InvalidRequest(f"body must be a JSON object, got {type(payload).__name__}")
    dataset = payload.get("dataset")
    if not isinstance(dataset, str):
        raise InvalidRequest("field 'dataset': a dataset name (string) is required")
    datasets.check_name(dataset)
    if ("examples" in payload) == ("example" in payload):
        raise InvalidRequest("give exactly one of 'examples' (a list of records) or 'example' (one record)")
    examples = payload["examples"] if "examples" in payload else [payload["example"]]
    if not isinstance(examples, list) or not examples:
        raise InvalidRequest("field 'examples': a non-empty list of records is required")
    return dataset, b"\n".join(json.dumps(e, ensure_ascii=False).encode() for e in examples)


def receive(
    *,
    engine: Engine,
    data_dir: Path,
    delivery_id: str,
    body: bytes,
    threshold: int,
    max_dataset_bytes: int | None = None,
) -> dict[str, Any]:
    """Store a delivery's examples (once) and start training if the threshold is reached."""
    if not DELIVERY.match(delivery_id or ""):
        raise InvalidRequest(
            "X-Tunebridge-Delivery: a delivery id of 1-128 letters, digits, '.', '_', ':' or '-' "
            "is required (it makes replays harmless)"
        )
    dataset, lines = parse_delivery(body)
    try:
        appended = datasets.append_examples(
            engine=engine,
            data_dir=data_dir,
            name=dataset,
            body=lines,
            source=f"delivery {delivery_id}",
            delivery_id=delivery_id,
            max_bytes=max_dataset_bytes,
        )
    except datasets.DuplicateDeliveryError:
        return {**_delivery(engine, delivery_id), "duplicate": True}
    job_id = _maybe_train(engine=engine, dataset=dataset, delivery_id=delivery_id, threshold=threshold)
    state = _delivery(engine, delivery_id)
    return {**state, "total": appended.total, "job": job_id, "threshold": threshold, "duplicate": False}


def _maybe_train(*, engine: Engine, dataset: str, delivery_id: str, threshold: int) -> str | None:
    job_id = maybe_train(engine=engine, dataset=dataset, threshold=threshold, trigger={"delivery": delivery_id})
    if job_id is not None:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE webhook_deliveries SET job_id = :j WHERE delivery_id = :d"),
                {"j": job_id, "d": delivery_id},
            )
    return job_id


def maybe_train(*, engine: Engine, dataset: str, threshold: int, trigger: dict[str, Any]) -> str | None:
    """Start one training job when the dataset has `threshold` new examples since its last training
    and none of its training jobs is queued or running; the new job's id, or None. Called after each
    delivery, and again by the worker when a job of the dataset ends (a delivery that arrived while a
    job was busy is not lost)."""
    with engine.begin() as conn:
        # Writing first takes the dataset's row lock (SQLite: the write lock) until commit.
        if not conn.execute(
            text("UPDATE datasets SET updated_at = updated_at WHERE name = :n"), {"n": dataset}
        ).rowcount:
            return None
        examples, last = (
            conn.execute(text("SELECT examples, examples_at_last_train FROM datasets WHERE name = :n"), {"n": dataset})
            .tuples()
            .one()
        )
        if examples - last < threshold:
            return None
        busy = conn.execute(
            text("SELECT 1 FROM jobs WHERE dataset = :n AND kind = 'train' AND status IN ('queued', 'running')"),
            {"n": dataset},
        ).first()
        if busy:
            return None
        previous = conn.execute(
            text(
                "SELECT params, adapter_name FROM jobs WHERE dataset = :n AND kind = 'train' "
                "ORDER BY created_at DESC LIMIT 1"
            ),
            {"n": dataset},
        ).first()
        params, adapter = (json.loads(previous[0]), previous[1]) if previous else ({}, None)
        job_id = jobs.create_job(
            engine=engine, kind="train", dataset=dataset, params=params, adapter_name=adapter, conn=conn
        )["id"]
        jobs.add_event(
            conn,
            job_id=job_id,
            type="triggered",
            data={"by": "labelled-data webhook", **trigger, "new_examples": examples - last},
        )
    return job_id


def fed_by_webhook(*, engine: Engine, dataset: str) -> bool:
    with engine.connect() as conn:
        return (
            conn.execute(text("SELECT 1 FROM webhook_deliveries WHERE dataset = :n LIMIT 1"), {"n": dataset}).first()
            is not None
        )


def _delivery(engine: Engine, delivery_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT delivery_id, dataset, added, job_id, received_at FROM webhook_deliveries WHERE delivery_id = :d"
            ),
            {"d": delivery_id},
        ).one()
    return {"delivery": row[0], "dataset": row[1], "added": row[2], "job": row[3], "received_at": row[4]}
