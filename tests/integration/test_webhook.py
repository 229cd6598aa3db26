"""The labelled-data webhook against the real service: signatures, replays, threshold-triggered training."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from servers import WEBHOOK_SECRET, wait_for

THRESHOLD = 3  # TUNEBRIDGE_TRAIN_THRESHOLD of the `service` fixture


def _example(i: int) -> dict:
    return {"text": f"Shop {i} receipt total {i}.00", "fields": {"company": f"Shop {i}", "total": f"{i}.00"}}


def _deliver(
    service,
    payload: dict | bytes,
    *,
    delivery: str | None = None,
    secret: str = WEBHOOK_SECRET,
    signature: str | None = None,
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-Tunebridge-Delivery": delivery or uuid.uuid4().hex}
    sig = (
        signature if signature is not None else "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    )
    if sig:
        headers["X-Tunebridge-Signature"] = sig
    return httpx.post(f"{service['url']}/v1/webhooks/labelled-data", content=body, headers=headers)


def _stored(service, dataset: str) -> int:
    path = service["data_dir"] / "datasets" / f"{dataset}.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _jobs_of(service, dataset: str) -> list[dict]:
    return [
        j for j in httpx.get(f"{service['url']}/v1/jobs", headers=service["auth"]).json() if j["dataset"] == dataset
    ]


def test_a_signed_delivery_is_stored(service):
    response = _deliver(service, {"dataset": "hook-a", "examples": [_example(1)]}, delivery="d-1")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["delivery"] == "d-1" and body["added"] == 1 and body["total"] == 1 and body["job"] is None
    assert _stored(service, "hook-a") == 1


@pytest.mark.parametrize(
    "signature,message",
    [
        ("", "missing X-Tunebridge-Signature"),
        ("sha256=" + "0" * 64, "signature does not match"),
        ("md5=abc", "must look like 'sha256=<hex>'"),
    ],
)
def test_a_missing_or_wrong_signature_is_refused_and_stores_nothing(service, signature, message):
    response = _deliver(service, {"dataset": "hook-bad", "examples": [_example(1)]}, signature=signature)
    assert response.status_code == 401 and message in response.json()["error"]
    assert _stored(service, "hook-bad") == 0


def test_a_body_signed_with_another_secret_is_refused(service):
    response = _deliver(service, {"dataset": "hook-bad", "examples": [_example(1)]}, secret="not-the-secret")
    assert response.status_code == 401 and _stored(service, "hook-bad") == 0


def test_a_replayed_delivery_is_stored_once(service):
    payload = {"dataset": "hook-replay", "examples": [_example(1), _example(2)]}
    first = _deliver(service, payload, delivery="replay-1")
    again = _deliver(service, payload, delivery="replay-1")
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["duplicate"] is True and again.json()["added"] == 2
    assert _stored(service, "hook-replay") == 2


def test_concurrent_replays_store_once(service):
    payload = {"dataset": "hook-race", "examples": [_example(1)]}
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda _: _deliver(service, payload, delivery="race-1").status_code, range(6)))
    assert sorted(codes) == [200] * 5 + [202] and _stored(service, "hook-race") == 1


def test_the_threshold_starts_exactly_one_training_job(service):
    first = _deliver(service, {"dataset": "hook-train", "examples": [_example(1), _example(2)]}).json()
    assert first["job"] is None  # 2 new examples < threshold 3
    second = _deliver(service, {"dataset": "hook-train", "example": _example(3)}).json()
    assert second["job"] is not None  # 3 new examples: train
    third = _deliver(service, {"dataset": "hook-train", "examples": [_example(i) for i in range(4, 8)]}).json()
    jobs = _jobs_of(service, "hook-train")
    if third["job"] is None:  # the first job was still queued or running: no second one
        assert [j["id"] for j in jobs] == [second["job"]]
    events = httpx.get(f"{service['url']}/v1/jobs/{second['job']}/events", headers=service["auth"]).json()
    triggered = next(e for e in events if e["type"] == "triggered")
    assert triggered["data"]["delivery"] == second["delivery"] and triggered["data"]["new_examples"] == 3


def test_concurrent_deliveries_past_the_threshold_start_one_job(service):
    payloads = [{"dataset": "hook-burst", "examples": [_example(i), _example(i + 100)]} for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        outcomes = [r.json() for r in pool.map(lambda p: _deliver(service, p), payloads)]
    started = [o["job"] for o in outcomes if o["job"]]
    assert len(started) == 1 and [j["id"] for j in _jobs_of(service, "hook-burst")] == started
    assert _stored(service, "hook-burst") == 12
    job = wait_for(
        lambda: (
            (j := httpx.get(f"{service['url']}/v1/jobs/{started[0]}", headers=service["auth"]).json())["status"]
            in ("succeeded", "failed")
            and j
        ),
        timeout=300,
    )
    assert job["status"] == "succeeded" and job["result"]["adapter"] == "hook-burst@1", job["error"]


@pytest.mark.parametrize(
    "payload,delivery,message",
    [
        (b"{not json", "x-1", "body is not JSON"),
        ({"examples": [{"text": "a", "fields": {"b": "c"}}]}, "x-2", "field 'dataset'"),
        (
            {"dataset": "../etc", "examples": [{"text": "a", "fields": {"b": "c"}}]},
            "x-3",
            "dataset name '../etc' is invalid",
        ),
        ({"dataset": "hook-x", "examples": []}, "x-4", "non-empty list"),
        ({"dataset": "hook-x", "example": {"text": "a"}, "examples": []}, "x-5", "exactly one of"),
        ({"dataset": "hook-x", "examples": [{"text": "a", "fields": {"b": "c"}}]}, "", "delivery id"),
        ({"dataset": "hook-x", "examples": [{"text": "a", "fields": {"b": "c"}}]}, "bad id!", "delivery id"),
    ],
)
def test_malformed_deliveries_say_what_is_wrong(service, payload, delivery, message):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "X-Tunebridge-Signature": "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    }
    if delivery:
        headers["X-Tunebridge-Delivery"] = delivery
    response = httpx.post(f"{service['url']}/v1/webhooks/labelled-data", content=body, headers=headers)
    assert response.status_code == 422 and message in response.json()["error"], response.text
    assert _stored(service, "hook-x") == 0


def test_an_invalid_example_names_its_index_and_stores_nothing(service):
    payload = {"dataset": "hook-x", "examples": [_example(1), {"text": "no fields"}, _example(3)]}
    response = _deliver(service, payload)
    assert response.status_code == 422
    assert [i["where"] for i in response.json()["issues"]] == ["examples[1]"]
    assert _stored(service, "hook-x") == 0


def test_a_delivery_nested_too_deeply_is_refused_not_a_500(service):
    body = b'{"dataset": "hook-deep", "examples": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = _deliver(service, body)
    assert response.status_code == 422 and "nested too deeply" in response.json()["error"]
    assert _stored(service, "hook-deep") == 0
