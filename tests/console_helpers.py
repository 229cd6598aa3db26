"""For the console's tests and benchmark: held documents made by a scripted model (so that their
fields are found in the text), and headless Chromium (Debian's `chromium`) for Playwright."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from agents.models import Extraction
from backend.inference.grounding import ground

# Chromium with nothing that reaches the network on its own.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """CHROMIUM, else Debian's chromium (`make test` installs it); None when there is none."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium")
    return found if found and Path(found).is_file() else None


class Scripted:
    """Answers the fields it was given for each document (by a line the document contains), with a
    confidence under the policy's review threshold: every document it reads is held for review."""

    name = "scripted"

    def __init__(self, answers: dict[str, dict], confidence: float = 0.5):
        self.answers, self.confidence = answers, confidence

    def extract(self, text, schema, *, notes=None):
        fields = next(f for marker, f in self.answers.items() if marker in text)
        return Extraction(fields, {k: self.confidence for k in fields}, ground(fields, text), "", self.name)

    def explain(self, doc_type, decision, reasons):
        return f"{decision}: " + "; ".join(reasons)


def hold_documents(data_dir: Path, documents: dict[str, tuple[str | bytes, dict]]) -> list[str]:
    """Run each {filename: (text, fields)} through the service's document graph (as
    `POST /v1/documents` does) with the scripted model; the ids of the documents held for review. A
    text is answered by its first line; a file given as bytes (a PDF, an image) by its first field's
    value, which its text must hold."""
    from backend.services.documents import Documents
    from backend.settings import Settings
    from backend.storage.engine import make_engine
    from backend.storage.migrations import migrate

    engine = make_engine(Settings(data_dir=data_dir).db_url)
    migrate(engine)
    service = Documents(data_dir=data_dir, engine=engine, threshold=1000)
    model = Scripted({_marker(content, fields): fields for content, fields in documents.values()})
    ids = []
    for filename, (content, _) in documents.items():
        raw = content.encode() if isinstance(content, str) else content
        record = service.run(service.save_upload(filename, raw), model=model, doc_type="receipt", dataset="corrections")
        assert record["status"] == "pending_review", record
        ids.append(record["id"])
    service._saver_conn.close()
    engine.dispose()
    return ids


def _marker(content: str | bytes, fields: dict) -> str:
    return content.splitlines()[0] if isinstance(content, str) else str(next(iter(fields.values())))
