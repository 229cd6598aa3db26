"""The worker processes `tunebridge serve` starts, kept alive: a worker that dies (kill -9, out of
memory, a crash) is started again after a back-off (1 s, doubling to 60 s while it keeps dying; reset
after it has run a minute), and logged. The new worker takes the dead one's job over when its lease
ends, and resumes it from the last checkpoint."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from typing import Any

log = logging.getLogger("tunebridge.supervisor")
FIRST_BACKOFF_S, MAX_BACKOFF_S, STABLE_S = 1.0, 60.0, 60.0


class Supervisor:
    def __init__(self, settings: Any, count: int, *, check_every_s: float = 1.0):
        self.settings, self.count, self.check_every_s = settings, count, check_every_s
        self.procs: list[Any] = []
        self.restarts = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="tunebridge-supervisor", daemon=True)

    def start(self) -> Supervisor:
        with self._lock:
            self.procs = [self._spawn(i) for i in range(self.count)]
        self._started = [time.monotonic()] * self.count
        self._backoff = [FIRST_BACKOFF_S] * self.count
        if self.count:
            self._thread.start()
        return self

    def _spawn(self, i: int):
        from backend.worker import worker_main

        context = multiprocessing.get_context("spawn")  # fresh interpreters: no torch state shared with the server
        proc = context.Process(
            target=worker_main, args=(self.settings,), kwargs={"parent_pid": os.getpid()}, name=f"tunebridge-worker-{i}"
        )
        proc.start()
        return proc

    def _watch(self) -> None:
        while not self._stopping.wait(self.check_every_s):
            for i in range(self.count):
                proc = self.procs[i]
                now = time.monotonic()
                if proc.is_alive():
                    if now - self._started[i] >= STABLE_S:
                        self._backoff[i] = FIRST_BACKOFF_S
                    continue
                wait = self._backoff[i]
                log.warning(
                    "worker %d (pid %s) exited with code %s; starting it again in %.0f s",
                    i,
                    proc.pid,
                    proc.exitcode,
                    wait,
                )
                if self._stopping.wait(wait):
                    return
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self.procs[i] = self._spawn(i)
                    self.restarts += 1
                self._started[i] = time.monotonic()
                self._backoff[i] = min(MAX_BACKOFF_S, wait * 2)
                log.warning("worker %d started again (pid %s)", i, self.procs[i].pid)

    def stop(self, timeout_s: float = 120.0) -> None:
        """SIGTERM every worker (each checkpoints and re-queues its job) and wait for them."""
        with self._lock:
            self._stopping.set()
            procs = list(self.procs)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join(timeout=timeout_s)
