"""Documents through the agents' graph inside the service (`/v1/documents`): what n8n workflows and
other HTTP callers use to get a decided record for a file, and to finish a review.

The graph runs in the request (a document takes seconds); its model is the service's own batcher —
extractions batch with concurrent requests — and its state lives in `data_dir/agents.sqlite`
(documents, duplicate keys, review checkpoints), so a document held for review survives a restart
and `POST /v1/documents/{id}/review` resumes it. A reviewer's corrections become labelled examples of
the dataset `<corrections dataset>-<document type>` through the same path as the labelled-data
webhook (stored once per delivery, training started past the threshold).

Which held documents to review first (`suggestions`, `list(order="value")`): each is scored by
`backend/labels/suggest.py` on its graph state (confidence, grounding, validation, repairs, and the
novelty of its sender against the dataset its corrections would land in). A correction lands in
`<corrections dataset>-<document type>`, the corrections dataset being the reviewer's choice (default
TUNEBRIDGE_CORRECTIONS_DATASET), so a dataset takes the held documents whose type its name ends with:
`corrections-receipt` and `acme-receipt` both take the receipts, `corrections-bank-statement` the bank
statements.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from agents.feedback import dataset_for
from agents.graph import CUSTOM, Deps, build_graph, process, record
from agents.policy import Policy
from agents.schemas import DOC_TYPES, OTHER
from agents.store import SERVICE_FILE, Store
from backend.errors import Conflict, InvalidRequest, NotFound
from backend.labels import suggest
from backend.labels.novelty import HeadIndex
from backend.services import datasets, webhooks

SUFFIXES = {".pdf", ".txt", ".md", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}


ORDERS = ("value",)  # list(order=...): "value" = most informative first (backend/labels/suggest.py)


class DocumentNotFoundError(NotFound):
    pass


def corrections_heads(*, engine: Engine, data_dir: Path, dataset: str, doc_type: str | None) -> HeadIndex:
    """The training heads of `<dataset>-<doc_type>`, where corrections of this type land; none while
    that dataset does not exist (every sender is new)."""
    try:
        texts = datasets.document_texts(engine=engine, data_dir=data_dir, name=dataset_for(dataset, doc_type or OTHER))
    except (datasets.DatasetNotFoundError, InvalidRequest):  # none yet, or a name no dataset can have
        texts = []
    return HeadIndex.build(texts)


def as_json(value: suggest.Value) -> dict[str, Any]:
    """A document's value as the API and the CLI show it."""
    return {
        "score": round(value.score, 4),
        "reasons": value.reasons,
        "signals": {k: round(v, 4) for k, v in value.signals.items()},
    }


def document_type_of(dataset: str) -> str | None:
    """The document type whose review corrections land in `dataset` (`<prefix>-<type>`), or None."""
    for doc_type in (*DOC_TYPES, CUSTOM, OTHER):
        suffix = dataset_for("", doc_type)  # "-bank-statement"
        if dataset.endswith(suffix) and len(dataset) > len(suffix):
            return doc_type
    return None


class Documents:
    """One per service process: the store, and a graph per (target, corrections dataset)."""

    def __init__(self, *, data_dir: Path, engine: Engine, threshold: int, policy: str | None = None):
        self.data_dir, self.engine, self.threshold = data_dir, engine, threshold
        self.folder = data_dir / "documents"
        self.store = Store(data_dir / SERVICE_FILE)  # the one `tunebridge review --data-dir` opens
        self.policy = Policy.load(policy)
        self._saver_conn = sqlite3.connect(str(self.store.path), check_same_thread=False)
        self._lock = threading.Lock()  # one graph step at a time per process: SQLite checkpoints, one writer

    def _graph(self, model, dataset: str | None):
        from langgraph.checkpoint.sqlite import SqliteSaver

        def deliver(delivery_id: str, example: dict[str, Any]) -> None:
            assert dataset is not None  # handed to the graph only with a corrections dataset
            body = json.dumps({"dataset": dataset_for(dataset, example["doc_type"]), "example": example}).encode()
            webhooks.receive(
                engine=self.engine, data_dir=self.data_dir, delivery_id=delivery_id, body=body, threshold=self.threshold
            )

        deps = Deps(model=model, policy=self.policy, store=self.store, deliver=deliver if dataset else None)
        return build_graph(deps, SqliteSaver(self._saver_conn))

    def save_upload(self, filename: str, content: bytes) -> Path:
        suffix = Path(filename or "document.txt").suffix.lower()
        if suffix not in SUFFIXES:
            raise InvalidRequest(
                f"file {filename!r}: unsupported type {suffix or '(none)'}; send one of {sorted(SUFFIXES)}"
            )
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename).name)[:120] or f"document{suffix}"
        folder = self.folder / hashlib.sha256(content).hexdigest()[:16]  # one folder per content
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / safe
        path.write_bytes(content)
        return path

    def run(self, path: Path, *, model, doc_type: str | None, dataset: str | None) -> dict[str, Any]:
        from agents.intake import file_sha256

        try:
            with self._lock:
                state, before = process(
                    self._graph(model, dataset), self.store, path, thread_id=file_sha256(path)[:16], doc_type=doc_type
                )
        except InvalidRequest as exc:  # an unreadable file: named as the client sent it, not by its server path
            if str(path) not in str(exc):
                raise
            raise type(exc)(str(exc).replace(str(path), path.name)) from None
        out = self._public(record(state))
        return {**out, "cached": True} if before else out

    def get(self, doc_id: str) -> dict[str, Any]:
        with self._lock:
            state = self._graph(None, None).get_state({"configurable": {"thread_id": doc_id}})
        if not state.values:
            raise DocumentNotFoundError(f"document {doc_id!r} does not exist")
        return self._public(record(state))

    def review(self, doc_id: str, answer: dict[str, Any], *, dataset: str | None) -> dict[str, Any]:
        from langgraph.types import Command

        config = {"configurable": {"thread_id": doc_id}}
        with self._lock:
            graph = self._graph(None, dataset)
            state = graph.get_state(config)
            if not state.values:
                raise DocumentNotFoundError(f"document {doc_id!r} does not exist")
            if not state.next:
                raise Conflict(
                    f"document {doc_id} is not waiting for review (status "
                    f"{state.values.get('status')}, decision {state.values.get('decision')})"
                )
            graph.invoke(Command(resume=answer), config)
            return self._public(record(graph.get_state(config)))

    def list(
        self, status: str | None = None, *, order: str | None = None, corrections_dataset: str = "corrections"
    ) -> list[dict[str, Any]]:
        """Documents (of one status), oldest first; with `order="value"` most informative first, each
        with its score and reasons, novelty measured against `<corrections_dataset>-<type>` (every
        sender is new while that dataset does not exist)."""
        rows = self.store.documents(status=status)
        if order is None:
            return [self._public(d) for d in rows]
        if order not in ORDERS:
            raise InvalidRequest(f"order: got {order!r}, expected one of {list(ORDERS)} (or none: oldest first)")
        indexes = {
            t: corrections_heads(engine=self.engine, data_dir=self.data_dir, dataset=corrections_dataset, doc_type=t)
            for t in {r["doc_type"] for r in rows}
        }
        return self._by_value(rows, indexes)

    def suggestions(self, dataset: str, *, limit: int) -> builtins.list[dict[str, Any]]:
        """The documents held for review whose corrections land in `dataset`, most informative first
        (at most `limit`), novelty measured against the dataset's examples."""
        try:
            texts = datasets.document_texts(engine=self.engine, data_dir=self.data_dir, name=dataset)
        except datasets.DatasetNotFoundError:
            raise datasets.DatasetNotFoundError(
                f"dataset {dataset!r} does not exist (a corrections dataset is made by its first review "
                "correction; GET /v1/documents?status=pending_review&order=value orders the held documents "
                "without one)"
            ) from None
        doc_type = document_type_of(dataset)
        if doc_type is None:
            raise InvalidRequest(
                f"dataset {dataset!r} takes no review corrections: they land in `<corrections dataset>-<document "
                f"type>`, e.g. corrections-receipt (types: {', '.join(dataset_for('', t)[1:] for t in DOC_TYPES)})"
            )
        rows = [r for r in self.store.documents(status="pending_review") if r["doc_type"] == doc_type]
        return self._by_value(rows, {doc_type: HeadIndex.build(texts)})[:limit]

    def _by_value(
        self, rows: builtins.list[dict[str, Any]], indexes: dict[str | None, HeadIndex]
    ) -> builtins.list[dict[str, Any]]:
        """`rows` (the store's) most informative first, each with its score, reasons and signals."""
        with self._lock:
            graph = self._graph(None, None)
            states = [graph.get_state({"configurable": {"thread_id": r["thread_id"]}}).values for r in rows]
        return [{**self._public(rows[i]), **as_json(value)} for i, value in suggest.rank(states, index=indexes)]

    def _public(self, rec: dict[str, Any]) -> dict[str, Any]:
        """A record as clients see it: the stored file named relative to the data folder, never by its
        place on the server."""
        path = rec.get("path")
        if path:
            try:
                rec = {**rec, "path": Path(path).resolve().relative_to(self.data_dir.resolve()).as_posix()}
            except ValueError:
                rec = {**rec, "path": Path(path).name}
        return rec
