"""The agents on the example documents (examples/documents): real intake (text layers, OCR), the
classifier, validators and the default policy — with an oracle model that answers each document's
gold fields, so every decision below is the rules' own. Then the CLI end to end on the tiny model:
`tunebridge extract` in one process, `tunebridge review resume` in another, corrections reaching
the real service's webhook."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from langgraph.checkpoint.sqlite import SqliteSaver

from agents.graph import Deps, build_graph
from agents.intake import ocr_available, read_document
from agents.models import Extraction
from agents.policy import Policy
from agents.store import Store
from backend.inference.grounding import ground

DOCS = Path(__file__).resolve().parents[3] / "examples" / "documents"
TODAY = dt.date(2026, 11, 28)  # the day the example documents were dated around


class Oracle:
    """Answers the gold fields of whichever example document it is shown."""

    name = "oracle"

    def __init__(self, golds: dict[str, dict]):
        self.golds = golds

    def extract(self, text, schema, *, notes=None):
        fields = self.golds[text]
        return Extraction(
            fields, {k: 0.99 for k in fields}, ground(fields, text), json.dumps(fields), self.name, calibrated=True
        )

    def explain(self, doc_type, decision, reasons):
        return f"{decision}: " + "; ".join(reasons)


def example_files() -> list[Path]:
    files = sorted(p for p in DOCS.iterdir() if p.suffix in {".pdf", ".txt", ".png"})
    return [p for p in files if p.suffix != ".png" or ocr_available()]


@pytest.fixture(scope="module")
def decided(tmp_path_factory):
    files = example_files()
    golds = {}
    for path in files:
        golds[read_document(path).text] = json.loads(path.with_suffix(".json").read_text())["fields"]
    db = tmp_path_factory.mktemp("agents") / "agents.sqlite"
    store = Store(db)
    graph = build_graph(
        Deps(model=Oracle(golds), policy=Policy.load(None), store=store, today=TODAY),
        SqliteSaver(sqlite3.connect(str(db), check_same_thread=False)),
    )
    out = {}
    for n, path in enumerate(files):
        out[path.stem] = graph.invoke({"path": str(path)}, {"configurable": {"thread_id": f"d{n}"}})
    return out


def test_every_example_is_classified_as_its_gold_type(decided):
    for name, result in decided.items():
        assert result["doc_type"] == json.loads((DOCS / f"{name}.json").read_text())["doc_type"], name


@pytest.mark.parametrize(
    "name,decision,rules,flag_fields",
    [
        ("invoice_01_nordwind", "approve", set(), set()),
        ("invoice_03_vandijk_mismatch", "review", set(), {"line_items"}),
        ("invoice_04_nordwind_overdue_duplicate", "reject", {"duplicate_invoice", "invoice_overdue"}, set()),
        ("invoice_05_brouwer_injection", "approve", set(), set()),  # the injected line changes nothing
        ("invoice_06_thornbury", "review", {"unapproved_vendor"}, set()),
        ("statement_01_consistent", "approve", set(), set()),
        ("statement_02_structuring", "review", {"structuring"}, set()),
        ("kyc_01_loan_application", "approve", set(), set()),
    ],
)
def test_decisions_on_the_examples_are_the_rules(decided, name, decision, rules, flag_fields):
    result = decided[name]
    assert result["decision"] == decision, (result["fired"], result["flags"])
    assert {f["rule"] for f in result["fired"]} == rules
    validation_flags = {f["field"] for f in result["flags"] if f["why"] == "validation"}
    assert validation_flags == flag_fields, result["flags"]


def test_every_gold_value_is_grounded_in_its_document(decided):
    """Gold values are printed in the documents: grounding finds nearly all of them (numbers as
    printed in German or English style included)."""
    missing = {name: [f["field"] for f in r["flags"] if f["why"] == "not in document"] for name, r in decided.items()}
    total = sum(len(v) for v in missing.values())
    assert total <= 3, missing


def test_the_scanned_invoice_is_read_by_ocr(decided):
    if not ocr_available():
        pytest.skip("tesseract-ocr is not installed (make test installs it where it can)")
    scan = decided["invoice_02_lumiere_scan"]
    assert scan["pages"][0]["source"] == "ocr" and scan["doc_type"] == "invoice"
    assert scan["grounding"]["invoice_number"] is not None and scan["grounding"]["total"] is not None


def test_cli_extract_then_review_in_another_process(tiny_model, tmp_path, service):
    """The real commands on the tiny model: documents are held for review; `review resume` in a new
    process finishes one with corrections, which reach the service's webhook."""
    from servers import WEBHOOK_SECRET

    db, out = tmp_path / "agents.sqlite", tmp_path / "results.jsonl"
    files = [str(DOCS / "invoice_01_nordwind.pdf"), str(DOCS / "receipt_02_harbour_hardware.txt")]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "backend.cli",
            "extract",
            *files,
            "--model",
            tiny_model,
            "--db",
            str(db),
            "--out",
            str(out),
            "--max-repairs",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["doc_type"] for r in records] == ["invoice", "receipt"]
    assert all(r["status"] == "pending_review" and r["decision"] == "review" for r in records)  # a random model
    assert "2 documents" in done.stdout and (tmp_path / "results-report.md").is_file()
    listed = subprocess.run(
        [sys.executable, "-m", "backend.cli", "review", "list", "--db", str(db)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    receipt_id = next(line.split()[0] for line in listed.splitlines() if "harbour" in line)
    gold = json.loads((DOCS / "receipt_02_harbour_hardware.json").read_text())["fields"]
    fixes = tmp_path / "fixes.json"
    fixes.write_text(json.dumps({"fields": gold, "note": "typed from the paper copy"}))
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "backend.cli",
            "review",
            "resume",
            receipt_id,
            "--db",
            str(db),
            "--corrections",
            str(fixes),
            "--reviewer",
            "ana",
            "--webhook-url",
            f"{service['url']}/v1/webhooks/labelled-data",
            "--webhook-secret",
            WEBHOOK_SECRET,
            "--dataset",
            "corrections",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = json.loads(resumed.stdout)
    assert final["status"] == "reviewed" and final["fields"] == gold and final["review"]["reviewer"] == "ana"
    stats = httpx.get(f"{service['url']}/v1/datasets/corrections-receipt", headers=service["auth"]).json()
    assert stats["examples"] == 1
    listed = subprocess.run(
        [sys.executable, "-m", "backend.cli", "review", "list", "--db", str(db)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "harbour" not in listed and "nordwind" in listed
    invoice_id = next(line.split()[0] for line in listed.splitlines() if "nordwind" in line)
    typed = 'invoice_number="NW-2026-1184"\ntotal=936.11\n\nreject\nwrong bank details\n'  # at the prompts
    asked = subprocess.run(
        [sys.executable, "-m", "backend.cli", "review", "resume", invoice_id, "--db", str(db)],
        input=typed,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert asked.returncode == 0, asked.stderr[-3000:]
    final = json.loads(asked.stdout[asked.stdout.rindex('{\n  "path"') :])
    assert final["decision"] == "reject" and final["review"]["note"] == "wrong bank details"
    assert final["fields"]["invoice_number"] == "NW-2026-1184" and final["fields"]["total"] == 936.11


def test_extract_exits_non_zero_and_counts_the_documents_that_failed(tiny_model, tmp_path, capsys):
    from backend.cli import main

    broken = tmp_path / "scan.pdf"
    broken.write_bytes(b"%PDF-1.4 not really a PDF")
    db, out = tmp_path / "agents.sqlite", tmp_path / "results.jsonl"
    assert main(["extract", str(broken), "--model", tiny_model, "--db", str(db), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: 1 of 1 documents failed" in err and "scan.pdf" in err
    assert json.loads(out.read_text())["status"] == "failed"  # the record says why, nothing lost


def test_review_where_no_store_exists_says_so_and_creates_none(tmp_path, capsys):
    from backend.cli import main

    db = tmp_path / "nowhere" / "agents.sqlite"
    assert main(["review", "list", "--db", str(db)]) == 2
    assert "no review store at" in capsys.readouterr().err and not db.exists() and not db.parent.exists()
