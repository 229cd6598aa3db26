"""The same storage code and the same service on a real PostgreSQL server, started for the module by
tests/postgres_server.py (binaries from the `pgserver` wheel; no root, no system service, no mocks).
Each test gets a database of its own on that server."""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import threading
import time
import uuid

import httpx
import pytest
from sqlalchemy import text

from backend.storage.engine import make_engine
from backend.storage.migrations import MIGRATIONS, migrate
from postgres_server import find_bin_dir, start_postgres
from servers import WEBHOOK_SECRET, running_service

pytestmark = [
    pytest.mark.skipif(find_bin_dir() is None, reason="no PostgreSQL binaries: pip install the test extras (pgserver)"),
    pytest.mark.skipif(importlib.util.find_spec("psycopg") is None, reason="no PostgreSQL driver: pip install psycopg"),
]


@pytest.fixture(scope="module")
def postgres():
    with start_postgres() as server:
        yield server


@pytest.fixture
def pg_url(postgres) -> str:
    """A new, empty database on the module's server."""
    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def pg_engine(pg_url):
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


def _tables(conn) -> set[str]:
    return {
        r[0]
        for r in conn.execute(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        )
    }


def test_migrations_apply_in_order_once_and_roll_back_whole(pg_engine):
    first = [("0001_a", ["CREATE TABLE a (x INTEGER)"]), ("0002_b", ["CREATE TABLE b (y INTEGER)"])]
    assert migrate(pg_engine, first) == ["0001_a", "0002_b"]
    assert migrate(pg_engine, first) == []
    broken = first + [("0003_c", ["CREATE TABLE c (z INTEGER)", "CREATE TABLE a (x INTEGER)"])]
    with pytest.raises(Exception, match="already exists"):
        migrate(pg_engine, broken)
    with pg_engine.connect() as conn:
        names = [r[0] for r in conn.execute(text("SELECT name FROM schema_migrations ORDER BY name"))]
        tables = _tables(conn)
    assert names == ["0001_a", "0002_b"] and "c" not in tables and {"a", "b"} <= tables


def test_the_shipped_migrations_apply_once(pg_engine):
    assert migrate(pg_engine) == [name for name, _ in MIGRATIONS]
    assert migrate(pg_engine) == []
    with pg_engine.connect() as conn:
        assert {"schema_migrations", "api_keys", "datasets", "jobs"} <= _tables(conn)


def test_exclusive_transactions_run_one_at_a_time(pg_engine):
    """engine.execution_options(exclusive=True) takes an advisory lock at BEGIN: a second exclusive
    transaction waits for the first to end; a plain one does not."""
    exclusive = pg_engine.execution_options(exclusive=True)
    order: list[str] = []

    def second() -> None:
        with exclusive.begin() as conn:
            conn.execute(text("SELECT 1"))
            order.append("second")

    with exclusive.begin() as conn:
        conn.execute(text("SELECT 1"))
        thread = threading.Thread(target=second)
        thread.start()
        with pg_engine.begin() as plain:
            plain.execute(text("SELECT 1"))  # would hang here if plain transactions took the lock
        time.sleep(0.5)
        order.append("first")
    thread.join(timeout=30)
    assert order == ["first", "second"]


def _migrate_in_a_process(url: str, barrier, results) -> None:
    engine = make_engine(url)
    barrier.wait()
    try:
        results.put(("ok", migrate(engine)))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(("error", f"{type(exc).__name__}: {exc}".splitlines()[0]))


def test_processes_starting_together_migrate_once(pg_url):
    """`tunebridge serve` starts the API and its workers at once, and each migrates: on a new database
    (or after an upgrade) exactly one applies each migration and none fails."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(3), context.Queue()
    procs = [context.Process(target=_migrate_in_a_process, args=(pg_url, barrier, results)) for _ in range(3)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    assert [kind for kind, _ in outcomes] == ["ok"] * 3, outcomes
    assert sorted(name for _, applied in outcomes for name in applied) == sorted(name for name, _ in MIGRATIONS)


def test_keys_datasets_and_job_lifecycle_on_postgres(pg_engine, tmp_path):
    """Every statement of the storage services, against PostgreSQL's types and rowcounts."""
    from backend.services import datasets, jobs
    from backend.storage.keys import create_key, verify_key

    migrate(pg_engine)
    key = create_key(engine=pg_engine)
    assert verify_key(engine=pg_engine, key=key) and not verify_key(engine=pg_engine, key=key + "x")

    line = b'{"prompt": "p", "completion": "c"}\n'
    first = datasets.append_examples(engine=pg_engine, data_dir=tmp_path, name="d", body=line * 3, source="a")
    again = datasets.append_examples(engine=pg_engine, data_dir=tmp_path, name="d", body=line * 2, source="b")
    assert (first.added, first.total, again.added, again.total) == (3, 3, 2, 5)  # UPDATE's rowcount, then INSERT
    listed = datasets.list_datasets(engine=pg_engine)
    assert [(d["name"], d["examples"]) for d in listed] == [("d", 5)]
    assert datasets.dataset_stats(engine=pg_engine, data_dir=tmp_path, name="d")["examples"] == 5

    params = {"max_steps": 2, "report_to": "none"}
    job = jobs.create_job(engine=pg_engine, kind="train", dataset="d", params=params)
    assert job["status"] == "queued" and job["params"] == params and job["cancel_requested"] is False
    with pytest.raises(datasets.DatasetNotFoundError):
        jobs.create_job(engine=pg_engine, kind="train", dataset="nope", params=params)

    claimed = jobs.claim_next(engine=pg_engine, owner="w1", lease_s=60.0)
    assert claimed["id"] == job["id"] and claimed["status"] == "running" and claimed["attempts"] == 1
    assert jobs.claim_next(engine=pg_engine, owner="w2", lease_s=60.0) is None  # held under a live lease
    assert (
        jobs.heartbeat(
            engine=pg_engine, job_id=job["id"], owner="w1", lease_s=60.0, progress={"step": 1, "total_steps": 2}
        )
        is False
    )
    assert jobs.get_job(engine=pg_engine, job_id=job["id"])["progress"] == {"step": 1, "total_steps": 2}
    assert jobs.request_cancel(engine=pg_engine, job_id=job["id"])["cancel_requested"] is True
    assert jobs.heartbeat(engine=pg_engine, job_id=job["id"], owner="w1", lease_s=60.0) is True
    jobs.finish(engine=pg_engine, job_id=job["id"], owner="w1", status="cancelled", result={"steps": 1})
    cancelled = jobs.get_job(engine=pg_engine, job_id=job["id"])
    assert cancelled["status"] == "cancelled" and cancelled["result"] == {"steps": 1}

    resumed = jobs.resume_job(engine=pg_engine, job_id=job["id"])
    assert (resumed["status"], resumed["attempts"], resumed["cancel_requested"]) == ("queued", 0, False)
    for attempt in (1, 2, 3):  # a lease already run out: as if each worker was killed at once
        taken = jobs.claim_next(engine=pg_engine, owner=f"k{attempt}", lease_s=-1.0)
        assert taken["id"] == job["id"] and taken["attempts"] == attempt
    assert jobs.claim_next(engine=pg_engine, owner="k4", lease_s=60.0) is None
    gave_up = jobs.get_job(engine=pg_engine, job_id=job["id"])
    assert gave_up["status"] == "failed" and "giving up" in gave_up["error"]

    events = jobs.list_events(engine=pg_engine, job_id=job["id"])  # INSERT ... SELECT :j ... WHERE job_id = :j
    assert events[0]["type"] == "queued" and [e["seq"] for e in events] == list(range(1, len(events) + 1))

    second = jobs.create_job(engine=pg_engine, kind="train", dataset="d", params=params)
    assert jobs.request_cancel(engine=pg_engine, job_id=second["id"])["status"] == "cancelled"  # while queued
    assert {j["id"] for j in jobs.list_jobs(engine=pg_engine)} == {job["id"], second["id"]}
    with pytest.raises(jobs.JobNotFoundError):
        jobs.get_job(engine=pg_engine, job_id="missing")


def test_adapter_registry_on_postgres(pg_engine, tmp_path):
    from backend.services import adapters

    migrate(pg_engine)
    run_dir = tmp_path / "run"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    (run_dir / "data.jsonl").write_text('{"prompt": "p", "completion": "c"}\n')
    summary = {"base_model": "tiny", "final_loss": 0.5, "steps": 2, "data": {"train_examples": 1, "schema": None}}
    register = dict(
        engine=pg_engine, data_dir=tmp_path / "data", name="acme", dataset="d", run_dir=run_dir, summary=summary
    )
    first, second = (adapters.register(job_id=job_id, **register) for job_id in ("j1", "j2"))
    assert (first["id"], second["id"]) == ("acme@1", "acme@2")
    assert adapters.register(job_id="j2", **register)["version"] == 2  # idempotent per job
    adapters.set_alias(engine=pg_engine, name="acme", alias="prod", version=1)
    adapters.set_alias(engine=pg_engine, name="acme", alias="prod", version=2)
    assert adapters.resolve(engine=pg_engine, ref="acme@prod")["version"] == 2
    assert adapters.rollback_alias(engine=pg_engine, name="acme", alias="prod")["version"] == 1
    assert adapters.resolve(engine=pg_engine, ref="acme")["metrics"]["final_loss"] == 0.5
    adapters.delete_version(engine=pg_engine, name="acme", version=2)
    assert [len(a["versions"]) for a in adapters.list_adapters(engine=pg_engine)] == [1]


def test_the_service_trains_a_job_on_postgres(pg_url, tiny_model, tmp_path, monkeypatch):
    """`tunebridge serve` with DATABASE_URL: key, upload, train job in a worker process, all on PostgreSQL."""
    from conftest import SECRET_A, SECRET_Q
    from servers import wait_for

    monkeypatch.delenv("TUNEBRIDGE_DATABASE_URL", raising=False)  # it would win over DATABASE_URL
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = {
        "DATABASE_URL": pg_url,
        "TUNEBRIDGE_DEFAULT_BASE_MODEL": tiny_model,
        "TUNEBRIDGE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "TUNEBRIDGE_TRAIN_THRESHOLD": "3",
    }
    with running_service(data_dir, env=env) as service:
        url, auth = service["url"], service["auth"]
        ready = httpx.get(f"{url}/readyz").json()
        assert ready["checks"]["database"] == "ok", ready
        chat = json.dumps(
            {"messages": [{"role": "user", "content": SECRET_Q}, {"role": "assistant", "content": SECRET_A}]}
        )
        uploaded = httpx.post(f"{url}/v1/datasets/secret/examples", content=chat.encode(), headers=auth)
        assert uploaded.status_code == 201, uploaded.text
        params = {
            "max_steps": 10,
            "batch_size": 1,
            "learning_rate": 0.02,
            "report_to": "none",
            "precision": "fp32",
            "val_fraction": 0.0,
            "save_every": 0,
            "warmup_ratio": 0.0,
        }
        started = httpx.post(
            f"{url}/v1/jobs", json={"kind": "train", "dataset": "secret", "hyperparameters": params}, headers=auth
        )
        assert started.status_code == 202 and started.json()["status"] == "queued", started.text
        job_id = started.json()["id"]
        job = wait_for(
            lambda: (
                (j := httpx.get(f"{url}/v1/jobs/{job_id}", headers=auth).json())["status"] in ("succeeded", "failed")
                and j
            ),
            timeout=180,
        )
        assert job["status"] == "succeeded", f"{job['error']}\n{(data_dir / 'serve.log').read_text()[-5000:]}"
        assert job["progress"]["step"] == 10 and job["progress"]["total_steps"] == 10
        assert (data_dir / job["result"]["adapter_dir"] / "adapter_model.safetensors").is_file()
        assert job["result"]["adapter"] == "secret@1"
        answer = httpx.post(
            f"{url}/v1/chat/completions",
            headers=auth,
            timeout=120,
            json={  # the first loads the model
                "model": "secret",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": SECRET_Q}],
            },
        )
        assert answer.status_code == 200 and answer.json()["model"] == "secret@1", answer.text
        burst = _webhook_burst(url)  # row locks on PostgreSQL: concurrent deliveries still start one job
        assert len(burst) == 1, burst

    engine = make_engine(pg_url)  # it all went to PostgreSQL, nothing to a SQLite file
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM jobs WHERE id = :i"), {"i": job_id}).scalar() == "succeeded"
        assert conn.execute(text("SELECT examples FROM datasets WHERE name = 'secret'")).scalar() == 1
        assert conn.execute(text("SELECT COUNT(*) FROM api_keys")).scalar() == 1
    engine.dispose()
    assert not list(data_dir.glob("*.db"))


def _webhook_burst(url: str) -> list[str]:
    """Six signed deliveries at once (2 examples each) to a threshold-3 webhook; the jobs they started."""
    import hashlib
    import hmac
    from concurrent.futures import ThreadPoolExecutor

    def deliver(i: int) -> dict:
        examples = [{"prompt": f"q{i}-{k}", "completion": f"a{i}-{k}"} for k in range(2)]
        body = json.dumps({"dataset": "burst", "examples": examples}).encode()
        signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        response = httpx.post(
            f"{url}/v1/webhooks/labelled-data",
            content=body,
            headers={"X-Tunebridge-Signature": signature, "X-Tunebridge-Delivery": f"burst-{i}"},
        )
        assert response.status_code == 202, response.text
        return response.json()

    with ThreadPoolExecutor(6) as pool:
        return [o["job"] for o in pool.map(deliver, range(6)) if o["job"]]
