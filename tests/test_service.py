"""The HTTP service, started for real: uvicorn in its own process on a free port, real SQLite."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from backend.storage.engine import make_engine
from backend.storage.migrations import migrate

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend.cli", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("service-data")
    created = _cli("keys", "create", data_dir=data_dir)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("server did not start: " + proc.stdout.read())
    yield {"url": url, "key": key, "data_dir": data_dir}
    proc.terminate()
    proc.wait(timeout=30)


def test_health_and_readiness_need_no_key(service):
    assert httpx.get(f"{service['url']}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{service['url']}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "data_dir": "ok"}}


@pytest.mark.parametrize("headers,expected", [
    ({}, "missing API key"),
    ({"Authorization": "Bearer tb_0000_wrong"}, "invalid API key"),
    ({"Authorization": "Basic abc"}, "missing API key"),
])
def test_v1_routes_refuse_missing_or_wrong_keys(service, headers, expected):
    response = httpx.get(f"{service['url']}/v1/models", headers=headers)
    assert response.status_code == 401 and expected in response.json()["error"]


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
    with pytest.raises(Exception):
        migrate(engine, broken)
    with engine.connect() as conn:
        names = [r[0] for r in conn.execute(text("SELECT name FROM schema_migrations ORDER BY name"))]
        tables = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))}
    assert names == ["0001_a", "0002_b"] and "c" not in tables
