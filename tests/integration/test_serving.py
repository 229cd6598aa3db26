"""Train through the API, then serve: adapter registry, OpenAI-compatible chat (the openai SDK),
/v1/infer, /v1/extract, job events and signed callbacks — all against the real service process."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest

from conftest import SECRET_A, SECRET_Q
from servers import WEBHOOK_SECRET, free_port, wait_for

INVOICE = "ACME Tools Ltd\nInvoice 2024-117\nDate: 03/05/2024\nTotal due: 1,250.00"
GOLD = {"company": "ACME Tools Ltd", "date": "03/05/2024", "total": "1,250.00"}
MEMO_PARAMS = {
    "max_steps": 80,
    "batch_size": 1,
    "learning_rate": 0.02,
    "report_to": "none",
    "precision": "fp32",
    "val_fraction": 0.0,
    "save_every": 0,
    "warmup_ratio": 0.0,
}


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append({"headers": dict(self.headers), "body": body})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def receiver():
    """A real HTTP server in this process that records the callbacks it gets."""
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"url": f"http://127.0.0.1:{port}/resume/abc", "received": _Receiver.received}
    server.shutdown()


def _train(service, dataset: str, lines: list[dict], *, adapter_name: str, params: dict, callback_url=None) -> dict:
    url, auth = service["url"], service["auth"]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    assert httpx.post(f"{url}/v1/datasets/{dataset}/examples", content=body, headers=auth).status_code == 201
    request = {"kind": "train", "dataset": dataset, "hyperparameters": params, "adapter_name": adapter_name}
    if callback_url:
        request["callback_url"] = callback_url
    created = httpx.post(f"{url}/v1/jobs", json=request, headers=auth)
    assert created.status_code == 202, created.text
    job = wait_for(
        lambda: (
            (j := httpx.get(f"{url}/v1/jobs/{created.json()['id']}", headers=auth).json())["status"]
            in ("succeeded", "failed")
            and j
        )
    )
    assert job["status"] == "succeeded", job["error"]
    return job


@pytest.fixture(scope="module")
def memo(service, receiver):
    """An adapter that memorised one chat answer and one extraction (80 steps on the tiny model)."""
    chat = {"messages": [{"role": "user", "content": SECRET_Q}, {"role": "assistant", "content": SECRET_A}]}
    extraction = {"text": INVOICE, "fields": GOLD}
    return _train(
        service, "memo", [chat, extraction], adapter_name="memo", params=MEMO_PARAMS, callback_url=receiver["url"]
    )


def _client(service) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{service['url']}/v1", api_key=service["key"], max_retries=0)


def test_a_finished_job_registers_a_versioned_adapter(service, memo):
    assert memo["result"]["adapter"] == "memo@1" and memo["adapter_name"] == "memo"
    record = httpx.get(f"{service['url']}/v1/adapters/memo", headers=service["auth"]).json()
    assert record["id"] == "memo@1" and record["job_id"] == memo["id"] and record["dataset"] == "memo"
    assert record["schema"] == ["company", "date", "total"]
    snapshot = service["data_dir"] / "jobs" / memo["id"] / "data.jsonl"
    assert record["dataset_hash"] == hashlib.sha256(snapshot.read_bytes()).hexdigest()
    assert record["metrics"]["steps"] == 80 and record["metrics"]["final_loss"] is not None
    assert (service["data_dir"] / "adapters" / "memo" / "v1" / "adapter" / "adapter_model.safetensors").is_file()
    models = [m.id for m in _client(service).models.list().data]
    assert {"memo", "memo@1"} <= set(models)


def test_openai_sdk_chats_with_the_adapter_and_the_base(service, memo, tiny_model):
    client = _client(service)
    answer = client.chat.completions.create(
        model="memo", messages=[{"role": "user", "content": SECRET_Q}], max_tokens=48
    )
    assert answer.choices[0].message.content == SECRET_A
    assert answer.choices[0].finish_reason == "stop" and answer.model == "memo@1"
    assert answer.usage.completion_tokens > 0 and answer.usage.prompt_tokens > 0
    base = client.chat.completions.create(
        model=tiny_model, messages=[{"role": "user", "content": SECRET_Q}], max_tokens=48
    )
    assert base.choices[0].message.content != SECRET_A  # same process, adapters switched off
    again = client.chat.completions.create(
        model="memo@1", messages=[{"role": "user", "content": SECRET_Q}], max_tokens=48
    )
    assert again.choices[0].message.content == SECRET_A  # and back on, without reloading the base


def test_streaming_gives_the_same_answer_in_pieces(service, memo):
    stream = _client(service).chat.completions.create(
        model="memo", messages=[{"role": "user", "content": SECRET_Q}], max_tokens=48, stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip() == SECRET_A
    assert sum(1 for c in chunks if c.choices[0].delta.content) > 1
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_concurrent_requests_are_batched_and_each_gets_its_answer(service, memo):
    client = _client(service)
    questions = [SECRET_Q] * 6

    def ask(question):
        return (
            client.chat.completions.create(
                model="memo", messages=[{"role": "user", "content": question}], max_tokens=48
            )
            .choices[0]
            .message.content
        )

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(ask, questions)) == [SECRET_A] * 6


def test_stop_strings_cut_the_answer(service, memo):
    out = httpx.post(
        f"{service['url']}/v1/infer",
        headers=service["auth"],
        json={"prompt": SECRET_Q, "adapter": "memo", "stop": ["pineapple"], "max_tokens": 48},
    ).json()
    assert out["text"] == SECRET_A[: SECRET_A.index("pineapple")].strip() and out["finish_reason"] == "stop"


def test_extract_uses_the_training_template_and_schema(service, memo):
    out = httpx.post(
        f"{service['url']}/v1/extract", headers=service["auth"], json={"text": INVOICE, "adapter": "memo@1"}
    ).json()
    assert out["fields"] == GOLD and out["valid_json"] is True and out["missing"] == [] and out["constrained"]
    for name, value in GOLD.items():  # each value points at its characters in the document
        span = out["grounding"][name]
        assert INVOICE[span["start"] : span["end"]] == value and span["match"] in ("exact", "token", "number")
        assert 0 < out["confidence"][name] <= 1
    assert out["usage"]["forced_tokens"] > 0
    listed = httpx.post(
        f"{service['url']}/v1/extract",
        headers=service["auth"],
        json={"text": INVOICE, "adapter": "memo", "schema": ["company", "date", "total"]},
    ).json()
    assert listed["fields"] == GOLD
    free = httpx.post(
        f"{service['url']}/v1/extract",
        headers=service["auth"],
        json={"text": INVOICE, "adapter": "memo", "constrained": False},
    ).json()
    assert free["fields"] == GOLD and free["constrained"] is False


def test_extract_marks_each_field_by_the_thresholds_stored_with_the_adapter(service, memo):
    """An adapter folder with thresholds.json: each field auto or review in `automation`; without the
    file the answer is what it was before."""
    from backend.labels.thresholds import FILE, fit_thresholds

    folder = service["data_dir"] / "adapters" / "memo" / "v1" / "adapter"
    # company: any confidence found in the document is trusted; date and total: too few held-out
    # answers for a threshold, so always review
    fit_thresholds({"company": [(0.001, True)] * 300, "date": [(0.9, True)] * 20, "total": []}).save(folder)
    try:
        out = httpx.post(
            f"{service['url']}/v1/extract", headers=service["auth"], json={"text": INVOICE, "adapter": "memo@1"}
        ).json()
        assert out["fields"] == GOLD and out["checks"] == {}  # every value reads as its kind
        assert out["automation"] == {"company": "auto", "date": "review", "total": "review"}
        assert out["target_precision"] == 0.99 and out["review"] == ["date", "total"]
    finally:
        (folder / FILE).unlink()
    before = httpx.post(
        f"{service['url']}/v1/extract", headers=service["auth"], json={"text": INVOICE, "adapter": "memo@1"}
    ).json()
    assert "automation" not in before and "target_precision" not in before and before["fields"] == GOLD


def test_extract_ranks_amounts_and_dates_by_default_where_the_adapter_learned_label_rules(service, memo):
    """With label conventions beside the adapter, a request that leaves `rank` out gets typed ranking;
    `"rank": false` switches it off. Without them (the test above) nothing is ranked and nothing fails."""
    from backend.labels.conventions import FILE, learn

    folder = service["data_dir"] / "adapters" / "memo" / "v1" / "adapter"
    invoices = [
        (
            f"SHOP {n} Ltd\nInvoice 2024-{n}\nDate: 0{n % 9 + 1}/05/2024\nTotal due: 1,2{n % 10}0.00",
            {"company": f"SHOP {n} Ltd", "date": f"0{n % 9 + 1}/05/2024", "total": f"1,2{n % 10}0.00"},
        )
        for n in range(12)
    ]
    learn(invoices, memory=False).save(folder)
    url, auth = f"{service['url']}/v1/extract", service["auth"]
    try:
        ranked = httpx.post(url, headers=auth, json={"text": INVOICE, "adapter": "memo@1"}).json()
        assert set(ranked["ranking"]) == {"date", "total"} and ranked["fields"] == GOLD
        for d in ranked["ranking"].values():  # every answer is printed: nothing to decide, nothing changed
            assert d["choice"] == d["free"] and d["candidates"] == 0
        off = httpx.post(url, headers=auth, json={"text": INVOICE, "adapter": "memo@1", "rank": False}).json()
        assert "ranking" not in off and off["fields"] == GOLD
    finally:
        (folder / FILE).unlink()


def test_constrained_extraction_is_valid_even_from_an_untrained_model(service, tiny_model):
    schema = {
        "type": "object",
        "properties": {
            "vendor": {"type": "string", "maxLength": 40},
            "total": {"type": "number"},
            "currency": {"enum": ["MYR", "USD"]},
        },
        "required": ["vendor", "total", "currency"],
    }
    out = httpx.post(
        f"{service['url']}/v1/extract",
        headers=service["auth"],
        json={"text": INVOICE, "model": tiny_model, "schema": schema},
    ).json()
    assert out["valid_json"] is True and out["finish_reason"] == "stop", out
    answer = json.loads(out["raw"])
    assert set(answer) == {"vendor", "total", "currency"} and answer["currency"] in ("MYR", "USD")
    assert isinstance(answer["total"], (int, float))
    assert set(out["review"]) <= {"vendor", "total", "currency"}


def test_job_events_as_json_and_as_server_sent_events(service, memo):
    url, auth = service["url"], service["auth"]
    events = httpx.get(f"{url}/v1/jobs/{memo['id']}/events", headers=auth).json()
    types = [e["type"] for e in events]
    assert types[:2] == ["queued", "started"] and "succeeded" in types
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    progress = [e["data"]["step"] for e in events if e["type"] == "progress"]
    assert progress and progress[-1] == 80 and progress == sorted(progress)
    with httpx.stream(
        "GET", f"{url}/v1/jobs/{memo['id']}/events", headers={**auth, "Accept": "text/event-stream"}, timeout=30
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        streamed = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in streamed][: len(types)] == types


def test_the_callback_is_signed_and_names_the_outcome(service, memo, receiver):
    got = wait_for(
        lambda: [r for r in receiver["received"] if r["headers"].get("X-Tunebridge-Delivery") == memo["id"]], timeout=30
    )
    assert len(got) == 1
    body, headers = got[0]["body"], got[0]["headers"]
    expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Tunebridge-Signature"] == expected
    payload = json.loads(body)
    assert payload["event"] == "job.succeeded" and payload["job"]["result"]["adapter"] == "memo@1"
    job = wait_for(
        lambda: (
            (j := httpx.get(f"{service['url']}/v1/jobs/{memo['id']}", headers=service["auth"]).json())["callback"][
                "state"
            ]
            == "delivered"
            and j
        ),
        timeout=30,
    )
    assert job["callback"]["attempts"] == 1


def test_promote_roll_back_and_refuse_to_delete_what_is_in_use(service, memo):
    url, auth = service["url"], service["auth"]
    short = {**MEMO_PARAMS, "max_steps": 2}
    second = _train(service, "memo", [{"prompt": "p", "completion": "c"}], adapter_name="memo", params=short)
    assert second["result"]["adapter"] == "memo@2"
    assert httpx.put(f"{url}/v1/adapters/memo/aliases/prod", json={"version": 1}, headers=auth).json()["version"] == 1
    promoted = httpx.put(f"{url}/v1/adapters/memo/aliases/prod", json={"version": 2, "reason": "newer"}, headers=auth)
    assert promoted.json()["version"] == 2
    assert httpx.get(f"{url}/v1/adapters/memo@prod", headers=auth).json()["id"] == "memo@2"
    rolled = httpx.post(f"{url}/v1/adapters/memo/aliases/prod/rollback", headers=auth).json()
    assert rolled["version"] == 1 and rolled["history"][0]["reason"] == "rolled back from version 2"
    answer = _client(service).chat.completions.create(
        model="memo@prod", messages=[{"role": "user", "content": SECRET_Q}], max_tokens=48
    )
    assert answer.choices[0].message.content == SECRET_A and answer.model == "memo@1"
    refused = httpx.delete(f"{url}/v1/adapters/memo/versions/1", headers=auth)
    assert refused.status_code == 409 and "alias" in refused.json()["error"]
    assert httpx.delete(f"{url}/v1/adapters/memo/versions/2", headers=auth).status_code == 204
    assert httpx.get(f"{url}/v1/adapters/memo@2", headers=auth).status_code == 404
    assert not (service["data_dir"] / "adapters" / "memo" / "v2").exists()
    assert httpx.get(f"{url}/v1/adapters/memo", headers=auth).json()["id"] == "memo@1"


@pytest.mark.parametrize(
    "body,code,message",
    [
        ({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}, 404, "model 'nope' not found"),
        ({"model": "memo@9", "messages": [{"role": "user", "content": "hi"}]}, 404, "not found"),
        ({"model": "memo", "messages": []}, 422, "messages: List should have at least 1 item"),
        ({"model": "memo", "messages": [{"role": "robot", "content": "hi"}]}, 422, "messages.0.role: Input should be"),
        ({"model": "memo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**6}, 422, "the limit is"),
        ({"model": "memo", "messages": [{"role": "user", "content": "hi"}], "n": 2}, 422, "n: Input should be less"),
        ({"model": "memo", "messages": [{"role": "user", "content": "total " * 3000}]}, 422, "prompt of"),
    ],
)
def test_bad_chat_requests_say_what_is_wrong(service, memo, body, code, message):
    response = httpx.post(f"{service['url']}/v1/chat/completions", json=body, headers=service["auth"])
    assert response.status_code == code and message in response.json()["error"]["message"], response.text


@pytest.mark.parametrize(
    "body,message",
    [
        ({"text": "x", "model": "__tiny__"}, "no training schema"),
        ({"text": "x", "adapter": "memo", "schema": "passport"}, "expected one of ['invoice', 'receipt']"),
        ({"text": "x", "adapter": "memo", "schema": {"type": "object"}}, "non-empty 'properties'"),
        ({"text": "", "adapter": "memo"}, "invalid request"),
        ({"text": "x", "adapter": "memo", "schema": []}, "non-empty strings"),
        ({"text": "x", "adapter": "memo", "rank": "typed"}, "has no label conventions"),  # one record: nothing learned
        ({"text": "x", "adapter": "memo", "rank": "best"}, "rank"),
        ({"text": "x", "adapter": "memo", "rank": "typed", "constrained": False}, "needs constrained decoding"),
    ],
)
def test_bad_extract_requests_say_what_is_wrong(service, memo, tiny_model, body, message):
    body = {k: (tiny_model if v == "__tiny__" else v) for k, v in body.items()}
    response = httpx.post(f"{service['url']}/v1/extract", json=body, headers=service["auth"])
    assert response.status_code == 422 and message in json.dumps(response.json()), response.text


def test_an_unknown_adapter_is_a_404_for_the_openai_sdk(service):
    with pytest.raises(openai.NotFoundError) as missing:
        _client(service).chat.completions.create(model="ghost", messages=[{"role": "user", "content": "hi"}])
    assert "ghost" in missing.value.body["message"] and missing.value.body["code"] == "model_not_found"
    assert "ghost" in str(missing.value)  # the SDK shows the message, not a bare status code


def test_openai_errors_carry_their_message_and_parameter(service, memo, tiny_model):
    client = _client(service)
    with pytest.raises(openai.UnprocessableEntityError) as tools:
        client.chat.completions.create(
            model="memo",
            messages=[{"role": "user", "content": "hi"}],
            tools=[{"type": "function", "function": {"name": "f g", "parameters": {"type": "object"}}}],
        )
    assert "1-64 letters" in tools.value.body["message"] and tools.value.body["param"] == "tools[0].function.name"
    with pytest.raises(openai.UnprocessableEntityError) as tool_turn:
        client.chat.completions.create(model="memo", messages=[{"role": "tool", "content": "42"}])
    assert "tool_call_id: required on a tool message" in tool_turn.value.body["message"]
    developer = client.chat.completions.create(
        model="memo",
        max_tokens=4,
        messages=[{"role": "developer", "content": "Answer briefly."}, {"role": "user", "content": "hi"}],
    )
    assert developer.choices[0].message.content is not None  # read as a system message
    assert client.models.retrieve("memo").id == "memo" and client.models.retrieve(tiny_model).owned_by == "local"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("ghost")


def test_every_v1_route_refuses_a_missing_key(service):
    spec = httpx.get(f"{service['url']}/openapi.json").json()
    checked = 0
    for path, methods in spec["paths"].items():
        if not path.startswith("/v1/") or path.startswith("/v1/webhooks/"):
            continue
        concrete = path.replace("{", "").replace("}", "")
        for method in methods:
            response = httpx.request(method.upper(), f"{service['url']}{concrete}", json={})
            assert response.status_code == 401, (method, path, response.status_code)
            checked += 1
    assert checked >= 18


def test_big_json_bodies_are_refused_before_reading(service):
    big = {"model": "memo", "messages": [{"role": "user", "content": "x" * (1024 * 1024)}]}
    response = httpx.post(f"{service['url']}/v1/chat/completions", json=big, headers=service["auth"])
    assert response.status_code == 413 and "exceeds the limit" in response.json()["error"]["message"]


def test_a_reused_version_number_never_serves_the_old_weights(service):
    """Delete name@1, train name again: the new name@1 answers with the new weights, in the same
    server process that had the old ones loaded."""
    url, auth = service["url"], service["auth"]
    client = _client(service)
    old_answer, new_answer = SECRET_A, "The secret word is mango-7."

    def memorise(answer: str) -> None:
        chat = {"messages": [{"role": "user", "content": SECRET_Q}, {"role": "assistant", "content": answer}]}
        job = _train(service, "reuse", [chat], adapter_name="reuse", params=MEMO_PARAMS)
        assert job["result"]["adapter"] == "reuse@1"

    def ask() -> str:
        return (
            client.chat.completions.create(
                model="reuse@1", messages=[{"role": "user", "content": SECRET_Q}], max_tokens=48
            )
            .choices[0]
            .message.content
        )

    memorise(old_answer)
    assert ask() == old_answer
    assert httpx.delete(f"{url}/v1/adapters/reuse/versions/1", headers=auth).status_code == 204
    path = service["data_dir"] / "datasets" / "reuse.jsonl"
    path.write_text("")  # start the dataset over (the file only; its count does not matter here)
    memorise(new_answer)
    assert ask() == new_answer


def test_concurrent_extractions_are_batched_and_one_bad_document_fails_alone(service, tiny_model):
    """Six requests at once: they share batches (and the cached prompt prefix); the one whose prompt
    cannot fit the model's context gets its own 422 and the others their answers."""
    url, auth = service["url"], service["auth"]
    before = httpx.get(f"{url}/v1/serving", headers=auth).json()
    texts = [INVOICE, INVOICE.upper(), INVOICE.lower(), "x " * 6000, INVOICE + "\nPaid.", INVOICE[:40]]

    def post(text: str) -> httpx.Response:
        return httpx.post(
            f"{url}/v1/extract",
            headers=auth,
            timeout=120,
            json={"text": text, "model": tiny_model, "schema": ["vendor", "total"]},
        )

    with ThreadPoolExecutor(len(texts)) as pool:
        responses = list(pool.map(post, texts))
    assert [r.status_code for r in responses] == [200, 200, 200, 422, 200, 200], [r.text for r in responses]
    assert "TUNEBRIDGE_MAX_PROMPT_TOKENS" in responses[3].text, responses[3].text  # refused before it was queued
    assert all(r.json()["valid_json"] for r in responses if r.status_code == 200)
    after = httpx.get(f"{url}/v1/serving", headers=auth).json()
    assert after["requests"] - before["requests"] >= 5 and after["largest_batch"] >= 2, (
        after
    )  # the bad one never queued
    # how the five were cut into batches depends on the machine's speed; each batch read its prompt prefix
    # from the cache (computed once per prefix), and the same document alone twice reads it the second time
    assert all(r.json()["usage"]["cached_prompt_tokens"] > 0 for r in responses if r.status_code == 200)
    assert sum(after["prefix_cache"].values()) > sum(before["prefix_cache"].values()), after  # hits + misses
    assert post(INVOICE).status_code == 200
    again = post(INVOICE)
    assert again.json()["usage"]["cached_prompt_tokens"] > 0
    last = httpx.get(f"{url}/v1/serving", headers=auth).json()
    assert last["prefix_cache"]["hits"] > after["prefix_cache"]["hits"], last


def test_extract_takes_a_schema_as_pydantic_writes_it(service, tiny_model):

    from pydantic import BaseModel, Field

    class Party(BaseModel):
        name: str = Field(max_length=30)

    class Doc(BaseModel):
        seller: Party
        total: float | None = None

    out = httpx.post(
        f"{service['url']}/v1/extract",
        headers=service["auth"],
        timeout=120,
        json={"text": INVOICE, "model": tiny_model, "schema": Doc.model_json_schema()},
    )
    assert out.status_code == 200, out.text
    Doc.model_validate_json(out.json()["raw"])
    bad = httpx.post(
        f"{service['url']}/v1/extract",
        headers=service["auth"],
        json={
            "text": INVOICE,
            "model": tiny_model,
            "schema": {"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}},
        },
    )
    assert bad.status_code == 422 and "Missing" in bad.json()["error"]


def test_oversized_requests_are_refused_before_they_reach_the_model(service, memo):
    """Every inference route applies the same limits up front: a 1,000-property schema, a document past
    the prompt limit, a response_format schema nested too deep — each a fast 422 naming its setting."""
    url, auth = service["url"], service["auth"]
    huge = {"type": "object", "properties": {f"field_{i}": {"type": "string"} for i in range(1000)}}
    started = time.perf_counter()
    refused = httpx.post(f"{url}/v1/extract", json={"text": "x", "adapter": "memo", "schema": huge}, headers=auth)
    assert time.perf_counter() - started < 1.0
    assert refused.status_code == 422 and "TUNEBRIDGE_MAX_SCHEMA_PROPERTIES" in refused.json()["error"]
    long_text = "TOTAL 12.50 RM receipt line " * 1500
    too_long = httpx.post(f"{url}/v1/extract", json={"text": long_text, "adapter": "memo"}, headers=auth, timeout=30)
    assert too_long.status_code == 422 and "TUNEBRIDGE_MAX_PROMPT_TOKENS" in too_long.json()["error"]
    deep: dict = {"type": "string"}
    for _ in range(12):
        deep = {"type": "object", "properties": {"x": deep}}
    nested = httpx.post(
        f"{url}/v1/chat/completions",
        headers=auth,
        json={
            "model": "memo",
            "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "d", "schema": deep}},
        },
    )
    assert nested.status_code == 422 and "TUNEBRIDGE_MAX_SCHEMA_DEPTH" in nested.json()["error"]["message"]
    assert nested.json()["error"]["param"] == "schema"


def test_a_client_that_disconnects_frees_the_model_for_the_next_request(service, tiny_model):
    """A slow extraction whose client gives up (a 1 s client timeout) is stopped mid-decoding, so a
    small request sent after it is answered at once instead of after the slow one."""
    url, auth = service["url"], service["auth"]
    names = [f"note_{i}" for i in range(12)]
    slow = {
        "model": tiny_model,
        "text": "hello receipt total 9.00",
        "schema": {
            "type": "object",
            "required": names,
            "properties": {n: {"type": "string", "maxLength": 160} for n in names},
        },
    }
    small = {"model": tiny_model, "text": INVOICE, "schema": ["total"]}
    started = time.perf_counter()
    full = httpx.post(f"{url}/v1/extract", json=slow, headers=auth, timeout=600)
    alone = time.perf_counter() - started
    assert full.status_code == 200 and full.json()["usage"]["completion_tokens"] > 500, full.text
    before = httpx.get(f"{url}/v1/serving", headers=auth).json()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/extract", json=slow, headers=auth, timeout=1.0)  # the client gives up
    started = time.perf_counter()
    answered = httpx.post(f"{url}/v1/extract", json=small, headers=auth, timeout=600)
    latency = time.perf_counter() - started
    assert answered.status_code == 200
    assert latency < alone / 2, (latency, alone)  # not queued behind the slow one's remaining decoding
    after = httpx.get(f"{url}/v1/serving", headers=auth).json()
    assert after["abandoned"] == before["abandoned"] + 1
    print(f"slow extraction alone {alone:.2f} s; small request after a disconnect {latency:.2f} s")


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 40}, "unit": {"enum": ["C", "F"]}},
            "required": ["city", "unit"],
        },
    },
}
RECEIPT_TOOL = {
    "type": "function",
    "function": {
        "name": "extract_receipt",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    },
}


def test_function_calling_with_the_openai_sdk(service, tiny_model):
    """A random tiny model still makes valid calls: the arguments parse and match the tool's schema; the
    call and its result go back in the next request, as an agent sends them."""
    import jsonschema

    client = _client(service)
    ask = [{"role": "user", "content": "What is the weather in Kuala Lumpur?"}]
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        answer = client.chat.completions.create(
            model=tiny_model, messages=ask, tools=[RECEIPT_TOOL, WEATHER_TOOL], tool_choice=choice, max_tokens=4
        )  # max_tokens cuts text answers only: a call is never cut
        assert answer.choices[0].finish_reason == "tool_calls" and answer.choices[0].message.content is None
        [call] = answer.choices[0].message.tool_calls
        assert call.id.startswith("call_") and call.type == "function"
        schema = {"get_weather": WEATHER_TOOL, "extract_receipt": RECEIPT_TOOL}[call.function.name]
        jsonschema.validate(json.loads(call.function.arguments), schema["function"]["parameters"])
        if isinstance(choice, dict):
            assert call.function.name == "get_weather"
    follow_up = [
        *ask,
        answer.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 31, "unit": "C"})},
    ]
    again = client.chat.completions.create(model=tiny_model, messages=follow_up, tools=[WEATHER_TOOL], max_tokens=200)
    reply = again.choices[0]
    assert reply.finish_reason in ("stop", "length", "tool_calls")  # auto: the model chooses
    if reply.message.tool_calls:
        jsonschema.validate(
            json.loads(reply.message.tool_calls[0].function.arguments), WEATHER_TOOL["function"]["parameters"]
        )
    else:
        assert reply.message.content
    none = client.chat.completions.create(
        model=tiny_model, messages=follow_up, tools=[WEATHER_TOOL], tool_choice="none", max_tokens=8
    )
    assert none.choices[0].message.tool_calls is None and none.choices[0].finish_reason in ("stop", "length")


def test_a_streamed_tool_call_arrives_whole(service, tiny_model):
    stream = _client(service).chat.completions.create(
        model=tiny_model,
        messages=[{"role": "user", "content": "Weather in Ipoh?"}],
        tools=[WEATHER_TOOL],
        tool_choice="required",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert len(deltas) == 1
    call = deltas[0].tool_calls[0]
    assert call.index == 0 and call.id.startswith("call_") and call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["unit"] in ("C", "F")
    assert chunks[-1].choices[0].finish_reason == "tool_calls" and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize(
    "extra,message",
    [
        ({"tool_choice": "required"}, "tool_choice: needs tools"),
        (
            {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "no tool named 'x'",
        ),
        ({"functions": [{"name": "f"}]}, "send tools instead"),
        (
            {"tools": [WEATHER_TOOL], "response_format": {"type": "json_object"}},
            "response_format: cannot be combined with tools",
        ),
    ],
)
def test_bad_tool_requests_say_what_is_wrong(service, tiny_model, extra, message):
    body = {"model": tiny_model, "messages": [{"role": "user", "content": "hi"}], **extra}
    response = httpx.post(f"{service['url']}/v1/chat/completions", json=body, headers=service["auth"])
    assert response.status_code == 422 and message in response.json()["error"]["message"], response.text
