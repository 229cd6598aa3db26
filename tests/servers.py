"""Start the real service for tests: `tunebridge serve` in its own process on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
WEBHOOK_SECRET = "whsec-test-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, *, timeout: float = 120.0, every: float = 0.2, what: str = "condition"):
    """The predicate's first truthy value, polled every `every` s; an AssertionError after `timeout` s."""
    deadline = time.time() + timeout
    value = None
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} not reached in {timeout} s; last value: {value!r}")


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def cli(*args: str, data_dir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


@contextmanager
def running_service(data_dir: Path, *, env: dict[str, str], workers: int = 1) -> Iterator[dict]:
    """A key, a server with `workers` worker processes, its URL; stopped (SIGTERM) afterwards."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    created = cli("keys", "create", data_dir=data_dir, env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    port = free_port()
    log = open(data_dir / "serve.log", "w")  # a file, not a pipe: an unread pipe fills and blocks the server
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backend.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--data-dir",
            str(data_dir),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for(lambda: healthy(url) or proc.poll() is not None, timeout=90)
        except AssertionError:
            pass
        if not healthy(url):
            raise RuntimeError("server did not start: " + (data_dir / "serve.log").read_text()[-3000:])
        yield {"url": url, "key": key, "data_dir": data_dir, "auth": {"Authorization": f"Bearer {key}"}, "proc": proc}
    finally:
        workers = children(proc.pid)
        proc.terminate()
        proc.wait(timeout=150)
        log.close()
        # `tunebridge serve` stops its workers on SIGTERM: none may outlive it
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), timeout=30)


@contextmanager
def tiny_service(data_dir: Path, tiny_model: str) -> Iterator[dict]:
    """The real service (uvicorn + one worker process, SQLite) on the tiny model, as the tests run it."""
    env = {
        "TUNEBRIDGE_DEFAULT_BASE_MODEL": tiny_model,
        "TUNEBRIDGE_MAX_BODY_MB": "1",
        "TUNEBRIDGE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "TUNEBRIDGE_TRAIN_THRESHOLD": "3",
        "TUNEBRIDGE_MAX_DATASET_MB": "2",
    }
    with running_service(data_dir, env=env) as running:
        yield running


def children(pid: int) -> list[int]:
    """The process's children, whichever of its threads started them."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return out
