"""The HTTP service, started for real: uvicorn in its own process on a free port, real SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from backend.errors import InvalidRequest
from backend.storage.engine import make_engine
from backend.storage.migrations import migrate
from servers import ROOT, cli, free_port, healthy, wait_for

_free_port, _wait_for, _healthy = free_port, wait_for, healthy


def _cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    return cli(*args, data_dir=data_dir)


def test_health_and_readiness_need_no_key(service):
    assert httpx.get(f"{service['url']}/healthz").json() == {"status": "ok"}
    ready = _wait_for(lambda: (r := httpx.get(f"{service['url']}/readyz")).status_code == 200 and r)
    assert ready.json() == {
        "status": "ready",
        "checks": {"database": "ok", "data_dir": "ok", "workers": "ok"},
        "live_workers": 1,
    }


@pytest.mark.parametrize(
    "headers,expected",
    [
        ({}, "missing API key"),
        ({"Authorization": "Bearer tb_0000_wrong"}, "invalid API key"),
        ({"Authorization": "Basic abc"}, "missing API key"),
    ],
)
def test_v1_routes_refuse_missing_or_wrong_keys(service, headers, expected):
    response = httpx.get(f"{service['url']}/v1/datasets", headers=headers)
    assert response.status_code == 401 and expected in response.json()["error"]
    openai_shaped = httpx.get(f"{service['url']}/v1/models", headers=headers)  # the OpenAI-compatible routes
    assert openai_shaped.status_code == 401 and expected in openai_shaped.json()["error"]["message"]
    assert openai_shaped.json()["error"]["code"] == "invalid_api_key"


def test_models_list_in_openai_format(service):
    response = httpx.get(f"{service['url']}/v1/models", headers={"Authorization": f"Bearer {service['key']}"})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    smol = next(m for m in body["data"] if m["id"] == "smollm2-135m")
    assert smol["object"] == "model" and smol["available"] is True


def test_keys_are_stored_hashed_and_database_uses_wal(service):
    engine = make_engine(f"sqlite:///{service['data_dir'] / 'tunebridge.db'}")
    with engine.connect() as conn:
        stored = [row[0] for row in conn.execute(text("SELECT key_hash FROM api_keys"))]
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert service["key"] not in stored and len(stored[0]) == 64


def test_migrations_apply_in_order_once_and_roll_back_whole(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    first = [("0001_a", ["CREATE TABLE a (x INTEGER)"]), ("0002_b", ["CREATE TABLE b (y INTEGER)"])]
    assert migrate(engine, first) == ["0001_a", "0002_b"]
    assert migrate(engine, first) == []
    broken = first + [("0003_c", ["CREATE TABLE c (z INTEGER)", "CREATE TABLE a (x INTEGER)"])]
    with pytest.raises(OperationalError):  # CREATE TABLE a again
        migrate(engine, broken)
    with engine.connect() as conn:
        names = [r[0] for r in conn.execute(text("SELECT name FROM schema_migrations ORDER BY name"))]
        tables = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))}
    assert names == ["0001_a", "0002_b"] and "c" not in tables


def _auth(service) -> dict[str, str]:
    return {"Authorization": f"Bearer {service['key']}"}


def test_dataset_upload_append_list_and_stats(service):
    url, receipts = service["url"], (ROOT / "examples" / "data" / "receipts.jsonl").read_bytes()
    first = httpx.post(
        f"{url}/v1/datasets/receipts/examples",
        content=receipts[: receipts.index(b"\n", 5000) + 1],
        headers={**_auth(service), "Content-Type": "application/jsonl"},
    )
    assert first.status_code == 201, first.text
    added = first.json()["added"]
    chat = (ROOT / "examples" / "data" / "chat.jsonl").read_bytes()
    second = httpx.post(
        f"{url}/v1/datasets/receipts/examples", files={"file": ("chat.jsonl", chat)}, headers=_auth(service)
    )
    assert second.status_code == 201, second.text
    assert second.json() == {"dataset": "receipts", "added": 4, "total": added + 4, "formats": {"chat": 4}}
    listed = httpx.get(f"{url}/v1/datasets", headers=_auth(service)).json()
    assert [(d["name"], d["examples"]) for d in listed] == [("receipts", added + 4)]
    stats = httpx.get(f"{url}/v1/datasets/receipts", headers=_auth(service)).json()
    assert stats["examples"] == added + 4 and stats["formats"] == {"extraction": added, "chat": 4}
    assert stats["schema"] == ["company", "date", "address", "total"]
    assert 0 < stats["tokens"]["min"] <= stats["tokens"]["median"] <= stats["tokens"]["max"]
    stored = (service["data_dir"] / "datasets" / "receipts.jsonl").read_text().splitlines()
    assert len(stored) == added + 4 and '"fields"' in stored[0]  # records are kept as sent


def test_a_bad_line_stores_nothing_and_names_each_line(service):
    url = service["url"]
    body = b'{"prompt": "a", "completion": "b"}\n{oops\n{"prompt": "c"}\n'
    response = httpx.post(f"{url}/v1/datasets/bad/examples", content=body, headers=_auth(service))
    assert response.status_code == 422
    payload = response.json()
    assert "2 invalid line(s); nothing was stored" in payload["error"]
    assert [(i["line"], i["problem"][:12]) for i in payload["issues"]] == [(2, "invalid JSON"), (3, "unknown reco")]
    assert httpx.get(f"{url}/v1/datasets/bad", headers=_auth(service)).status_code == 404
    assert not (service["data_dir"] / "datasets" / "bad.jsonl").exists()


@pytest.mark.parametrize("name", ["../etc", "UPPER", "-dash", "a" * 65, "dot.name"])
def test_dataset_names_cannot_escape_or_surprise(service, name):
    response = httpx.post(
        f"{service['url']}/v1/datasets/{name}/examples",
        content=b'{"prompt":"a","completion":"b"}',
        headers=_auth(service),
    )
    assert response.status_code in (404, 422)  # "../etc" never reaches the route: the path is normalised
    assert response.json()["error"]


def test_oversized_and_empty_bodies_are_refused(service):
    url = service["url"]
    big = b'{"prompt": "' + b"x" * (1024 * 1024) + b'", "completion": "y"}\n'
    response = httpx.post(f"{url}/v1/datasets/big/examples", content=big, headers=_auth(service))
    assert response.status_code == 413 and "exceeds the limit" in response.json()["error"]
    empty = httpx.post(f"{url}/v1/datasets/empty/examples", content=b"\n\n", headers=_auth(service))
    assert empty.status_code == 422 and "no examples" in empty.json()["error"]
    missing = httpx.get(f"{url}/v1/datasets/nope", headers=_auth(service))
    assert missing.status_code == 404 and missing.json() == {"error": "dataset 'nope' does not exist"}


def _job(service, job_id: str) -> dict:
    return httpx.get(f"{service['url']}/v1/jobs/{job_id}", headers=_auth(service)).json()


def test_train_job_runs_in_a_worker_process_and_reports_progress(service):
    import json

    from conftest import SECRET_A, SECRET_Q

    url = service["url"]
    chat = json.dumps({"messages": [{"role": "user", "content": SECRET_Q}, {"role": "assistant", "content": SECRET_A}]})
    assert (
        httpx.post(f"{url}/v1/datasets/secret/examples", content=chat.encode(), headers=_auth(service)).status_code
        == 201
    )
    params = {
        "max_steps": 20,
        "batch_size": 1,
        "learning_rate": 0.02,
        "report_to": "none",
        "precision": "fp32",
        "val_fraction": 0.0,
        "save_every": 0,
        "warmup_ratio": 0.0,
    }
    created = httpx.post(
        f"{url}/v1/jobs", json={"kind": "train", "dataset": "secret", "hyperparameters": params}, headers=_auth(service)
    )
    assert created.status_code == 202 and created.json()["status"] == "queued"
    job = _wait_for(lambda: (j := _job(service, created.json()["id"]))["status"] in ("succeeded", "failed") and j)
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"]["step"] == 20 and job["progress"]["total_steps"] == 20
    assert job["result"]["adapter_dir"] == f"jobs/{job['id']}/adapter"  # relative: no server path in responses
    assert (service["data_dir"] / job["result"]["adapter_dir"] / "adapter_model.safetensors").is_file()
    assert (service["data_dir"] / "jobs" / job["id"] / "data.jsonl").read_text().strip() == chat


def _long_dataset(service) -> str:
    """A dataset of 20 kB of receipts (uploaded once per service)."""
    url = service["url"]
    if httpx.get(f"{url}/v1/datasets/long", headers=_auth(service)).status_code == 404:
        receipts = (ROOT / "examples" / "data" / "receipts.jsonl").read_bytes()[:20000]
        receipts = receipts[: receipts.rindex(b"\n") + 1]
        assert (
            httpx.post(f"{url}/v1/datasets/long/examples", content=receipts, headers=_auth(service)).status_code == 201
        )
    return "long"


def _start_long_job(service, *, max_steps: int) -> str:
    """A tiny-model train job on the receipts dataset, one receipt per step, no periodic checkpoints."""
    params = {"max_steps": max_steps, "batch_size": 1, "report_to": "none", "precision": "fp32", "save_every": 0}
    created = httpx.post(
        f"{service['url']}/v1/jobs",
        headers=_auth(service),
        json={"kind": "train", "dataset": _long_dataset(service), "hyperparameters": params},
    )
    assert created.status_code == 202, created.text
    return created.json()["id"]


def test_cancel_stops_a_running_job_with_a_checkpoint(service):
    url = service["url"]
    job_id = _start_long_job(service, max_steps=100000)
    _wait_for(lambda: (_job(service, job_id).get("progress") or {}).get("step", 0) >= 2)
    assert httpx.post(f"{url}/v1/jobs/{job_id}/cancel", headers=_auth(service)).json()["cancel_requested"] is True
    job = _wait_for(lambda: (j := _job(service, job_id))["status"] == "cancelled" and j)
    assert job["result"]["steps"] < 100000
    assert list((service["data_dir"] / "jobs" / job_id / "checkpoints").glob("step-*"))


@pytest.mark.parametrize(
    "body,code,message",
    [
        ({"kind": "train", "dataset": "nope"}, 404, "dataset 'nope' does not exist"),
        (
            {"kind": "train", "dataset": "secret", "hyperparameters": {"epochz": 3}},
            422,
            "unknown training option(s) ['epochz']",
        ),
        ({"kind": "train", "dataset": "secret", "hyperparameters": {"epochs": -1}}, 422, "epochs: got -1"),
        ({"kind": "train", "dataset": "secret", "hyperparameters": {"output_dir": "/etc"}}, 422, "set by the service"),
        ({"kind": "bake", "dataset": "secret"}, 422, "invalid request"),
        ({"kind": "train", "dataset": "secret", "extra": 1}, 422, "unknown job option(s) ['extra']; known: ["),
        # a train job's body takes a run file's keys beside kind and dataset, checked as in a run file
        (
            {"dataset": "secret", "epochz": 3},
            422,
            "unknown job option(s) ['epochz'] ('epochz': did you mean 'epochs'?)",
        ),
        ({"dataset": "secret", "epochs": "abc"}, 422, "epochs: got 'abc' (str), expected a number"),
        (
            {"dataset": "secret", "data": ["a.jsonl"], "run_name": "r"},
            422,
            "['data', 'run_name'] are set by the service",
        ),
        (
            {"dataset": "secret", "epochs": 2, "hyperparameters": {"epochs": 3}},
            422,
            "['epochs']: given both in the body and in hyperparameters",
        ),
        ({"kind": "eval", "dataset": "secret", "epochs": 2}, 422, "an eval job takes its options in hyperparameters"),
        ({"kind": "train", "dataset": "secret", "adapter_name": "../etc"}, 422, "adapter name '../etc' is invalid"),
        (
            {"kind": "train", "dataset": "secret", "callback_url": "ftp://x"},
            422,
            "invalid request",
        ),  # pattern ^https?://
        # validated whole at submission, against what the service owns; no server path is read or revealed
        (
            {"kind": "train", "dataset": "secret", "hyperparameters": {"schema": "/etc/passwd"}},
            422,
            "the service reads no schema file",
        ),
        (
            {"kind": "train", "dataset": "secret", "hyperparameters": {"model": "/etc"}},
            422,
            "expected a bundled model (gemma3-270m, smollm2-135m) or a folder under one of TUNEBRIDGE_ALLOWED_MODEL_DIRS",
        ),
        ({"kind": "train", "dataset": "secret", "hyperparameters": {"model": "gpt-99"}}, 422, "model: got 'gpt-99'"),
        (
            {"kind": "train", "dataset": "secret", "hyperparameters": {"lora_r": 1099511627776}},
            422,
            "lora_r: got 1099511627776, expected from 1 to 1024",
        ),
        (
            {"kind": "train", "dataset": "secret", "hyperparameters": {"epochs": "abc"}},
            422,
            "epochs: got 'abc' (str), expected a number",
        ),
        ({"kind": "train", "dataset": "secret", "hyperparameters": {"nproc": 2}}, 422, "nproc: got 2"),
        (
            {"kind": "eval", "dataset": "secret", "hyperparameters": {"adapters": ["ghost@3"]}},
            422,
            "hyperparameters.adapters: ",
        ),
        (
            {"kind": "eval", "dataset": "secret", "hyperparameters": {"model": "/root"}},
            422,
            "hyperparameters.model: got '/root'",
        ),
    ],
)
def test_bad_job_requests_say_what_is_wrong(service, body, code, message):
    httpx.post(
        f"{service['url']}/v1/datasets/secret/examples",
        content=b'{"prompt": "p", "completion": "c"}',
        headers=_auth(service),
    )
    response = httpx.post(f"{service['url']}/v1/jobs", json=body, headers=_auth(service))
    assert response.status_code == code and message in response.json()["error"]
    assert httpx.get(f"{service['url']}/v1/jobs/missing", headers=_auth(service)).status_code == 404


def test_a_run_file_with_a_dataset_is_a_train_jobs_body(service, tmp_path):
    """The body is the run file's keys and a dataset (kind defaults to train); the job trains with them
    and its run folder's config.yaml holds them."""
    from backend.training.runfile import read_options

    url, auth = service["url"], _auth(service)
    chat = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}'
    assert httpx.post(f"{url}/v1/datasets/runfile/examples", content=chat, headers=auth).status_code == 201
    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        "max_steps: 2  # steps\nbatch_size: 1\nlearning_rate: 2e-3\nlora_r: 4\nprecision: fp32\n"
        "val_fraction: 0\nsave_every: 0\nreport_to: none\n"
    )
    options = read_options(run_file)
    created = httpx.post(f"{url}/v1/jobs", json={"dataset": "runfile", **options}, headers=auth)
    assert created.status_code == 202, created.text
    assert created.json()["kind"] == "train" and created.json()["params"] == options
    job = _wait_for(lambda: (j := _job(service, created.json()["id"]))["status"] in ("succeeded", "failed") and j)
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["steps"] == 2
    resolved = read_options(service["data_dir"] / "jobs" / job["id"] / "config.yaml")
    assert {k: resolved[k] for k in options} == options


def test_resume_continues_a_cancelled_job_to_the_end(service):
    url = service["url"]
    job_id = _start_long_job(service, max_steps=2000)
    refused = httpx.post(f"{url}/v1/jobs/{job_id}/resume", headers=_auth(service))
    assert refused.status_code == 409 and "only cancelled or failed" in refused.json()["error"]
    _wait_for(lambda: (_job(service, job_id).get("progress") or {}).get("step", 0) >= 2)
    httpx.post(f"{url}/v1/jobs/{job_id}/cancel", headers=_auth(service))
    cancelled = _wait_for(lambda: (j := _job(service, job_id))["status"] == "cancelled" and j)
    assert httpx.post(f"{url}/v1/jobs/{job_id}/resume", headers=_auth(service)).json()["status"] == "queued"
    done = _wait_for(lambda: (j := _job(service, job_id))["status"] == "succeeded" and j)
    assert cancelled["result"]["steps"] < 2000 and done["result"]["steps"] == 2000


def test_a_killed_worker_leaves_a_job_that_another_worker_finishes(tiny_model, tmp_path):
    """kill -9 of the worker mid-job: its lease expires, a second worker takes the job over and
    resumes from the last checkpoint; every step is logged exactly once."""
    import json
    import signal

    data_dir = tmp_path / "data"
    key = _cli("keys", "create", data_dir=data_dir).stdout.strip().splitlines()[-1]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TUNEBRIDGE_DEFAULT_BASE_MODEL": tiny_model,
        "TUNEBRIDGE_LEASE_S": "2",
    }
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backend.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            "0",
            "--data-dir",
            str(data_dir),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker_cmd = [sys.executable, "-m", "backend.cli", "worker", "--data-dir", str(data_dir)]
    workers = [subprocess.Popen(worker_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}
    try:
        _wait_for(lambda: _healthy(url))
        receipts = (ROOT / "examples" / "data" / "receipts.jsonl").read_bytes()
        httpx.post(f"{url}/v1/datasets/r/examples", content=receipts, headers=auth)
        params = {
            "max_steps": 150,
            "batch_size": 1,
            "report_to": "none",
            "precision": "fp32",
            "save_every": 5,
            "val_fraction": 0.0,
        }
        job_id = httpx.post(
            f"{url}/v1/jobs", json={"kind": "train", "dataset": "r", "hyperparameters": params}, headers=auth
        ).json()["id"]
        run_dir = data_dir / "jobs" / job_id
        _wait_for(lambda: list((run_dir / "checkpoints").glob("step-*")))
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(timeout=30)
        assert httpx.get(f"{url}/v1/jobs/{job_id}", headers=auth).json()["status"] == "running"
        workers.append(subprocess.Popen(worker_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        job = _wait_for(
            lambda: (
                (j := httpx.get(f"{url}/v1/jobs/{job_id}", headers=auth).json())["status"] in ("succeeded", "failed")
                and j
            ),
            timeout=300,
        )
        assert job["status"] == "succeeded", job["error"]
        assert job["attempts"] == 2 and job["result"]["steps"] == 150
        steps = [
            json.loads(line)["step"]
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if '"loss"' in line
        ]
        assert steps == list(range(1, 151))
    finally:
        for proc in [server, *workers]:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=60)


def test_a_dataset_cannot_grow_past_its_limit(service):
    line = b'{"prompt": "' + b"p" * 1000 + b'", "completion": "c"}\n'
    chunk = line * 900  # about 0.9 MB, under the 1 MB body limit; the dataset limit is 2 MB
    url, path = service["url"], service["data_dir"] / "datasets" / "huge.jsonl"
    for _ in range(2):
        assert httpx.post(f"{url}/v1/datasets/huge/examples", content=chunk, headers=_auth(service)).status_code == 201
    size = path.stat().st_size
    refused = httpx.post(f"{url}/v1/datasets/huge/examples", content=chunk, headers=_auth(service))
    assert refused.status_code == 413 and "TUNEBRIDGE_MAX_DATASET_MB" in refused.json()["error"]
    assert path.stat().st_size == size
    assert httpx.get(f"{url}/v1/datasets/huge", headers=_auth(service)).json()["examples"] == 1800


def test_a_restarted_service_finishes_the_job_its_shutdown_put_back(tiny_model, tmp_path):
    """SIGTERM to `tunebridge serve` mid-job: the worker checkpoints and re-queues the job; the next
    start of the service resumes it and every step is trained exactly once."""
    import json

    from servers import running_service

    data_dir, env = tmp_path / "data", {"TUNEBRIDGE_DEFAULT_BASE_MODEL": tiny_model}
    data_dir.mkdir()
    params = {
        "max_steps": 400,
        "batch_size": 1,
        "report_to": "none",
        "precision": "fp32",
        "save_every": 0,
        "val_fraction": 0.0,
    }
    with running_service(data_dir, env=env) as first:
        receipts = (ROOT / "examples" / "data" / "receipts.jsonl").read_bytes()
        httpx.post(f"{first['url']}/v1/datasets/r/examples", content=receipts, headers=first["auth"])
        job_id = httpx.post(
            f"{first['url']}/v1/jobs",
            headers=first["auth"],
            json={"kind": "train", "dataset": "r", "hyperparameters": params},
        ).json()["id"]
        _wait_for(
            lambda: (
                (httpx.get(f"{first['url']}/v1/jobs/{job_id}", headers=first["auth"]).json().get("progress") or {}).get(
                    "step", 0
                )
                >= 3
            )
        )
    engine = make_engine(f"sqlite:///{data_dir / 'tunebridge.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM jobs WHERE id = :i"), {"i": job_id}).scalar() == "queued"
    engine.dispose()
    with running_service(data_dir, env=env) as second:
        job = _wait_for(
            lambda: (
                (j := httpx.get(f"{second['url']}/v1/jobs/{job_id}", headers=second["auth"]).json())["status"]
                in ("succeeded", "failed")
                and j
            ),
            timeout=300,
        )
    assert job["status"] == "succeeded" and job["result"]["steps"] == 400, job["error"]
    assert job["attempts"] == 1  # the shutdown's requeue was not a failed attempt
    steps = [
        json.loads(line)["step"]
        for line in (data_dir / "jobs" / job_id / "metrics.jsonl").read_text().splitlines()
        if '"loss"' in line
    ]
    assert steps == list(range(1, 401))


def test_hostile_numbers_and_nesting_are_4xx_never_500(service):
    """What a fuzzer found: integers past 2^63 in query and path, JSON nested 100,000 deep."""
    url, auth = service["url"], _auth(service)
    httpx.post(f"{url}/v1/datasets/secret/examples", content=b'{"prompt": "p", "completion": "c"}', headers=auth)
    job = httpx.post(
        f"{url}/v1/jobs", json={"kind": "eval", "dataset": "secret", "hyperparameters": {}}, headers=auth
    ).json()["id"]
    huge = str(2**64)
    probes = [
        httpx.get(f"{url}/v1/jobs/{job}/events", params={"after": huge}, headers=auth),
        httpx.get(f"{url}/v1/adapters/memo@{huge}", headers=auth),
        httpx.delete(f"{url}/v1/adapters/memo/versions/{huge}", headers=auth),
        httpx.put(f"{url}/v1/adapters/memo/aliases/prod", json={"version": 2**64}, headers=auth),
        httpx.post(f"{url}/v1/datasets/deep/examples", content=b"[" * 100_000 + b"]" * 100_000, headers=auth),
        httpx.post(
            f"{url}/v1/jobs",
            content=b'{"kind": "train", "dataset": "secret", "hyperparameters": '
            + b"[" * 100_000
            + b"]" * 100_000
            + b"}",
            headers={**auth, "Content-Type": "application/json"},
        ),
    ]
    codes = [p.status_code for p in probes]
    assert all(400 <= c < 500 for c in codes), [(p.request.url.path[:60], p.status_code, p.text[:200]) for p in probes]
    assert "nested too deeply" in probes[4].json()["issues"][0]["problem"]


def test_the_api_docs_work_offline_and_declare_the_key_and_errors(service):
    url = service["url"]
    page = httpx.get(f"{url}/docs")
    assert page.status_code == 200 and "/docs-static/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text.replace("https://fastapi", "")
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        assert httpx.get(f"{url}/docs-static/{asset}").status_code == 200, asset
    assert "/docs-static/redoc.standalone.js" in httpx.get(f"{url}/redoc").text
    spec = httpx.get(f"{url}/openapi.json").json()
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["apiKey"]["description"],
    }
    create = spec["paths"]["/v1/jobs"]["post"]
    assert create["security"] == [{"apiKey": []}] and {"401", "404", "409", "413", "422"} <= set(create["responses"])
    chat = spec["paths"]["/v1/chat/completions"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert chat["$ref"].endswith("/OpenAIErrorOut")
    name = spec["paths"]["/v1/datasets/{name}"]["get"]["parameters"][0]["schema"]
    assert name["pattern"] == "^[a-z0-9][a-z0-9_-]{0,63}$"


def test_jobs_may_name_models_under_the_allowed_folders_only(tmp_path):
    from backend.services.jobs import ServerModels

    allowed = tmp_path / "models"
    models = ServerModels.of("/srv/default-model", f"{allowed}:{tmp_path / 'more'}")
    for fine in ("smollm2-135m", "/srv/default-model", str(allowed / "my-model"), str(tmp_path / "more" / "m")):
        models.check(fine, field="model")
    for refused in ("/etc", str(allowed / ".." / "secret"), "gpt-99", str(tmp_path / "models-evil")):
        with pytest.raises(InvalidRequest, match="TUNEBRIDGE_ALLOWED_MODEL_DIRS") as error:
            models.check(refused, field="model")
        assert "exist" not in str(error.value)  # says nothing of what is on the server
