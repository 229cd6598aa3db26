"""`tunebridge review --data-dir` and the service's /v1/documents share one review store: a document the
service holds is listed and resumed from the command line, and the service sees the result."""

from __future__ import annotations

import json
from pathlib import Path

from agents.models import Extraction
from backend.cli import main

DOCS = Path(__file__).resolve().parents[3] / "examples" / "documents"


class Unsure:
    """Finds nothing: every document is held for a person."""

    name = "unsure"

    def extract(self, text, schema, *, notes=None):
        return Extraction({}, {}, {}, "{}", self.name)

    def explain(self, doc_type, decision, reasons):
        return f"{decision}: " + "; ".join(reasons)


def test_review_with_the_service_data_folder_uses_the_service_store(tmp_path, capsys):
    from backend.services.documents import Documents
    from backend.storage.engine import make_engine
    from backend.storage.migrations import migrate

    data_dir = tmp_path / "service-data"
    engine = make_engine(f"sqlite:///{data_dir / 'tunebridge.db'}")
    migrate(engine)
    service = Documents(data_dir=data_dir, engine=engine, threshold=100)
    receipt = DOCS / "receipt_02_harbour_hardware.txt"
    held = service.run(
        service.save_upload(receipt.name, receipt.read_bytes()), model=Unsure(), doc_type="receipt", dataset=None
    )
    assert held["status"] == "pending_review"
    doc_id = service.list("pending_review")[0]["thread_id"]

    assert main(["review", "list", "--data-dir", str(data_dir)]) == 0
    assert doc_id in capsys.readouterr().out
    gold = json.loads(receipt.with_suffix(".json").read_text())["fields"]
    fixes = tmp_path / "fixes.json"
    fixes.write_text(json.dumps({"fields": gold, "decision": "approve"}))
    assert main(["review", "resume", doc_id, "--corrections", str(fixes), "--data-dir", str(data_dir)]) == 0
    assert service.get(doc_id)["status"] == "reviewed" and not service.list("pending_review")

    assert main(["review", "list", "--data-dir", str(data_dir), "--db", str(tmp_path / "x.sqlite")]) == 2
    assert "not both" in capsys.readouterr().err
