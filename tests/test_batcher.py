"""The batcher's queue under a stuck request: a caller that times out while queued is dropped (its
prompt never reaches the model), while the others are answered. The model here is a scripted pool,
so the queue itself is what is tested (the real model runs in test_serving.py)."""

from __future__ import annotations

import threading
import time

import pytest

from backend.inference.batcher import Batcher, ClientGoneError, RequestTimeoutError
from backend.inference.pool import GenRequest, GenResult, Target


class HeldPool:
    """Answers each batch with the prompts' texts; the first batch waits until released."""

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Event()
        self.batches: list[list[str]] = []

    def admit(self, target, messages, max_new_tokens):
        return 1

    def generate(self, target, requests, streamer=None):
        self.batches.append([r.messages[0][1] for r in requests])
        if len(self.batches) == 1:
            self.started.set()
            self.release.wait(30)
        return [GenResult(r.messages[0][1], "stop", 1, 1) for r in requests]


def _ask(text: str) -> GenRequest:
    return GenRequest((("user", text),), max_new_tokens=4)


def test_a_request_that_times_out_in_the_queue_is_dropped_and_never_run():
    pool = HeldPool()
    batcher = Batcher(pool, max_batch=1, window_s=0)  # one at a time: the second must queue
    target = Target("tiny")
    slow: dict = {}
    first = threading.Thread(target=lambda: slow.update(out=batcher.generate(target, _ask("slow"))))
    first.start()
    assert pool.started.wait(10)
    started = time.perf_counter()
    with pytest.raises(RequestTimeoutError, match="still queued and was dropped"):
        batcher.generate(target, _ask("abandoned"), timeout_s=0.3)
    assert time.perf_counter() - started < 2
    pool.release.set()
    first.join(10)
    assert slow["out"].text == "slow"
    assert batcher.generate(target, _ask("next"), timeout_s=10).text == "next"  # the queue goes on
    assert pool.batches == [["slow"], ["next"]] and batcher.dropped == 1  # "abandoned" never reached the model
    batcher.close()


def test_a_request_that_times_out_while_running_says_so():
    pool = HeldPool()
    batcher = Batcher(pool, max_batch=1, window_s=0, timeout_s=0.3)  # the service-wide limit
    with pytest.raises(RequestTimeoutError, match="it had started: its answer is discarded"):
        batcher.generate(Target("tiny"), _ask("slow"))
    pool.release.set()
    assert batcher.generate(Target("tiny"), _ask("after"), timeout_s=10).text == "after"
    batcher.close()


def test_a_queued_request_whose_client_left_is_dropped():
    pool = HeldPool()
    batcher = Batcher(pool, max_batch=1, window_s=0)
    target = Target("tiny")
    first = threading.Thread(target=lambda: batcher.generate(target, _ask("slow")))
    first.start()
    assert pool.started.wait(10)
    gone_at = time.monotonic() + 0.3
    started = time.perf_counter()
    with pytest.raises(ClientGoneError):
        batcher.generate(target, _ask("left"), disconnected=lambda: time.monotonic() > gone_at)
    assert time.perf_counter() - started < 2  # noticed within a poll, not when the queue reached it
    pool.release.set()
    first.join(10)
    assert batcher.generate(target, _ask("next"), timeout_s=10).text == "next"
    assert pool.batches == [["slow"], ["next"]] and batcher.dropped == 1
    batcher.close()
