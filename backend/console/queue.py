"""The review queue's order: the one place that decides which held document a reviewer sees first."""

from __future__ import annotations

from typing import Any

from backend.services.documents import Documents


def review_queue(documents: Documents, *, corrections_dataset: str) -> list[dict[str, Any]]:
    """Documents held for review, the one whose correction would teach the model most first (each with
    its score and reasons; novelty against `<corrections_dataset>-<type>`)."""
    return documents.list("pending_review", order="value", corrections_dataset=corrections_dataset)
