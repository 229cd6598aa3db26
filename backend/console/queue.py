"""The review queue's order: the one place that decides which held document a reviewer sees first."""

from __future__ import annotations

from typing import Any

from backend.services.documents import Documents


def review_queue(documents: Documents) -> list[dict[str, Any]]:
    """Documents held for review, the longest-waiting first (the store lists them by last update)."""
    return documents.list("pending_review")
