"""The console's pure parts: marking spans in a document's text, the review body a form makes, where
a login may send the browser, and which form origins are accepted."""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from starlette.requests import Request

from backend.console.auth import safe_next, same_origin
from backend.console.review import review_answer, segments
from backend.errors import InvalidRequest

RECORD = {
    "fields": {"company": "ACME", "total": 18.4, "date": None, "items": [{"amount": 2}]},
    "confidence": {"company": 0.9, "total": 0.4},
    "grounding": {"company": {"start": 0, "end": 4, "match": "exact"}, "total": None},
    "flags": [{"why": "low confidence", "field": "total", "detail": "confidence 0.40"}],
    "fired": [{"rule": "r1", "reason": "total above 10", "evidence": {"field": "total"}}],
    "validation": [],
}


def test_segments_mark_each_span_once_and_keep_every_character():
    text = "ACME Ltd TOTAL 18.40"
    spans = {
        "company": {"start": 0, "end": 4},
        "name": {"start": 2, "end": 8},  # overlaps company: the first span wins
        "total": {"start": 15, "end": 20},
        "lost": {"start": 18, "end": 99},  # past the text: not marked
        "missing": None,
    }
    pieces = segments(text, spans)
    assert "".join(p["text"] for p in pieces) == text
    assert [(p["field"], p["text"]) for p in pieces if p["field"]] == [("company", "ACME"), ("total", "18.40")]


def test_a_review_body_holds_only_what_changed_and_numbers_stay_numbers():
    form = {
        "field:company": "ACME",  # unchanged
        "field:total": "18.5",
        "field:date": "21/11/2026",
        "field:items[0].amount": "3",
        "decision": "approve",
        "reviewer": "ana",
    }
    answer = review_answer(RECORD, form)
    assert answer == {
        "fields": {"total": 18.5, "date": "21/11/2026", "items[0].amount": 3},
        "decision": "approve",
        "note": None,
        "reviewer": "ana",
    }
    assert review_answer(RECORD, {"field:company": ""})["fields"] == {"company": None}
    assert review_answer(RECORD, {})["decision"] is None  # the rules decide
    with pytest.raises(InvalidRequest, match="decision: got 'maybe'"):
        review_answer(RECORD, {"decision": "maybe"})


@pytest.mark.parametrize(
    "target,expected",
    [
        ("/console/jobs/1", "/console/jobs/1"),
        ("https://evil.example/console", "/console"),
        ("//evil.example/console", "/console"),
        ("/v1/jobs", "/console"),
        (None, "/console"),
    ],
)
def test_after_login_only_a_console_path_of_this_server(target, expected):
    assert safe_next(target) == expected


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in {"host": "tb.local:8000", **headers}.items()]
    return Request({"type": "http", "scheme": "http", "method": "POST", "path": "/console/jobs", "headers": raw})


def test_forms_are_accepted_from_this_servers_pages_only():
    same_origin(_request({"origin": "http://tb.local:8000"}))
    same_origin(_request({"referer": "http://tb.local:8000/console/jobs"}))  # no Origin: the page it came from
    for headers in ({"origin": "http://evil.example"}, {"referer": "http://tb.local:8000.evil.example/x"}, {}):
        with pytest.raises(HTTPException) as refused:
            same_origin(_request(headers))
        assert refused.value.status_code == 403
