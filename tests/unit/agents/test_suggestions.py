"""Which held documents to review first, through the service's document store (`Documents.suggestions`,
`list(order="value")`) and `tunebridge review list --by value`: documents held by the real graph on a
scripted model, scored against a real corrections dataset."""

from __future__ import annotations

import json

import pytest

from agents.models import Extraction
from backend.cli import main
from backend.errors import InvalidRequest
from backend.inference.grounding import ground
from backend.services import datasets
from backend.services.documents import Documents

KETTLE = "THE COPPER KETTLE CAFE\n3 Market Square, Cambridge\nTel 01223 555 0101\n"
ZEPHYR = "ZEPHYR AEROSPACE GMBH\nFlughafenstrasse 9, Stuttgart\nKantine Beleg\n"


def receipt(head: str, number: int, total: str) -> str:
    return f"{head}Receipt {number}\nDate 21/11/2026\nTOTAL {total}\n"


class Scripted:
    """Reads the fields the receipt prints; its confidence is the text's `SURE` line (0.9 without one).
    Never calibrated, so every document is held for a person."""

    name = "scripted"

    def extract(self, text, schema, *, notes=None):
        lines = text.splitlines()
        fields = {"company": lines[0], "address": lines[1], "date": "21/11/2026", "total": lines[-1].split()[-1]}
        sure = float(next((line.split()[1] for line in lines if line.startswith("SURE ")), 0.9))
        return Extraction(fields, {name: sure for name in fields}, ground(fields, text), json.dumps(fields), self.name)

    def explain(self, doc_type, decision, reasons):
        return decision


@pytest.fixture
def held(tmp_path):
    """A service data folder with four held receipts and the dataset their corrections land in, which
    holds Copper Kettle receipts; (service, {name: thread id})."""
    from backend.storage.engine import make_engine
    from backend.storage.migrations import migrate

    data_dir = tmp_path / "data"
    engine = make_engine(f"sqlite:///{data_dir / 'tunebridge.db'}")
    migrate(engine)
    examples = [
        {"text": receipt(KETTLE, n, f"{n}.50"), "fields": {"company": "THE COPPER KETTLE CAFE", "total": f"{n}.50"}}
        for n in (101, 102, 103)
    ]
    body = "".join(json.dumps(e) + "\n" for e in examples).encode()
    datasets.append_examples(engine=engine, data_dir=data_dir, name="corrections-receipt", body=body, source="test")
    datasets.append_examples(engine=engine, data_dir=data_dir, name="receipts", body=body, source="test")
    service = Documents(data_dir=data_dir, engine=engine, threshold=100)
    texts = {
        "known": receipt(KETTLE, 201, "18.40"),
        "novel": receipt(ZEPHYR, 202, "18.40"),
        "unsure": receipt(KETTLE, 203, "7.10").replace("Date", "SURE 0.2\nDate"),
        "twin": receipt(KETTLE, 204, "18.40"),  # scores exactly as `known`: listed after it
    }
    ids = {}
    for name, text in texts.items():
        out = service.run(
            service.save_upload(f"{name}.txt", text.encode()), model=Scripted(), doc_type="receipt", dataset=None
        )
        assert out["status"] == "pending_review", out
        ids[name] = out["id"]
    return service, ids


def test_suggestions_put_novel_senders_and_unsure_answers_first(held):
    service, ids = held
    found = service.suggestions("corrections-receipt", limit=10)
    order = [d["thread_id"] for d in found]
    assert order.index(ids["novel"]) < order.index(ids["known"])
    assert order.index(ids["unsure"]) < order.index(ids["known"]) < order.index(ids["twin"])
    by_id = {d["thread_id"]: d for d in found}
    assert [d["score"] for d in found] == sorted((d["score"] for d in found), reverse=True)
    assert by_id[ids["novel"]]["reasons"][0].startswith("new sender: nearest training head")
    assert by_id[ids["unsure"]]["reasons"][0] == "low confidence: company 0.20 (uncalibrated)"
    assert by_id[ids["known"]]["signals"]["novelty"] < 0.2 < by_id[ids["novel"]]["signals"]["novelty"]
    assert by_id[ids["known"]]["score"] == by_id[ids["twin"]]["score"]
    assert not any(d["path"].startswith("/") for d in found) and "text" not in found[0]

    assert [d["thread_id"] for d in service.suggestions("corrections-receipt", limit=2)] == order[:2]
    listed = service.list("pending_review", order="value")
    assert [d["thread_id"] for d in listed] == order  # the default corrections dataset is corrections-receipt
    assert [d["thread_id"] for d in service.list("pending_review")] == list(ids.values())  # oldest first


def test_suggestions_for_a_dataset_that_takes_no_corrections_say_why(held):
    service, _ = held
    with pytest.raises(datasets.DatasetNotFoundError, match="'corrections-invoice' does not exist.*order=value"):
        service.suggestions("corrections-invoice", limit=5)
    body = json.dumps({"text": "ACME\nInvoice 1", "fields": {"total": 1}}).encode()
    datasets.append_examples(
        engine=service.engine, data_dir=service.data_dir, name="acme-invoice", body=body, source="test"
    )
    assert service.suggestions("acme-invoice", limit=5) == []  # held receipts only: no invoice waits
    with pytest.raises(InvalidRequest, match="'receipts' takes no review corrections.*bank-statement"):
        service.suggestions("receipts", limit=5)
    with pytest.raises(InvalidRequest, match="order: got 'size'"):
        service.list("pending_review", order="size")


def test_review_list_by_value_prints_the_same_order_with_score_and_top_reason(held, capsys):
    service, ids = held
    expected = service.suggestions("corrections-receipt", limit=10)
    assert main(["review", "list", "--by", "value", "--data-dir", str(service.data_dir)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == [d["thread_id"] for d in expected]
    for line, d in zip(lines, expected):
        assert f"  {d['score']:.3f}  " in line and line.endswith(f"({d['reasons'][0]})")

    assert main(["review", "list", "--data-dir", str(service.data_dir)]) == 0  # by time: oldest first
    assert [line.split()[0] for line in capsys.readouterr().out.strip().splitlines()] == list(ids.values())
