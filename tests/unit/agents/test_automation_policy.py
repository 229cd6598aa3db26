"""The policy's `require_auto_fields`: an adapter's per-field automation marks (auto | review, from its
thresholds.json) decide whether a document may skip human review — on a real example document with the
real default policy and a scripted model."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agents.graph import Deps, build_graph, merge, output
from agents.models import Extraction
from agents.policy import DEFAULT_POLICY, Policy
from backend.errors import InvalidRequest
from backend.inference.grounding import ground

ROOT = Path(__file__).resolve().parents[3]
KYC = ROOT / "examples" / "documents" / "kyc_01_loan_application.pdf"
TODAY = dt.date(2026, 11, 28)


class Marked:
    """The document's own values at a calibrated 0.97, with the automation marks it is given (None: the
    adapter has no thresholds)."""

    name = "marked"

    def __init__(self, fields: dict, automation: dict[str, str] | None):
        self.fields, self.automation = fields, automation

    def extract(self, text, schema, *, notes=None):
        fields = copy.deepcopy(self.fields)
        return Extraction(
            fields,
            {k: 0.97 for k in fields},
            ground(fields, text),
            json.dumps(fields),
            self.name,
            calibrated=True,
            automation=copy.deepcopy(self.automation),
        )

    def explain(self, doc_type, decision, reasons):
        return f"{decision}: " + "; ".join(reasons)


def _gold() -> dict:
    return json.loads(KYC.with_suffix(".json").read_text())["fields"]


def _policy(tmp_path, mode: str | None) -> Policy:
    if mode is None:
        return Policy.load(None)
    path = tmp_path / "policy.yaml"
    path.write_text(
        DEFAULT_POLICY.read_text().replace("require_auto_fields: if_marked", f"require_auto_fields: {mode}")
    )
    return Policy.load(path)


def _run(model, policy, checkpointer=None, thread="t"):
    graph = build_graph(Deps(model=model, policy=policy, today=TODAY), checkpointer)
    return graph, graph.invoke({"path": str(KYC)}, {"configurable": {"thread_id": thread}})


def _all(mark: str) -> dict[str, str]:
    return {k: mark for k in _gold()}


def test_the_default_policy_approves_a_fully_auto_document_and_holds_one_with_a_review_field(tmp_path):
    policy = _policy(tmp_path, None)
    assert policy.require_auto_fields == "if_marked"
    _, approved = _run(Marked(_gold(), _all("auto")), policy)
    assert approved["decision"] == "approve", approved["flags"]
    assert output(approved)["automation"] == _all("auto")  # the record carries the marks

    marks = {**_all("auto"), "iban": "review", "annual_income": "review"}
    _, held = _run(Marked(_gold(), marks), policy)
    assert held["decision"] == "review"
    flags = [f for f in held["flags"] if f["why"] == "not auto-approved"]
    assert len(flags) == 1 and set(flags[0]["field"].split(", ")) == {"iban", "annual_income"}
    assert "not auto-approved: " in held["rationale"] and "iban" in held["rationale"]


def test_without_marks_the_default_policy_decides_as_before_and_a_strict_one_holds_everything(tmp_path):
    _, before = _run(Marked(_gold(), None), _policy(tmp_path, None))
    assert before["decision"] == "approve" and before["automation"] is None
    _, strict = _run(Marked(_gold(), None), _policy(tmp_path, "true"))
    assert strict["decision"] == "review"
    assert [f["why"] for f in strict["flags"]] == ["no automation thresholds"]
    assert "tunebridge eval --constrained --thresholds" in strict["flags"][0]["detail"]


def test_a_policy_may_ignore_the_marks_and_rejects_an_unknown_setting(tmp_path):
    _, ignored = _run(Marked(_gold(), _all("review")), _policy(tmp_path, "false"))
    assert ignored["decision"] == "approve", ignored["flags"]
    for bad in ("maybe", "1", "[x]"):
        with pytest.raises(InvalidRequest, match="require_auto_fields: got"):
            _policy(tmp_path, bad)


def test_the_reviewer_sees_the_marks_and_vouches_for_the_fields(tmp_path):
    marks = {**_all("auto"), "iban": "review"}
    graph, _ = _run(Marked(_gold(), marks), _policy(tmp_path, None), InMemorySaver(), "k")
    config = {"configurable": {"thread_id": "k"}}
    pending = graph.get_state(config)
    assert pending.next == ("human_review",)
    assert pending.tasks[0].interrupts[0].value["automation"]["iban"] == "review"
    done = graph.invoke(Command(resume={"reviewer": "ana"}), config)
    assert done["status"] == "reviewed" and done["decision"] == "approve" and done["flags"] == []


def test_chunks_merge_auto_only_where_every_chunk_giving_the_field_marked_it_auto():
    text = "ACME 12.50"
    one = Extraction(
        {"company": "ACME", "total": None},
        {"company": 0.99, "total": None},
        {},
        automation={"company": "auto", "total": "review"},
    )
    two = Extraction(
        {"company": "ACME", "total": 12.5},
        {"company": 0.9, "total": 0.99},
        {},
        automation={"company": "review", "total": "auto"},
    )
    assert merge([one, two], text).automation == {"company": "review", "total": "auto"}
    assert merge([one, Extraction({"company": "ACME"}, {"company": 0.9}, {})], text).automation is None
