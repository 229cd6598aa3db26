"""Review: the queue of held documents, a document's text with each extracted field marked at its
grounding span, and the review form — finished by `Documents.review`, the code behind
`POST /v1/documents/{id}/review`, so corrections reach the corrections dataset the same way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from backend.api.deps import EngineDep, SettingsDep
from backend.api.routes.documents import documents_of
from backend.console.auth import PREFIX, Page, same_origin
from backend.console.page_images import page_count, page_png
from backend.console.queries import document_text
from backend.console.queue import review_queue
from backend.console.render import back, page
from backend.errors import InvalidRequest, NotFound, TunebridgeError
from backend.inference.grounding import leaves

router = APIRouter(prefix=f"{PREFIX}/review", dependencies=[Page])
DECISIONS = ("approve", "review", "reject")


@router.get("")
def queue_page(request: Request, engine: EngineDep, settings: SettingsDep) -> HTMLResponse:
    return page(
        request,
        "review.html",
        queue=review_queue(documents_of(request, settings, engine), corrections_dataset=settings.corrections_dataset),
    )


@router.get("/{doc_id}")
def document_page(doc_id: str, request: Request, engine: EngineDep, settings: SettingsDep) -> HTMLResponse:
    documents = documents_of(request, settings, engine)
    try:
        record = documents.get(doc_id)
    except NotFound as exc:
        return page(request, "missing.html", status=404, what=str(exc))
    source = document_text(documents, doc_id)
    rows = field_rows(record)
    return page(
        request,
        "document.html",
        doc=record,
        pages=_pages(stored_file(documents, record)),
        rows=rows,
        segments=segments(source, record.get("grounding") or {}),
        document_reasons=[why for field, why in reasons_of(record) if not field],
        decisions=DECISIONS,
        pending=record.get("status") == "pending_review",
    )


@router.get("/{doc_id}/pages/{n}.png")
def page_image(doc_id: str, n: int, request: Request, engine: EngineDep, settings: SettingsDep) -> Response:
    """Page `n` (from 1) of a held document's file as a picture: what the reviewer compares the fields with."""
    documents = documents_of(request, settings, engine)
    try:
        path = stored_file(documents, documents.get(doc_id))
        if path is None:
            raise NotFound(f"document {doc_id} has no stored file")
        png = page_png(path, n)
    except NotFound as exc:
        return Response(str(exc), status_code=404, media_type="text/plain")
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def stored_file(documents: Any, record: dict[str, Any]) -> Path | None:
    """The document's file in the data folder (records name it relative to it), or None."""
    if not record.get("path"):
        return None
    root = Path(documents.data_dir).resolve()
    path = (root / record["path"]).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def _pages(path: Path | None) -> int:
    """How many page images the review page shows: none for text files, or where the file cannot be drawn
    (the text, read when the document arrived, is still there)."""
    if path is None:
        return 0
    try:
        return page_count(path)
    except Exception:  # a damaged PDF or image: PDFium and Pillow raise many kinds
        return 0


def field_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per extracted leaf: its value, confidence, span, and the validator and rule reasons naming it."""
    grounding, confidence = record.get("grounding") or {}, record.get("confidence") or {}
    reasons: dict[str, list[str]] = {}
    for field, why in reasons_of(record):
        reasons.setdefault(field or "", []).append(why)
    rows = []
    for path, value in leaves(record.get("fields") or {}):
        top = path.split(".")[0].split("[")[0]
        rows.append(
            {
                "path": path,
                "value": "" if value is None else value if isinstance(value, str) else json.dumps(value),
                "is_text": isinstance(value, str) or value is None,
                "confidence": confidence.get(path, confidence.get(top)),
                "span": grounding.get(path),
                "reasons": reasons.get(path, []) + (reasons.get(top, []) if top != path else []),
            }
        )
    return rows


def reasons_of(record: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(field or None for the whole document, reason) from the validators, the review flags and the
    policy's rules."""
    out: list[tuple[str | None, str]] = []
    for issue in record.get("validation") or []:
        out.append((issue.get("field"), f"validator ({issue.get('severity', 'error')}): {issue.get('message')}"))
    for flag in record.get("flags") or []:
        out.append((flag.get("field"), f"{flag.get('why')}: {flag.get('detail')}"))
    for fired in record.get("fired") or []:
        out.append(((fired.get("evidence") or {}).get("field"), f"rule {fired.get('rule')}: {fired.get('reason')}"))
    return out


def segments(source: str, grounding: dict[str, Any]) -> list[dict[str, Any]]:
    """The text cut into plain and marked pieces, a mark per field's span (overlapping spans: the first wins)."""
    spans = sorted(
        (s["start"], s["end"], path)
        for path, s in grounding.items()
        if isinstance(s, dict) and 0 <= s.get("start", -1) < s.get("end", -1) <= len(source)
    )
    out, at = [], 0
    for start, end, path in spans:
        if start < at:
            continue
        if start > at:
            out.append({"text": source[at:start], "field": None})
        out.append({"text": source[start:end], "field": path})
        at = end
    out.append({"text": source[at:], "field": None})
    return out


@router.post("/{doc_id}")
async def submit(doc_id: str, request: Request, engine: EngineDep, settings: SettingsDep) -> RedirectResponse:
    from starlette.concurrency import run_in_threadpool

    same_origin(request)
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    documents = documents_of(request, settings, engine)

    def finish() -> dict[str, Any]:
        answer = review_answer(documents.get(doc_id), form)
        return documents.review(doc_id, answer, dataset=settings.corrections_dataset)

    try:
        done = await run_in_threadpool(finish)
    except TunebridgeError as exc:
        return back(f"{PREFIX}/review/{doc_id}", error=str(exc))
    return back(f"{PREFIX}/review/{doc_id}", notice=f"reviewed: {done.get('decision')}")


def review_answer(record: dict[str, Any], form: dict[str, str]) -> dict[str, Any]:
    """The review body from the form: the fields the reviewer changed (a number stays a number), the
    decision (empty: the rules decide on the corrected record), note and reviewer."""
    fields: dict[str, Any] = {}
    for row in field_rows(record):
        given = form.get(f"field:{row['path']}")
        if given is None or given == row["value"]:
            continue
        if row["is_text"]:
            fields[row["path"]] = given if given != "" else None
        else:
            try:
                fields[row["path"]] = json.loads(given) if given.strip() else None
            except ValueError:
                fields[row["path"]] = given
    decision = form.get("decision") or None
    if decision is not None and decision not in DECISIONS:
        raise InvalidRequest(f"decision: got {decision!r}, expected one of {list(DECISIONS)} or none")
    return {
        "fields": fields,
        "decision": decision,
        "note": form.get("note") or None,
        "reviewer": form.get("reviewer") or None,
    }
