"""The graph's state: a narrow input (a file and an optional type), the working state, and the
record a finished document leaves (`OUTPUT_KEYS`)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class DocumentInput(TypedDict, total=False):
    path: str
    doc_type: str | None  # forced type (`--type`); classified when absent


class DocumentState(DocumentInput, total=False):
    doc_id: str  # sha256 of the file's bytes
    text: str
    pages: list[dict[str, Any]]  # number, source ("text-layer", "ocr", "plain"), characters
    classification: dict[str, Any]
    fields: dict[str, Any]
    confidence: dict[str, float | None]
    calibrated: bool  # the confidences were calibrated on held-out answers (else they authorise no approval)
    grounding: dict[str, Any]
    automation: dict[str, str] | None  # per field "auto" | "review" by the adapter's thresholds (None: it has none)
    as_printed: dict[str, str]  # number fields by path: the text the model copied, before it was read as a number
    model: str
    attempts: Annotated[list[dict[str, Any]], operator.add]  # every extraction, kept, first to last
    repairs: int
    validation: list[dict[str, Any]]  # issues of the current fields
    fired: list[dict[str, Any]]  # policy rules that fired, with evidence
    flags: list[dict[str, Any]]  # why a person must look: low confidence, not grounded, validation, type
    basis: list[dict[str, Any]]  # per decision field: value, printed span, confidence, rules, status
    decision: str  # approve | review | reject
    decision_confidence: float | None
    rationale: str
    review: dict[str, Any] | None  # the reviewer's answer, once given
    status: str  # done | reviewed
    error: str | None


OUTPUT_KEYS = (
    "path",
    "doc_id",
    "doc_type",
    "classification",
    "pages",
    "fields",
    "as_printed",
    "confidence",
    "calibrated",
    "grounding",
    "automation",
    "model",
    "repairs",
    "validation",
    "fired",
    "flags",
    "basis",
    "decision",
    "decision_confidence",
    "rationale",
    "review",
    "status",
)
