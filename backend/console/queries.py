"""Small read-only views the console needs and the services do not offer: alias histories at once,
a version's newest eval scores, a dataset's field coverage, recent webhook deliveries, a held
document's text. Reads only: every change goes through the services."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from backend.services import adapters
from backend.services.datasets import read_committed
from backend.services.documents import Documents
from backend.training.data import parse_jsonl


def alias_histories(*, engine: Engine, entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`name@alias` -> where it points and its history, newest first."""
    return {
        f"{entry['name']}@{alias}": adapters.alias_state(engine=engine, name=entry["name"], alias=alias)
        for entry in entries
        for alias in entry["aliases"]
    }


def eval_scores(*, engine: Engine, version_id: str, scan: int = 500) -> dict[str, Any] | None:
    """The newest succeeded eval job's headline for `name@version` (micro-F1, F1 per field, its
    dataset and job), among the newest `scan` jobs; None when no eval job scored it."""
    with engine.connect() as conn:
        rows = (
            conn.execute(
                text(
                    "SELECT id, dataset, result FROM jobs WHERE kind = 'eval' AND status = 'succeeded' "
                    "ORDER BY created_at DESC LIMIT :n"
                ),
                {"n": scan},
            )
            .tuples()
            .all()
        )
    for job_id, dataset, result in rows:
        found = (json.loads(str(result or "{}")).get("candidates") or {}).get(version_id)
        if found and "fields" in found:
            return {**found, "job": job_id, "dataset": dataset}
    return None


def field_coverage(*, engine: Engine, data_dir: Path, name: str) -> dict[str, float]:
    """Extraction examples: the share of examples that give each field a value (not null, not empty)."""
    body = read_committed(engine=engine, data_dir=data_dir, name=name)
    records = [ex.record for ex in parse_jsonl([(name, body.splitlines())], dedupe=False).examples if ex.record]
    counts: Counter[str] = Counter()
    for record in records:
        counts.update(k for k, v in (record.get("fields") or {}).items() if v not in (None, "", [], {}))
        counts.update({k: 0 for k in record.get("fields") or {}})
    return {field: counts[field] / len(records) for field in sorted(counts)} if records else {}


def recent_deliveries(*, engine: Engine, dataset: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The newest labelled-data webhook deliveries (of one dataset, or all)."""
    where = "WHERE dataset = :d " if dataset else ""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT delivery_id, dataset, added, job_id, received_at FROM webhook_deliveries "
                f"{where}ORDER BY received_at DESC LIMIT :n"
            ),
            {"d": dataset, "n": limit},
        ).all()
    return [dict(r._mapping) for r in rows]


def document_text(documents: Documents, doc_id: str) -> str:
    """The text the graph extracted from (the grounding spans index into it), from the document's
    checkpoint: no second read or OCR of the file."""
    with documents._lock:
        state = documents._graph(None, None).get_state({"configurable": {"thread_id": doc_id}})
    return str(state.values.get("text") or "")
