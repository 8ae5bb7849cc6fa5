"""Dynamic batching: concurrent callers' encode requests merged into model batches.

A worker running tasks in threads (the default pool) serves many small messages at once,
often one item each. Each task decodes its own input in its own thread, then hands it to
the model threads here. A model thread merges whatever requests are waiting (up to
`max_batch` items, waiting at most `max_wait_s` for more images) into a single forward pass
and hands each caller its rows back. Decoding in the task threads overlaps with the model's
work.

With `streams` > 1, that many model threads run forward passes side by side (the model is
shared: inference does not modify it). On a CPU, one single-threaded forward pass per core
beats one pass spread over the cores: a pass has hundreds of small operations, and every one
of them synchronises torch's intra-op threads, which stall whenever a decoding thread holds
a core (benchmarks/forward_variants.py measures both).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmq.encoders.base import Encoder
from mmq.media import Picture


@dataclass(eq=False)
class _Call:
    """One caller's encode, split into parts of at most a batch: its rows come back part by
    part, from whichever model threads ran them."""

    n: int
    done: Future[np.ndarray] = field(default_factory=Future)
    rows: dict[int, np.ndarray] = field(default_factory=dict)  # first index → rows
    lock: threading.Lock = field(default_factory=threading.Lock)

    def deliver(self, start: int, rows: np.ndarray) -> None:
        with self.lock:
            if self.done.done():
                return
            self.rows[start] = rows
            if sum(len(r) for r in self.rows.values()) == self.n:
                self.done.set_result(np.concatenate([self.rows[i] for i in sorted(self.rows)]))

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if not self.done.done():
                self.done.set_exception(exc)


@dataclass(eq=False)
class _Request:
    """A part of a call: what a forward pass takes whole."""

    modality: str  # "image" (inputs: a prepared batch) or "text" (inputs: strings)
    inputs: Any
    n: int
    call: _Call
    start: int  # its first row in the call


_local = threading.local()


class BatchingEncoder(Encoder):
    """Wraps an encoder; thread-safe; `streams` model threads do every forward pass."""

    def __init__(
        self,
        inner: Encoder,
        *,
        max_batch: int,
        max_wait_s: float,
        streams: int = 1,
        text_batch: int | None = None,
        text_wait_s: float = 0.0,
    ) -> None:
        """Images: up to `max_batch` per pass, waiting up to `max_wait_s` for company;
        texts: up to `text_batch` (default `max_batch`), waiting up to `text_wait_s`."""
        super().__init__(inner.requested_device)
        self.inner, self.streams = inner, streams
        self._limits = {
            "image": (max_batch, max_wait_s),
            "text": (text_batch or max_batch, text_wait_s),
        }
        self.name = inner.name
        self.cut_distance = inner.cut_distance
        self._requests: queue.Queue[_Request] = queue.Queue()
        self._texts_coming = 0  # tasks inside `text_coming` that have not sent their text
        self._held: _Request | None = None  # taken while batching the other modality
        # One model thread at a time gathers its batch; the others run theirs meanwhile.
        self._gathering = threading.Lock()
        self._counting = threading.Lock()
        self.forward_passes = self.items_encoded = 0  # their ratio: the mean batch size

    def _load(self) -> None:
        self.inner.load()
        self.device, self.dim, self.version = self.inner.device, self.inner.dim, self.inner.version
        self.decode_side, self.decodes_jpeg = self.inner.decode_side, self.inner.decodes_jpeg
        self.calibration, self.autoencoder = self.inner.calibration, self.inner.autoencoder
        for i in range(self.streams):
            threading.Thread(target=self._serve, name=f"mmq-encoder-{i}", daemon=True).start()

    def prepare_images(self, images: Sequence[Picture]) -> Any:
        return self.inner.prepare_images(images)  # in the calling task's thread

    def text_as_encoded(self, text: str) -> str:
        return self.inner.text_as_encoded(text)

    def submit_images(self, images: Sequence[Picture]) -> Future[np.ndarray]:
        self.load()
        try:
            prepared = self.prepare_images(list(images))
        except Exception:
            return super().submit_images(images)  # fails (or not) alone, as a future
        return self._submit("image", prepared, len(images))

    def _encode_prepared(self, prepared: Any) -> np.ndarray:
        return self._submit("image", prepared, len(prepared)).result()

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        return self._submit("text", texts, len(texts)).result()

    @contextmanager
    def text_coming(self) -> Iterator[None]:
        with self._counting:
            self._texts_coming += 1
        _local.coming = True  # this thread's text has not been sent yet
        try:
            yield
        finally:
            self._text_sent()

    def _text_sent(self) -> None:
        """This thread's announced text is sent (or will not be): one fewer to wait for."""
        if getattr(_local, "coming", False):
            _local.coming = False
            with self._counting:
                self._texts_coming -= 1

    def _submit(self, modality: str, inputs: Any, n: int) -> Future[np.ndarray]:
        # A call larger than a batch is cut into batches, which the streams run side by side:
        # on a CPU, small passes are cheaper per image than large ones.
        call, batch = _Call(n), self._limits[modality][0]
        for start in range(0, max(n, 1), batch):
            stop = min(n, start + batch)
            part = inputs if (start, stop) == (0, n) else inputs[start:stop]
            self._requests.put(_Request(modality, part, stop - start, call, start))
        if modality == "text":
            self._text_sent()
        return call.done

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            try:
                self._run(batch)
            except BaseException as exc:  # never let the model thread die
                for request in batch:
                    request.call.fail(exc)

    def _next_batch(self) -> list[_Request]:
        with self._gathering:
            return self._gather()

    def _gather(self) -> list[_Request]:
        first = self._held or self._requests.get()
        self._held = None
        batch, size = [first], first.n
        # Images wait for company: other tasks are decoding theirs and will submit in a
        # moment. Texts wait only while other tasks announced one (`text_coming`): a lone
        # query goes at once, queries that arrive together share a pass.
        limit, wait_s = self._limits[first.modality]
        deadline = time.monotonic() + wait_s
        while size < limit:
            try:
                if first.modality == "text" and self._texts_coming <= 0:
                    request = self._requests.get_nowait()
                else:
                    request = self._requests.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if request.modality != first.modality:
                self._held = request  # it starts the next batch
                break
            batch.append(request)
            size += request.n
        return batch

    def _run(self, batch: list[_Request]) -> None:
        try:
            rows = self._encode(batch)
        except Exception:
            if len(batch) == 1:
                raise
            # One caller's bad input must not fail the others: encode each request alone.
            for request in batch:
                try:
                    request.call.deliver(request.start, self._encode([request]))
                except Exception as exc:
                    request.call.fail(exc)
            return
        with self._counting:
            self.forward_passes += 1
            self.items_encoded += len(rows)
        start = 0
        for request in batch:
            request.call.deliver(request.start, rows[start : start + request.n])
            start += request.n

    def _encode(self, batch: list[_Request]) -> np.ndarray:
        n = sum(request.n for request in batch)
        if batch[0].modality == "text":
            return self.inner.encode_texts([t for request in batch for t in request.inputs])
        return self.inner.encode_prepared(self.inner.join_prepared([r.inputs for r in batch]), n)
