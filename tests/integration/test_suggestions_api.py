"""`GET /v1/datasets/{name}/suggestions` and `/v1/documents?order=value` on the real service (tiny
model): the documents it holds for review, most informative first, novelty against the dataset."""

from __future__ import annotations

import json

import httpx

KETTLE = "THE COPPER KETTLE CAFE\n3 Market Square, Cambridge\nTel 01223 555 0101\n"
SENDERS = {
    "known": KETTLE,
    "harbour": "HARBOUR HARDWARE LTD\n12 Quay Street, Bristol\nVAT GB123456789\n",
    "zephyr": "ZEPHYR AEROSPACE GMBH\nFlughafenstrasse 9, Stuttgart\nKantine Beleg\n",
}


def receipt(head: str, number: int) -> str:
    return f"{head}Receipt {number}\nDate 21/11/2026\nTOTAL {number % 50}.40\n"


def test_suggestions_order_the_held_documents_of_a_dataset(service, tiny_model):
    url, auth = service["url"], service["auth"]
    ids = {}
    for n, (name, head) in enumerate(SENDERS.items()):
        out = httpx.post(
            f"{url}/v1/documents",
            headers=auth,
            timeout=300,
            json={"text": receipt(head, 300 + n), "filename": f"{name}.txt", "type": "receipt", "model": tiny_model},
        )
        assert out.status_code == 200, out.text
        assert out.json()["status"] == "pending_review"  # a random model's answer is held
        ids[name] = out.json()["id"]
    unknown = httpx.get(f"{url}/v1/datasets/corrections-receipt/suggestions", headers=auth)
    assert unknown.status_code == 404 and "'corrections-receipt' does not exist" in unknown.json()["error"]

    examples = [{"text": receipt(KETTLE, n), "fields": {"company": "THE COPPER KETTLE CAFE"}} for n in (1, 2)]
    added = httpx.post(
        f"{url}/v1/datasets/corrections-receipt/examples",
        headers=auth,
        content="".join(json.dumps(e) + "\n" for e in examples),
    )
    assert added.status_code == 201, added.text

    found = httpx.get(f"{url}/v1/datasets/corrections-receipt/suggestions", headers=auth)
    assert found.status_code == 200, found.text
    rows = found.json()
    assert sorted(d["thread_id"] for d in rows) == sorted(ids.values())
    assert [d["score"] for d in rows] == sorted((d["score"] for d in rows), reverse=True)
    assert all(0 <= d["score"] <= 1 and d["reasons"] for d in rows)
    novelty = {d["thread_id"]: d["signals"]["novelty"] for d in rows}
    assert novelty[ids["known"]] < 0.2 < min(novelty[ids["harbour"]], novelty[ids["zephyr"]])

    first = httpx.get(f"{url}/v1/datasets/corrections-receipt/suggestions", params={"limit": 1}, headers=auth)
    assert [d["thread_id"] for d in first.json()] == [rows[0]["thread_id"]]
    listed = httpx.get(f"{url}/v1/documents", params={"status": "pending_review", "order": "value"}, headers=auth)
    assert [(d["thread_id"], d["score"]) for d in listed.json()] == [(d["thread_id"], d["score"]) for d in rows]

    assert httpx.get(f"{url}/v1/datasets/corrections-receipt/suggestions").status_code == 401
    bad = httpx.get(f"{url}/v1/datasets/corrections-receipt/suggestions", params={"limit": 0}, headers=auth)
    assert bad.status_code == 422
    none = httpx.get(f"{url}/v1/datasets/corrections-kyc/suggestions", headers=auth)
    assert none.status_code == 404  # no such dataset yet
