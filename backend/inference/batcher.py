"""Dynamic batching: concurrent requests for the same target are generated together.

Request threads put work on a queue and wait on a future. One thread takes the oldest request, adds
every queued request that can share its `generate` call (same target and sampling settings), waits up
to `window_s` for more while the batch is below `max_batch`, and runs the batch. Requests that
arrive while a batch is generating form the next one, so under load batches fill without any wait.
`max_batch=1` turns batching off (the baseline the API benchmark compares against). A request not
answered within `timeout_s` gets a RequestTimeoutError; if it is still queued it is dropped (never
run), and a batch that is already running finishes for the others. Streaming
requests run alone, their tokens passed through a `TextIteratorStreamer`. Constrained extractions
are batched the same way, among themselves (`extraction.extract_many`); when a batch of them fails,
each is retried alone so that one bad document fails only its own request.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from typing import Any

from backend.errors import ClientGone, Unavailable
from backend.inference.bundle import AdapterBundle
from backend.inference.extraction import Document, extract_many
from backend.inference.pool import GenRequest, GenResult, ModelPool


@dataclass
class _Item:
    target: AdapterBundle
    request: GenRequest | Document
    future: Future
    streamer: Any = None
    options: tuple = ()  # extraction: (limit, review_confidence)
    gone: threading.Event = field(default_factory=threading.Event)  # its caller left (timeout, disconnect)

    @property
    def group(self) -> tuple:
        r = self.request
        if isinstance(r, Document):
            return (self.target, "extract", self.options)
        sampled = r.temperature > 0
        return (self.target, sampled and r.temperature, sampled and r.top_p, sampled and r.seed, self.streamer is None)


class RequestTimeoutError(Unavailable):
    """A request was not answered in time; if it had not started, it was dropped from the queue."""


class ClientGoneError(ClientGone):
    """The caller closed its connection: its request was dropped (from the queue, or from its batch)."""


class Batcher:
    def __init__(self, pool: ModelPool, *, max_batch: int = 8, window_s: float = 0.005, timeout_s: float | None = None):
        self.pool, self.max_batch, self.window_s, self.timeout_s = pool, max_batch, window_s, timeout_s
        self.dropped = 0  # requests whose callers gave up before their batch started
        self.abandoned = 0  # requests whose callers gave up while their batch ran
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0
        self.requests = 0
        self.largest = 0

    def generate(self, target: AdapterBundle, request: GenRequest, *, timeout_s: float | None = None,
                 disconnected: Callable[[], bool] | None = None) -> GenResult:
        self.pool.admit(target, request.chat, request.max_new_tokens)  # the caller's error, before queueing
        item = _Item(target, request, Future())
        self._put(item)
        return self._wait(item, timeout_s, disconnected)

    def extract(self, target: AdapterBundle, doc: Document, *, limit: int, review_confidence: float,
                timeout_s: float | None = None, disconnected: Callable[[], bool] | None = None) -> dict[str, Any]:
        """A constrained extraction (`extraction.extract_many`'s record), batched with concurrent ones.
        Its prompt and schema are checked before it is queued."""
        self.pool.admit(target, doc.spec.messages(doc.text), min(doc.max_new_tokens or doc.spec.budget, limit))
        gone = threading.Event()
        item = _Item(target, replace(doc, gone=gone.is_set), Future(), options=(limit, review_confidence), gone=gone)
        self._put(item)
        return self._wait(item, timeout_s, disconnected)

    def _wait(self, item: _Item, timeout_s: float | None, disconnected: Callable[[], bool] | None) -> Any:
        """The item's answer; on a timeout or a disconnected caller the item is dropped: from the queue if
        it has not started, else from its running batch (the other rows go on)."""
        limit = timeout_s if timeout_s is not None else self.timeout_s
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            step = 0.25 if disconnected is not None else None
            if limit is not None and deadline is not None:
                step = max(0.0, min(step if step is not None else limit, deadline - time.monotonic()))
            try:
                return item.future.result(timeout=step)
            except FutureTimeout:
                if deadline is not None and time.monotonic() >= deadline:
                    item.gone.set()
                    started = not item.future.cancel()
                    self.abandoned += started
                    raise RequestTimeoutError(f"no answer within {limit:g} s (TUNEBRIDGE_REQUEST_TIMEOUT_S); "
                                              + ("it had started and was stopped" if started else
                                                 "it was still queued and was dropped")) from None
                if disconnected is not None and disconnected():
                    item.gone.set()
                    if not item.future.cancel():
                        self.abandoned += 1
                    raise ClientGoneError("the client closed the connection; its request was dropped") from None

    def stream(self, target: AdapterBundle, request: GenRequest) -> tuple[Iterator[str], Future]:
        """Text pieces as they are generated, and a future with the final GenResult."""
        from transformers import TextIteratorStreamer

        self.pool.admit(target, request.chat, request.max_new_tokens)
        tokenizer = self.pool.tokenizer_for(target)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        future: Future = Future()
        self._put(_Item(target, request, future, streamer))
        return streamer, future

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=60)

    def _put(self, item: _Item) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="tunebridge-batcher", daemon=True)
                self._thread.start()
        self._queue.put(item)

    def _loop(self) -> None:
        held: list[_Item] = []  # taken off the queue, waiting for a batch of their own group
        while True:
            first = held.pop(0) if held else self._queue.get()
            if first is None:
                return
            batch = [first]
            if first.streamer is None:
                for other in [i for i in held if i.group == first.group][:self.max_batch - 1]:
                    held.remove(other)
                    batch.append(other)
                deadline = time.monotonic() + self.window_s
                while len(batch) < self.max_batch:
                    try:
                        item = self._queue.get_nowait() if time.monotonic() >= deadline else \
                            self._queue.get(timeout=deadline - time.monotonic())
                    except queue.Empty:
                        break
                    if item is None:
                        self._queue.put(None)  # finish this batch first, then stop
                        break
                    (batch if item.group == first.group else held).append(item)
            self._run(batch)

    def _run(self, batch: list[_Item]) -> None:
        waiting = [item for item in batch if item.future.set_running_or_notify_cancel()]
        self.dropped += len(batch) - len(waiting)  # their callers gave up (timeout) while they were queued
        if waiting:
            self._execute(waiting)

    def _execute(self, batch: list[_Item]) -> None:
        self.batches += 1
        self.requests += len(batch)
        self.largest = max(self.largest, len(batch))
        try:
            results = self._results(batch)
        except Exception as exc:
            if len(batch) > 1 and isinstance(batch[0].request, Document):
                for item in batch:
                    self._execute([item])
                return  # noqa: BLE001 - every waiting request gets the error
            for item in batch:
                if item.streamer is not None:
                    item.streamer.end()
                item.future.set_exception(exc)
            return
        for item, result in zip(batch, results):
            item.future.set_result(result)

    def _results(self, batch: list[_Item]) -> list[Any]:
        first = batch[0]
        if isinstance(first.request, Document):
            limit, review_confidence = first.options
            return extract_many(self.pool, first.target, [i.request for i in batch], limit=limit,  # type: ignore[misc]
                                review_confidence=review_confidence, batch_size=self.max_batch)
        return self.pool.generate(first.target, [i.request for i in batch], streamer=first.streamer,  # type: ignore[misc]
                                  gone=[i.gone.is_set for i in batch])
