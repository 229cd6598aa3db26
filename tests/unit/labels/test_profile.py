"""Label profiles (backend/labels/profile.py): the patterns label rules try, shipped as data, chosen by a
training run and saved with what it learned."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from backend.errors import InvalidRequest
from backend.labels.conventions import Conventions, learn
from backend.labels.profile import DEFAULT, load_profile, shipped
from backend.labels.settlement import settled
from backend.training.config import TrainConfig

# Twenty senders whose names are printed before a tax label, never part of the name label.
NAMES = [(f"SHOP {chr(65 + i)} GST ID 0012{i}\nNO {i}, JALAN 1\nTOTAL 5.00", {"shop": f"SHOP {chr(65 + i)}"})
         for i in range(20)]


def test_shipped_profiles_load_and_the_default_is_receipts():
    assert {"receipts", "documents"} <= set(shipped()) and DEFAULT == "receipts"
    receipts, documents = load_profile(), load_profile("documents")
    assert receipts.name == "receipts" and load_profile("receipts") is receipts  # cached
    assert receipts.stops["contact"].search("GST REG 123") and not documents.stops["contact"].search("GST REG 123")
    assert receipts.stops["code"].search("SHOP (273500-U)") and not documents.stops["code"].search("SHOP (273500-U)")


def test_the_profile_decides_which_stops_are_tried_and_travels_with_the_rules(tmp_path):
    with_receipts = learn(NAMES, memory=False)
    assert with_receipts.profile == "receipts" and with_receipts.fields["shop"].stops == ["code", "contact"]
    assert with_receipts.apply({"shop": "SHOP Z GST ID 99"}, memory=False) == {"shop": "SHOP Z"}
    with_documents = learn(NAMES, memory=False, profile="documents")
    assert with_documents.fields["shop"].stops == ["code", "contact"]  # learned, but "GST" is no contact label there
    assert with_documents.apply({"shop": "SHOP Z GST ID 99"}, memory=False) == {"shop": "SHOP Z GST ID 99"}
    with_documents.save(tmp_path)
    saved = json.loads((tmp_path / "conventions.json").read_text())
    assert saved["profile"] == "documents" and Conventions.load(tmp_path) == with_documents
    del saved["profile"]  # rules saved before profiles existed were learned with the receipts patterns
    assert Conventions.from_json(saved).profile == "receipts"


def test_settlement_labels_come_from_the_profile(tmp_path):
    receipt = "TOTAL 29.80\nCASH 50.00\nCHG 20.20"
    assert settled(receipt) == Decimal("29.80")
    assert settled(receipt, load_profile("documents")) is None  # "CHG" is a receipts abbreviation
    own = tmp_path / "kassenbon.json"
    own.write_text(json.dumps({"stops": {"contact": r"\bTEL\b"}, "tendered": ["BAR", "GEGEBEN"],
                               "change": ["RÜCKGELD", "ZURÜCK"], "change_within": 2}))
    assert settled("SUMME 9.80\nGEGEBEN 20.00\nRückgeld 10.20", load_profile(str(own))) == Decimal("9.80")


def test_an_unknown_or_broken_profile_is_refused_before_training(tmp_path):
    with pytest.raises(InvalidRequest, match=r"'invoices-de' is neither a shipped profile \['documents', 'receipts'"):
        load_profile("invoices-de")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"stops": {"code": "(unclosed"}, "tendered": [], "change": [], "change_within": 1}))
    with pytest.raises(InvalidRequest, match="broken.json: error"):
        load_profile(str(broken))
    with pytest.raises(InvalidRequest, match="label_profile"):
        TrainConfig(data=["x.jsonl"], label_profile="nope")
