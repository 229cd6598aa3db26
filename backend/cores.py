"""The CPU cores that tunebridge's processes share on one machine.

Two torch processes that each use every core spin against each other (measured on 2 cores: 10× slower
or worse), so every torch process tunebridge starts — the server, its workers, `train`, `eval`,
`extract`, the agents — takes its threads from one budget instead: the cores this machine lets it use,
split evenly among the tunebridge processes that hold a share right now. Each holder is a small file in
a folder shared by the user's processes (`TUNEBRIDGE_CORES_DIR`, else the temporary folder); a holder
whose process is gone (ended, or killed with -9) no longer counts. A process re-reads the budget at
natural points (before a training step, before a batch) and shrinks or grows its thread pool, so the
first process gives up cores when a second one starts and takes them back when it ends.

A process that was told its thread count (`--threads`, `TUNEBRIDGE_WORKER_THREADS`, ...) keeps it, and
the others share what it leaves. `TUNEBRIDGE_CORES` overrides the number of cores.
"""

from __future__ import annotations

import atexit
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

RECHECK_S = 2.0  # how often a holder re-reads the budget at most


def machine_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's total), or TUNEBRIDGE_CORES."""
    given = os.environ.get("TUNEBRIDGE_CORES", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def folder() -> Path:
    path = Path(os.environ.get("TUNEBRIDGE_CORES_DIR") or Path(tempfile.gettempdir()) / f"tunebridge-cores-{os.getuid()}")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Holder:
    pid: int
    role: str  # "train", "serve", "worker", "eval", "extract", "agents", ...
    fixed: int  # threads it was told to use, or 0: an even share
    started: str = ""  # the process's start time (Linux): a pid reused by another process is not this holder


def holders() -> list[Holder]:
    """The live holders, oldest first; files of processes that are gone are removed."""
    found = []
    for path in sorted(folder().glob("*.json"), key=lambda p: p.stat().st_mtime_ns if p.exists() else 0):
        try:
            data = json.loads(path.read_text())
            holder = Holder(int(data["pid"]), str(data["role"]), int(data.get("fixed", 0)), str(data.get("started", "")))
        except (OSError, ValueError, KeyError):
            continue
        if _alive(holder.pid) and holder.started == _started(holder.pid):
            found.append(holder)
        else:
            path.unlink(missing_ok=True)
    return found


def share_of(me: Holder, live: list[Holder], cores: int) -> int:
    """The threads `me` should use: its fixed count, or an even share of the cores the fixed holders leave."""
    if me.fixed:
        return me.fixed
    sharing = [h for h in live if not h.fixed and h.pid != me.pid] + [me]
    left = cores - sum(h.fixed for h in live if h.pid != me.pid)
    return max(1, left // len(sharing))


class Share:
    """This process's claim on the cores: `threads()` is its share now, `apply()` sets torch to it."""

    def __init__(self, role: str, fixed: int = 0):
        self.me = Holder(os.getpid(), role, max(0, fixed), _started(os.getpid()))
        self.path = folder() / f"{self.me.pid}.json"
        self.path.write_text(json.dumps({"pid": self.me.pid, "role": role, "fixed": self.me.fixed,
                                         "started": self.me.started}))
        atexit.register(self.release)
        self._checked, self._threads = 0.0, 0

    def others(self) -> list[Holder]:
        return [h for h in holders() if h.pid != self.me.pid]

    def threads(self) -> int:
        now = time.monotonic()
        if not self._threads or now - self._checked >= RECHECK_S:
            self._threads = share_of(self.me, holders(), machine_cores())
            self._checked = now
        return self._threads

    def apply(self) -> int:
        """Set torch's intra-op threads to this process's share (cheap: re-read at most every RECHECK_S)."""
        import torch

        threads = self.threads()
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        return threads

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


_SHARE: Share | None = None


def claim(role: str, fixed: int = 0) -> Share:
    """This process's share (one per process: a second claim changes its role and fixed count)."""
    global _SHARE
    if _SHARE is None or _SHARE.me.role != role or _SHARE.me.fixed != fixed:
        if _SHARE is not None:
            _SHARE.release()
        _SHARE = Share(role, fixed)
    return _SHARE


def current() -> Share | None:
    return _SHARE


def crowded(share: Share) -> str | None:
    """A note for the user when other tunebridge processes hold cores here too, else None."""
    others = share.others()
    if not others:
        return None
    held = ", ".join(f"pid {h.pid} ({h.role})" for h in others)
    return (f"note: {len(others)} other tunebridge process{'es' if len(others) > 1 else ''} share this machine's "
            f"{machine_cores()} cores ({held}); this one uses {share.threads()} thread(s) while they run, and "
            "everything runs slower: heavy work goes fastest one at a time")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process with this pid: not ours, but alive
        return True
    return True


def _started(pid: int) -> str:
    """When the process started (clock ticks since boot, from /proc), or "" where /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the command name before ")" may hold spaces
