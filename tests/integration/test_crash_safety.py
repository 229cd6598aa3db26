"""kill -9 of `tunebridge serve` inside a dataset write, at each point of the window, then a restart:
the file, the count and the API agree, a retried delivery is stored exactly once, and a training on
the dataset succeeds."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from sqlalchemy import text

from backend.storage.engine import make_engine
from servers import ROOT, WEBHOOK_SECRET, cli, free_port, healthy, running_service, wait_for

POINTS = ["dataset-mid-write", "dataset-before-commit", "dataset-after-commit"]
EXAMPLES = 1500  # a large delivery: about 150 kB of JSON lines


def _delivery(point: str) -> bytes:
    examples = [
        {"text": f"{point} receipt {i} total {i}.00", "fields": {"company": f"Shop {i}", "total": f"{i}.00"}}
        for i in range(EXAMPLES)
    ]
    return json.dumps({"dataset": "crashy", "examples": examples}).encode()


def _post(url: str, body: bytes, delivery: str) -> httpx.Response:
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return httpx.post(
        f"{url}/v1/webhooks/labelled-data",
        content=body,
        timeout=60,
        headers={
            "Content-Type": "application/json",
            "X-Tunebridge-Delivery": delivery,
            "X-Tunebridge-Signature": signature,
        },
    )


def _kill_inside(data_dir: Path, env: dict[str, str], point: str, body: bytes) -> None:
    """Start the server held at `point`, send the delivery, kill -9 the server (and its workers) there."""
    crash_dir = data_dir / "crash"
    port = free_port()
    log = open(data_dir / f"serve-{point}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            **env,
            "TUNEBRIDGE_CRASH_POINT": point,
            "TUNEBRIDGE_CRASH_DIR": str(crash_dir),
        },
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(url) or proc.poll() is not None, timeout=90, what="server start")
        sender = threading.Thread(target=lambda: _swallow(lambda: _post(url, body, point)), daemon=True)
        sender.start()
        wait_for(lambda: (crash_dir / f"{point}.reached").exists(), timeout=60, what=f"crash point {point}")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        log.close()
    sender.join(timeout=30)


def _swallow(call) -> None:
    try:
        call()
    except httpx.HTTPError:
        pass  # the server died under the request: that is the point


def _committed(data_dir: Path) -> tuple[int, int]:
    engine = make_engine(f"sqlite:///{data_dir / 'tunebridge.db'}")
    with engine.connect() as conn:
        row = conn.execute(text("SELECT examples, committed_bytes FROM datasets WHERE name = 'crashy'")).one()
    engine.dispose()
    return int(row[0]), int(row[1])


def test_kill_9_inside_a_dataset_write_loses_and_doubles_nothing(tiny_model, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = {
        "TUNEBRIDGE_DEFAULT_BASE_MODEL": tiny_model,
        "TUNEBRIDGE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "TUNEBRIDGE_TRAIN_THRESHOLD": "100000",
        "TUNEBRIDGE_WORKERS": "0",
    }
    assert cli("keys", "create", data_dir=data_dir, env=env).returncode == 0
    path = data_dir / "datasets" / "crashy.jsonl"
    for point in POINTS:
        _kill_inside(data_dir, env, point, _delivery(point))
        assert (data_dir / "crash" / f"{point}.reached").exists()
        if point == "dataset-mid-write":  # the window is real: half a delivery, cut mid-line, is on disk
            assert path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")

    with running_service(data_dir, env={**env, "TUNEBRIDGE_WORKERS": "1"}) as service:
        for point in POINTS[1:]:  # each start repaired what the kill before it left, and logged it
            assert "past its last committed append" in (data_dir / f"serve-{point}.log").read_text()
        examples, committed = _committed(data_dir)
        assert examples == EXAMPLES and path.stat().st_size == committed  # only the after-commit delivery counts
        retried = {point: _post(service["url"], _delivery(point), point) for point in POINTS}
        assert {p: r.status_code for p, r in retried.items()} == {
            "dataset-mid-write": 202,
            "dataset-before-commit": 202,
            "dataset-after-commit": 200,
        }
        assert retried["dataset-after-commit"].json()["duplicate"] is True
        lines = path.read_bytes().splitlines()
        assert len(lines) == 3 * EXAMPLES and len(set(lines)) == 3 * EXAMPLES  # none lost, none doubled
        assert all(json.loads(line)["fields"] for line in lines)
        stats = httpx.get(f"{service['url']}/v1/datasets/crashy", headers=service["auth"]).json()
        assert stats["examples"] == 3 * EXAMPLES and _committed(data_dir) == (3 * EXAMPLES, path.stat().st_size)
        params = {
            "max_steps": 2,
            "batch_size": 1,
            "report_to": "none",
            "precision": "fp32",
            "save_every": 0,
            "val_fraction": 0.0,
        }
        job_id = httpx.post(
            f"{service['url']}/v1/jobs",
            headers=service["auth"],
            json={"kind": "train", "dataset": "crashy", "hyperparameters": params},
        ).json()["id"]
        job = wait_for(
            lambda: (
                (j := httpx.get(f"{service['url']}/v1/jobs/{job_id}", headers=service["auth"]).json())["status"]
                in ("succeeded", "failed")
                and j
            ),
            timeout=300,
            what="training",
        )
        assert job["status"] == "succeeded", job["error"]


def test_a_reader_never_sees_an_uncommitted_tail(tmp_path):
    """Bytes a crash left past the committed length are invisible to readers and cut by the next append."""
    from backend.services import datasets
    from backend.storage.migrations import migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    line = b'{"prompt": "p", "completion": "c"}'
    datasets.append_examples(engine=engine, data_dir=tmp_path, name="d", body=line, source="t")
    path = datasets.dataset_file(data_dir=tmp_path, name="d")
    with open(path, "ab") as handle:
        handle.write(b'{"prompt": "half-wri')  # what a kill -9 mid-write leaves
    assert datasets.read_committed(engine=engine, data_dir=tmp_path, name="d") == line + b"\n"
    added = datasets.append_examples(engine=engine, data_dir=tmp_path, name="d", body=line, source="t")
    assert added.total == 2 and path.read_bytes() == (line + b"\n") * 2
    with open(path, "ab") as handle:
        handle.write(b"garbage")
    assert datasets.repair_datasets(engine=engine, data_dir=tmp_path) == ["d"]
    assert path.read_bytes() == (line + b"\n") * 2
    assert datasets.repair_datasets(engine=engine, data_dir=tmp_path) == []


def test_a_dataset_recorded_before_lengths_were_kept_is_repaired_by_its_count(tmp_path):
    from backend.services import datasets
    from backend.storage.migrations import migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    line = b'{"prompt": "p", "completion": "c"}\n'
    path = datasets.dataset_file(data_dir=tmp_path, name="old")
    path.parent.mkdir(parents=True)
    path.write_bytes(line * 3 + b'{"prompt": "trunc')
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO datasets (name, examples, created_at, updated_at) VALUES ('old', 2, 't', 't')"))
    assert datasets.read_committed(engine=engine, data_dir=tmp_path, name="old") == line * 2
    assert datasets.repair_datasets(engine=engine, data_dir=tmp_path) == ["old"]
    assert path.read_bytes() == line * 2
    with engine.connect() as conn:
        assert conn.execute(text("SELECT committed_bytes FROM datasets")).scalar() == len(line) * 2
