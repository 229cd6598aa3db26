"""Reviewer corrections become labelled examples for the backend's labelled-data webhook — the loop
that makes the model better. Each correction is queued in the store first (`Store.queue_feedback`),
then sent signed (HMAC-SHA256 of the raw body, as `backend/services/webhooks.py` verifies) with a
delivery id that makes a resend harmless. What could not be sent stays queued for `flush`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agents.store import Store
from backend.signing import sign


@dataclass(frozen=True)
class Webhook:
    url: str  # e.g. http://127.0.0.1:8000/v1/webhooks/labelled-data
    secret: str
    dataset: str  # where the corrected examples go (a training dataset name)


def labelled_example(text: str, fields: dict[str, Any], doc_type: str, origin: str) -> dict[str, Any]:
    """An extraction record the trainer accepts: the document text and the corrected fields."""
    return {"text": text, "fields": fields, "doc_type": doc_type, "source": origin}


def dataset_for(prefix: str, doc_type: str) -> str:
    """One dataset per document type (`corrections-invoice`): an adapter learns one schema."""
    return f"{prefix}-{doc_type.replace('_', '-')}"


def queue(store: Store, webhook: Webhook | None, delivery_id: str, example: dict[str, Any]) -> None:
    body = {"dataset": dataset_for(webhook.dataset, example["doc_type"]) if webhook else None, "example": example}
    store.queue_feedback(delivery_id, body)


def flush(store: Store, webhook: Webhook | None, *, timeout_s: float = 10.0) -> dict[str, int]:
    """Send every queued correction; {"sent", "failed", "waiting"} (waiting: no webhook configured)."""
    import httpx

    counts = {"sent": 0, "failed": 0, "waiting": 0}
    for delivery_id, body in store.pending_feedback():
        if webhook is None:
            counts["waiting"] += 1
            continue
        payload = json.loads(body)
        payload["dataset"] = payload.get("dataset") or dataset_for(webhook.dataset, payload["example"]["doc_type"])
        raw = json.dumps(payload, ensure_ascii=False).encode()
        try:
            response = httpx.post(
                webhook.url,
                content=raw,
                timeout=timeout_s,
                headers={
                    "Content-Type": "application/json",
                    "X-Tunebridge-Delivery": delivery_id,
                    "X-Tunebridge-Signature": sign(raw, webhook.secret),
                },
            )
            error = None if response.status_code < 300 else f"HTTP {response.status_code}: {response.text[:300]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        store.feedback_result(delivery_id, error)
        counts["sent" if error is None else "failed"] += 1
    return counts
