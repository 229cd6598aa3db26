"""The running service under schemathesis (`--checks all`, a fixed seed, bounded examples): every
operation of the OpenAPI document is fuzzed, and none answers with a server error (5xx).
Conformance notes it also reports (ST201/ST202: where the service refuses more than its schema
says, e.g. a training schema the adapter lacks) are printed, not failed on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx

from servers import wait_for

SCHEMATHESIS = [sys.executable, "-m", "schemathesis.cli"]


def test_a_fuzzed_service_gives_no_server_error(service, tmp_path):
    # ready first: /readyz answers 503 until the worker process has started and holds the job queue
    wait_for(lambda: httpx.get(f"{service['url']}/readyz", timeout=5).status_code == 200, what="a live worker")
    report = tmp_path / "schemathesis.json"
    run = subprocess.run(
        [
            *SCHEMATHESIS,
            "run",
            f"{service['url']}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "7",
            "--request-timeout",
            "60",
            "--exclude-path-regex",
            "/events$",  # a stream that follows a job until it ends
            "-H",
            f"Authorization: Bearer {service['key']}",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=tmp_path,  # its example database (.schemathesis/) goes there, not into the checkout
    )
    assert report.is_file(), run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(report.read_text())
    assert result["complete"] and result["operations"]["tested"] >= 25, result["operations"]
    server_errors = [f for f in result["failures"] if f["code"] == "ST101"]
    assert server_errors == [], run.stdout[-6000:]
    assert result["test_cases"]["errored"] == 0, run.stdout[-6000:]
    print(
        "\n".join(f"{f['code']} {f['title']}: {f['count']} ({', '.join(f['operations'])})" for f in result["failures"])
    )
