"""The exported workflows (workflows/*.json) in a real n8n 2.8.4 against the real service (tiny model):
document intake with the community node's credential and with core HTTP nodes only (record, human
review through the Wait node's resume URL, corrections dataset, JSONL store, notifications), and
continuous training (a train job whose callback resumes the Wait, an eval-gated promotion that moves
the alias or refuses).

Needs n8n from `scripts/install_n8n.sh`; skipped with the reason when it is not installed. One
`n8n start` serves the whole module.
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from n8n_server import find_n8n, load_workflow, running_n8n, wait_until

DOCS = [
    {"text": "ACME Tools Ltd\nInvoice 2024-117\nDate: 03/05/2024\nTotal due: 1,250.00",
     "fields": {"company": "ACME Tools Ltd", "date": "03/05/2024", "total": "1,250.00"}},
    {"text": "Kedai Runcit Maju\n12 Jalan Besar\n25/12/2018 8:13 PM\nTOTAL RM 9.00",
     "fields": {"company": "Kedai Runcit Maju", "date": "25/12/2018", "total": "9.00"}},
]
TRAIN = {"max_steps": 2, "batch_size": 1, "report_to": "none", "precision": "fp32", "val_fraction": 0.0,
         "save_every": 0, "warmup_ratio": 0.0}
INTAKE = {"node": "tunebridge/documents", "http": "tunebridge/documents-http"}


class Receiver:
    """Collects the workflows' notifications (JSON POSTs) on a loopback port."""

    def __init__(self):
        self.events: list[dict] = []
        events = self.events

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                events.append(json.loads(body or b"{}"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, event: str, timeout: float = 120, **match) -> dict:
        def found():
            return next((e for e in self.events if e.get("event") == event
                         and all(_get(e, k) == v for k, v in match.items())), None)

        return wait_until(found, timeout=timeout, what=f"notification {event} {match}")


def _get(event: dict, dotted: str):
    for part in dotted.split("__"):
        event = event.get(part) if isinstance(event, dict) else None
    return event


@pytest.fixture(scope="module")
def n8n_binary():
    binary, why = find_n8n()
    if binary is None:
        if os.environ.get("TUNEBRIDGE_REQUIRE_N8N"):  # CI installs n8n: a missing one is a failure there
            pytest.fail(f"TUNEBRIDGE_REQUIRE_N8N is set but {why}")
        pytest.skip(why)
    return binary


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def n8n(n8n_binary, service, receiver, tmp_path_factory):
    folder = tmp_path_factory.mktemp("n8n")
    store = folder / "store"
    store.mkdir()
    with running_n8n(n8n_binary, folder, env={"N8N_RESTRICT_FILE_ACCESS_TO": str(store)}) as n8n:
        node_cred = n8n.create_credential("Tunebridge API", "tunebridgeApi", {
            "baseUrl": service["url"], "apiKey": service["key"], "allowedHttpRequestDomains": "all"})
        header_cred = n8n.create_credential("Tunebridge API key (header)", "httpHeaderAuth", {
            "name": "Authorization", "value": f"Bearer {service['key']}"})
        credentials = {"tunebridgeApi": {"id": node_cred["id"], "name": node_cred["name"]},
                       "httpHeaderAuth": {"id": header_cred["id"], "name": header_cred["name"]}}
        settings = {"base_url": service["url"], "store_dir": str(store)}
        ids = {}
        for filename in ("document-intake.json", "document-intake-http.json", "continuous-training.json"):
            workflow = n8n.create_workflow(load_workflow(filename, credentials=credentials, settings=settings))
            assert n8n.activate(workflow["id"])["active"] is True
            ids[filename] = workflow["id"]
        for path in (*INTAKE.values(), "tunebridge/train"):
            wait_until(lambda p=path: n8n.webhook_ready(p), timeout=60, what=f"webhook {path}")
        yield {"n8n": n8n, "store": store / "documents.jsonl", "ids": ids}


def _store_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _examples(service, dataset: str) -> int:
    r = httpx.get(f"{service['url']}/v1/datasets/{dataset}", headers=service["auth"])
    return r.json()["examples"] if r.status_code == 200 else 0


def _intake_round_trip(n8n, service, receiver, path: str, text: str, fixes: dict) -> None:
    url, auth = service["url"], service["auth"]
    before = _examples(service, "corrections-receipt")
    answer = httpx.post(f"{n8n['n8n'].url}/webhook/{path}", timeout=300,
                        json={"text": text, "type": "receipt", "notify_url": receiver.url})
    assert answer.status_code == 200, answer.text
    record = answer.json()
    backend = httpx.get(f"{url}/v1/documents/{record['id']}", headers=auth).json()
    assert backend["doc_type"] == record["doc_type"] == "receipt"  # `type` reached the service
    assert backend["status"] == record["status"] and backend["fields"] == record["fields"]

    if record["status"] == "pending_review":  # the tiny random model's usual answer
        assert record["resume_url"].startswith(f"{n8n['n8n'].url}/webhook-waiting/")
        asked = receiver.wait("document.review_requested", id=record["id"])
        assert asked["resume_url"] == record["resume_url"] and asked["fields"] == record["fields"]
        assert asked["review_request"] == record["review_request"]
        assert not any(line["id"] == record["id"] for line in _store_lines(n8n["store"]))  # held, not stored
        resumed = httpx.post(record["resume_url"], timeout=60,
                             json={"fields": fixes, "reviewer": "n8n-test", "note": "checked in n8n"})
        assert resumed.status_code == 200, resumed.text
        stored = receiver.wait("document.stored", record__id=record["id"], record__status="reviewed")
        final = httpx.get(f"{url}/v1/documents/{record['id']}", headers=auth).json()
        assert final["status"] == "reviewed" and final["fields"] == fixes and final["decision"] == "approve"
        assert stored["record"]["fields"] == fixes and stored["store_file"] == str(n8n["store"])
        assert _examples(service, "corrections-receipt") == before + 1  # the correction became an example
        line = next(x for x in _store_lines(n8n["store"]) if x["id"] == record["id"])
        assert line["status"] == "reviewed" and line["decision"] == "approve" and line["fields"] == fixes

        # the same document again: the service answers its finished record, stored without a review
        again = httpx.post(f"{n8n['n8n'].url}/webhook/{path}", timeout=300,
                           json={"text": text, "type": "receipt", "notify_url": receiver.url}).json()
        assert again["cached"] is True and again["status"] == "reviewed" and again["resume_url"] is None
        receiver.wait("document.stored", record__id=record["id"], record__cached=True)
        lines = [x for x in _store_lines(n8n["store"]) if x["id"] == record["id"]]
        assert [x["cached"] for x in lines] == [False, True]
    else:  # decided without a person: stored straight away
        assert record["resume_url"] is None
        stored = receiver.wait("document.stored", record__id=record["id"])
        assert stored["record"]["decision"] == record["decision"]
        assert any(x["id"] == record["id"] for x in _store_lines(n8n["store"]))


def test_document_intake_with_the_community_node_credential(n8n, service, receiver):
    text = "THE COPPER KETTLE CAFE\n3 Market Square, Cambridge\n21/11/2026 09:14\nFlat white 3.40\nTOTAL 18.40"
    fixes = {"company": "THE COPPER KETTLE CAFE", "date": "21/11/2026", "address": "3 Market Square, Cambridge",
             "total": "18.40"}
    _intake_round_trip(n8n, service, receiver, INTAKE["node"], text, fixes)


def test_document_intake_with_core_http_nodes_only(n8n, service, receiver):
    text = "Kedai Runcit Maju\n12 Jalan Besar, Kuala Lumpur\n25/12/2018 8:13 PM\nTOTAL RM 9.00"
    fixes = {"company": "Kedai Runcit Maju", "date": "25/12/2018", "address": "12 Jalan Besar, Kuala Lumpur",
             "total": "9.00"}
    _intake_round_trip(n8n, service, receiver, INTAKE["http"], text, fixes)


def test_a_file_upload_takes_the_multipart_branch(n8n, service, receiver):
    pdf = Path(__file__).resolve().parents[1] / "examples" / "documents" / "receipt_01_copper_kettle.pdf"
    answer = httpx.post(f"{n8n['n8n'].url}/webhook/{INTAKE['node']}", timeout=300,
                        files={"file": (pdf.name, pdf.read_bytes(), "application/pdf")},
                        data={"type": "receipt", "notify_url": receiver.url})
    assert answer.status_code == 200, answer.text
    record = answer.json()
    assert record["doc_type"] == "receipt" and record["pages"][0]["source"] == "text-layer"  # the PDF itself
    backend = httpx.get(f"{service['url']}/v1/documents/{record['id']}", headers=service["auth"]).json()
    assert backend["status"] == record["status"]
    if record["status"] == "pending_review":
        receiver.wait("document.review_requested", id=record["id"])


def test_continuous_training_waits_for_the_callback_and_gates_the_promotion(n8n, service, receiver):
    url, auth = service["url"], service["auth"]
    body = "\n".join(json.dumps(d) for d in DOCS).encode()
    for name in ("n8n-rx", "n8n-rx-eval"):
        assert httpx.post(f"{url}/v1/datasets/{name}/examples", content=body, headers=auth).status_code == 201
    request = {"dataset": "n8n-rx", "eval_dataset": "n8n-rx-eval", "adapter_name": "n8n-rx", "alias": "prod",
               "hyperparameters": TRAIN, "eval_limit": 2, "notify_url": receiver.url}
    hook = f"{n8n['n8n'].url}/webhook/tunebridge/train"

    first = httpx.post(hook, json={**request, "min_gain": 0}, timeout=60)
    assert first.status_code == 202, first.text
    job = first.json()["train_job"]
    assert job["kind"] == "train" and job["callback"]["url"] == first.json()["resume_url"]
    promoted = receiver.wait("training.promoted", timeout=240, train_job=job["id"])
    assert promoted["adapter"] == "n8n-rx@1" and promoted["alias"] == "prod"
    assert promoted["decision"]["promote"] is True and promoted["decision"]["candidate"] == "n8n-rx@1"
    assert httpx.get(f"{url}/v1/adapters/n8n-rx@prod", headers=auth).json()["id"] == "n8n-rx@1"
    eval_job = httpx.get(f"{url}/v1/jobs/{promoted['eval_job']}", headers=auth).json()
    assert eval_job["kind"] == "eval" and eval_job["callback"]["state"] == "delivered"

    # a second version must beat the first by 0.5 micro-F1: refused, the alias stays, the report is sent
    second = httpx.post(hook, json={**request, "min_gain": 0.5}, timeout=60)
    assert second.status_code == 202, second.text
    refused = receiver.wait("training.not_promoted", timeout=240, decision__candidate="n8n-rx@2")
    assert refused["decision"]["promote"] is False and refused["decision"]["incumbent"] == "n8n-rx@1"
    assert any("below the required +0.5000" in r for r in refused["decision"]["reasons"])
    assert set(refused["report"]) == {"n8n-rx@1", "n8n-rx@2"} and "report.md" in refused["artifacts"]
    assert httpx.get(f"{url}/v1/adapters/n8n-rx@prod", headers=auth).json()["id"] == "n8n-rx@1"
