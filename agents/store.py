"""The agents' own SQLite file: documents and their state, keys seen before (duplicate detection),
and reviewer corrections waiting to reach the backend's labelled-data webhook (an outbox: a
correction is stored before it is sent, so an unreachable backend loses nothing). LangGraph's
checkpoints live in the same file, in the tables its SqliteSaver makes.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    thread_id TEXT PRIMARY KEY, doc_id TEXT NOT NULL, path TEXT NOT NULL, doc_type TEXT, status TEXT NOT NULL,
    decision TEXT, summary TEXT, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen_keys (
    kind TEXT NOT NULL, key TEXT NOT NULL, doc_id TEXT NOT NULL, path TEXT, PRIMARY KEY (kind, key, doc_id));
CREATE TABLE IF NOT EXISTS feedback_outbox (
    delivery_id TEXT PRIMARY KEY, body TEXT NOT NULL, created_at TEXT NOT NULL, sent_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT);
"""

SERVICE_FILE = "agents.sqlite"  # the store's file in the service's data folder (/v1/documents, review --data-dir)


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    # -- documents ---------------------------------------------------------------------------------
    def put_document(
        self,
        *,
        thread_id: str,
        doc_id: str,
        path: str,
        status: str,
        doc_type: str | None = None,
        decision: str | None = None,
        summary: dict[str, Any] | None = None,
    ) -> None:
        self.conn.execute(
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(thread_id) DO UPDATE SET "
            "doc_type = excluded.doc_type, status = excluded.status, decision = excluded.decision, "
            "summary = excluded.summary, updated_at = excluded.updated_at",
            (thread_id, doc_id, path, doc_type, status, decision, json.dumps(summary or {}), now()),
        )

    def documents(self, *, status: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT thread_id, doc_id, path, doc_type, status, decision, summary, updated_at FROM documents"
        rows = self.conn.execute(
            query + (" WHERE status = ?" if status else "") + " ORDER BY updated_at", (status,) if status else ()
        ).fetchall()
        keys = ("thread_id", "doc_id", "path", "doc_type", "status", "decision", "summary", "updated_at")
        return [{**dict(zip(keys, r)), "summary": json.loads(r[6] or "{}")} for r in rows]

    def threads_of(self, doc_id: str) -> list[dict[str, Any]]:
        return [d for d in self.documents() if d["doc_id"] == doc_id]

    # -- history (agents.policy.History) -------------------------------------------------------------
    def seen(self, kind: str, key: str, doc_id: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT path FROM seen_keys WHERE kind = ? AND key = ? AND doc_id != ? ORDER BY path", (kind, key, doc_id)
        ).fetchall()
        return [r[0] for r in rows]

    def remember(self, kind: str, key: str, doc_id: str, path: str) -> None:
        self.conn.execute("INSERT OR IGNORE INTO seen_keys VALUES (?, ?, ?, ?)", (kind, key, doc_id, path))

    # -- feedback outbox -----------------------------------------------------------------------------
    def queue_feedback(self, delivery_id: str, body: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO feedback_outbox (delivery_id, body, created_at) VALUES (?, ?, ?)",
            (delivery_id, json.dumps(body, ensure_ascii=False), now()),
        )

    def pending_feedback(self) -> list[tuple[str, str]]:
        return self.conn.execute(
            "SELECT delivery_id, body FROM feedback_outbox WHERE sent_at IS NULL ORDER BY created_at"
        ).fetchall()

    def feedback_result(self, delivery_id: str, error: str | None) -> None:
        if error is None:
            self.conn.execute(
                "UPDATE feedback_outbox SET sent_at = ?, attempts = attempts + 1, last_error = NULL "
                "WHERE delivery_id = ?",
                (now(), delivery_id),
            )
        else:
            self.conn.execute(
                "UPDATE feedback_outbox SET attempts = attempts + 1, last_error = ? WHERE delivery_id = ?",
                (error[:500], delivery_id),
            )

    def feedback_rows(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT delivery_id, created_at, sent_at, attempts, last_error FROM feedback_outbox ORDER BY created_at"
        ).fetchall()
        return [dict(zip(("delivery_id", "created_at", "sent_at", "attempts", "last_error"), r)) for r in rows]
