"""The batcher's queue under a stuck request: a caller that times out while queued is dropped (its
prompt never reaches the model), while the others are answered. The model here is a scripted pool,
so the queue itself is what is tested; the last tests run a real (tiny) model: a row whose caller left
stops inside a running batch while the other rows go on."""

from __future__ import annotations

import threading
import time

import pytest

from backend.inference.batcher import Batcher, ClientGoneError, RequestTimeoutError
from backend.inference.bundle import AdapterBundle
from backend.inference.pool import GenRequest, GenResult


class HeldPool:
    """Answers each batch with the prompts' texts; the first batch waits until released."""

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Event()
        self.batches: list[list[str]] = []

    def admit(self, target, messages, max_new_tokens):
        return 1

    def generate(self, target, requests, streamer=None, gone=None):
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
    target = AdapterBundle("tiny")
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
    with pytest.raises(RequestTimeoutError, match="it had started and was stopped"):
        batcher.generate(AdapterBundle("tiny"), _ask("slow"))
    pool.release.set()
    assert batcher.generate(AdapterBundle("tiny"), _ask("after"), timeout_s=10).text == "after"
    batcher.close()


def test_a_queued_request_whose_client_left_is_dropped():
    pool = HeldPool()
    batcher = Batcher(pool, max_batch=1, window_s=0)
    target = AdapterBundle("tiny")
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


def test_a_running_chat_whose_caller_left_stops_and_its_batch_goes_on(tiny_model):
    """Plain generation stops per row: the row whose caller left ends within a step; the other row of
    the same batch runs to its own token limit; the batch returns as soon as every row has ended."""
    from transformers import AutoModelForCausalLM

    from backend.inference.generate import padded_generate
    from backend.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    prompts = [tokenizer("TOTAL RM 42.50")["input_ids"], tokenizer("Kedai Buku")["input_ids"]]
    steps = {"n": 0}

    def left() -> bool:  # asked once per generated token: the caller leaves after 3 tokens
        steps["n"] += 1
        return steps["n"] > 3

    never = -1  # no end-of-turn token: only the per-row rules end a row
    new = padded_generate(model, prompts, pad_id=tokenizer.pad_token_id, eos_ids=[never], max_new_tokens=40,
                          device="cpu", row_limits=[40, 12], row_gone=[left, lambda: False])
    kept = [[t for t in row if t != tokenizer.pad_token_id] for row in new]
    assert len(new[0]) == 12  # the batch ended when its last row did (12 tokens), not at 40
    assert len(kept[1]) == 12 and len(kept[0]) <= 4  # the row whose caller left stopped after 3-4 tokens


def test_a_served_chat_that_times_out_mid_generation_frees_the_model(tiny_model):
    """Through the real pool and batcher: a long generation whose caller timed out is stopped, so the next
    request does not wait for the rest of its 4,000 tokens."""
    from backend.inference.pool import ModelPool

    batcher = Batcher(ModelPool(device="cpu"), max_batch=4, window_s=0)
    target = AdapterBundle(tiny_model)
    batcher.generate(target, _ask("warm up"), timeout_s=60)  # loaded before the clock starts
    long = GenRequest((("user", "Kedai Buku Ilmu"),), max_new_tokens=4000)  # greedy: this model never ends it
    with pytest.raises(RequestTimeoutError, match="started and was stopped"):
        batcher.generate(target, long, timeout_s=0.5)
    started = time.perf_counter()
    answer = batcher.generate(target, _ask("next"), timeout_s=60)
    waited = time.perf_counter() - started
    assert answer.completion_tokens <= 4 and waited < 2, waited  # not behind the abandoned 4,000 tokens (~6 s)
    assert batcher.abandoned == 1
    batcher.close()
