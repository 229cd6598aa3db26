"""`/v1/documents` on the real service (tiny model): a file or text through the agents' graph, the
review of a held document, corrections landing in a per-type dataset, and bad input."""

from __future__ import annotations

from pathlib import Path

import httpx

DOCS = Path(__file__).resolve().parents[2] / "examples" / "documents"


def test_a_pdf_is_decided_and_its_review_finished_over_http(service, tiny_model):
    url, auth = service["url"], service["auth"]
    pdf = DOCS / "receipt_01_copper_kettle.pdf"
    with pdf.open("rb") as f:
        created = httpx.post(
            f"{url}/v1/documents",
            headers=auth,
            timeout=300,
            files={"file": (pdf.name, f, "application/pdf")},
            data={"model": tiny_model},
        )
    assert created.status_code == 200, created.text
    record = created.json()
    assert record["doc_type"] == "receipt" and record["pages"][0]["source"] == "text-layer"
    assert record["status"] == "pending_review" and record["decision"] == "review"  # a random model's answer
    assert record["review_request"][0]["fields"] == record["fields"]
    assert (service["data_dir"] / record["path"]).read_bytes() == pdf.read_bytes()  # named in the data folder,
    assert not Path(record["path"]).is_absolute()  # not by its server path
    pending = httpx.get(f"{url}/v1/documents", params={"status_": "pending_review"}, headers=auth).json()
    assert record["id"] in [d["thread_id"] for d in pending]
    assert all(not Path(d["path"]).is_absolute() for d in pending)
    again = httpx.post(
        f"{url}/v1/documents",
        headers=auth,
        timeout=300,
        files={"file": (pdf.name, pdf.read_bytes(), "application/pdf")},
        data={"model": tiny_model},
    )
    assert again.json()["cached"] is True and again.json()["id"] == record["id"]  # the same file: no second run

    fixes = {
        "company": "THE COPPER KETTLE CAFE",
        "date": "21/11/2026",
        "address": "3 Market Square, Cambridge",
        "total": "18.40",
    }
    done = httpx.post(
        f"{url}/v1/documents/{record['id']}/review",
        headers=auth,
        timeout=120,
        json={"fields": fixes, "reviewer": "ana", "note": "checked"},
    )
    assert done.status_code == 200, done.text
    final = done.json()
    assert final["status"] == "reviewed" and final["decision"] == "approve" and final["fields"] == fixes
    stats = httpx.get(f"{url}/v1/datasets/corrections-receipt", headers=auth).json()
    assert stats["examples"] == 1  # the correction became a labelled example
    assert httpx.get(f"{url}/v1/documents/{record['id']}", headers=auth).json()["status"] == "reviewed"
    twice = httpx.post(f"{url}/v1/documents/{record['id']}/review", headers=auth, json={"decision": "reject"})
    assert twice.status_code == 409 and "not waiting for review" in twice.json()["error"]


def test_text_in_json_with_a_forced_type(service, tiny_model):
    out = httpx.post(
        f"{service['url']}/v1/documents",
        headers=service["auth"],
        timeout=300,
        json={
            "text": "ACCOUNT STATEMENT\nOpening balance 10.00\nClosing balance 5.00",
            "type": "invoice",
            "model": tiny_model,
        },
    )
    assert out.status_code == 200, out.text
    assert out.json()["doc_type"] == "invoice" and out.json()["classification"]["given"] == "--type"


def test_bad_documents_say_what_is_wrong(service, tiny_model):
    url, auth = service["url"], service["auth"]
    odd = httpx.post(f"{url}/v1/documents", headers=auth, files={"file": ("sheet.xlsx", b"PK..", "application/zip")})
    assert odd.status_code == 422 and "sheet.xlsx" in odd.json()["error"] and ".pdf" in odd.json()["error"]
    broken = httpx.post(
        f"{url}/v1/documents",
        headers=auth,
        data={"model": tiny_model},
        files={"file": ("scan.pdf", b"%PDF-1.4 garbage", "application/pdf")},
    )
    assert broken.status_code == 422 and "scan.pdf" in broken.json()["error"]
    assert str(service["data_dir"]) not in broken.json()["error"] and "/documents/" not in broken.json()["error"]
    assert httpx.get(f"{url}/v1/documents/0123456789abcdef", headers=auth).status_code == 404
    wrong = httpx.post(f"{url}/v1/documents", headers=auth, json={"text": "x", "type": "memo"})
    assert wrong.status_code == 422
    unknown = httpx.post(f"{url}/v1/documents", headers=auth, json={"text": "x", "adapter": "nope"})
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]
