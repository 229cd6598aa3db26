"""The cores tunebridge's processes share (backend/cores.py): an even split among live holders, re-read
as processes come and go, and real processes that set their torch threads from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend import cores
from backend.cores import Holder, share_of


@pytest.fixture()
def budget(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEBRIDGE_CORES_DIR", str(tmp_path / "cores"))
    monkeypatch.setenv("TUNEBRIDGE_CORES", "4")
    return tmp_path / "cores"


def test_an_even_share_of_what_fixed_holders_leave():
    a, b, c = Holder(1, "serve", 0), Holder(2, "train", 0), Holder(3, "worker", 1)
    assert share_of(a, [a], 4) == 4
    assert share_of(a, [a, b], 4) == 2 and share_of(b, [a, b], 4) == 2
    assert share_of(a, [a, b, c], 4) == 1 and share_of(c, [a, b, c], 4) == 1  # 4 - 1 fixed, split by 2
    assert share_of(a, [a, b, c], 2) == 1  # never below one thread
    assert share_of(Holder(4, "eval", 3), [a, b], 2) == 3  # told its count: keeps it


def test_holders_of_processes_that_are_gone_no_longer_count(budget):
    share = cores.Share("eval")
    budget.joinpath("999999999.json").write_text(json.dumps({"pid": 999999999, "role": "train", "fixed": 0}))
    reused = {"pid": os.getppid(), "role": "train", "fixed": 0, "started": "1"}  # a live pid, another start time
    budget.joinpath(f"{os.getppid()}.json").write_text(json.dumps(reused))
    budget.joinpath("junk.json").write_text("{not json")
    assert [h.pid for h in cores.holders()] == [os.getpid()]
    assert not budget.joinpath("999999999.json").exists()
    assert share.threads() == 4 and cores.crowded(share) is None
    share.release()
    assert cores.holders() == []


CHILD = """
import sys, time
from pathlib import Path
import torch
from backend import cores
cores.RECHECK_S = 0.2
share = cores.claim(sys.argv[1])
while len(cores.holders()) < 2:
    time.sleep(0.05)
print(share.apply(), torch.get_num_threads(), flush=True)
Path(sys.argv[2]).touch()
while True:
    time.sleep(0.3)
    print(share.apply(), torch.get_num_threads(), cores.crowded(share) is not None, flush=True)
"""


def test_two_processes_started_together_each_take_their_share_and_the_survivor_takes_all(budget, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, role, str(tmp_path / role)], env=env,
                              stdout=subprocess.PIPE, text=True) for role in ("train", "eval")]
    try:
        first = [p.stdout.readline().split() for p in procs]  # type: ignore[union-attr]
        assert first == [["2", "2"], ["2", "2"]]  # 4 cores, two holders: 2 threads each, set in torch
        assert next(p.stdout.readline() for p in procs[1:]).split()[2] == "True"  # type: ignore[union-attr]
        procs[0].send_signal(signal.SIGKILL)  # killed at the worst moment: no clean-up
        procs[0].wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = procs[1].stdout.readline().split()  # type: ignore[union-attr]
            if line[:2] == ["4", "4"]:
                break
        assert line == ["4", "4", "False"]  # the survivor took the cores back, and is alone
    finally:
        for p in procs:
            p.kill()
            p.wait()
