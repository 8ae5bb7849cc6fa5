"""Dynamic batching in a threads-pool worker: concurrent encodes merged into model batches.

In-process with the session's `lite` encoder on the CPU: no server, no worker process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from mmq.encoders.base import Encoder
from mmq.encoders.batching import BatchingEncoder

T = TypeVar("T")


def pictures(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)) for _ in range(n)]


def concurrently(fn: Callable[[T], Any], args: list[T]) -> list[Any]:
    """`fn` of each arg, all started at once, each in its own thread; an exception raised
    is returned in its place."""
    out: list[Any] = [None] * len(args)
    start = threading.Barrier(len(args))

    def run(i: int) -> None:
        start.wait()
        try:
            out[i] = fn(args[i])
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(args))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_concurrent_encodes_share_forward_passes_and_match_the_model(encoder: Encoder) -> None:
    batching = BatchingEncoder(encoder, max_batch=8, max_wait_s=0.2)
    batching.load()
    assert (batching.name, batching.dim, batching.version) == (
        encoder.name,
        encoder.dim,
        encoder.version,
    )
    images = pictures(8)
    found = concurrently(lambda im: batching.encode_images([im])[0], images)
    assert batching.items_encoded == 8 and batching.forward_passes < 8
    np.testing.assert_allclose(np.stack(found), encoder.encode_images(images), atol=1e-5)
    texts = ["a cat", "a cup of coffee", "a rocket"]
    found = concurrently(lambda t: batching.encode_texts([t])[0], texts)
    np.testing.assert_allclose(np.stack(found), encoder.encode_texts(texts), atol=1e-5)


def test_a_bad_request_fails_alone(encoder: Encoder) -> None:
    batching = BatchingEncoder(encoder, max_batch=8, max_wait_s=0.2)
    batching.load()
    good = encoder.prepare_images(pictures(1))
    bad = torch.zeros((1, 3, 7, 7))  # a batch that cannot join the others

    def encode(prepared: torch.Tensor) -> np.ndarray:
        return batching.encode_prepared(batching.join_prepared([prepared]), 1)

    found = concurrently(encode, [good, bad, good])
    # The joined batch fails (sizes differ), then each request runs alone: the bad one fails
    # with the model's own error, the good ones get their rows.
    assert isinstance(found[1], RuntimeError), found[1]
    assert "Kernel size can't be greater than actual input size" in str(found[1])
    for row in (found[0], found[2]):
        np.testing.assert_allclose(row, encoder.encode_images(pictures(1)), atol=1e-5)


def test_streams_run_forward_passes_side_by_side(encoder: Encoder) -> None:
    batching = BatchingEncoder(encoder, max_batch=2, max_wait_s=0.05, streams=2)
    batching.load()
    running, most = 0, 0
    lock = threading.Lock()
    forward = encoder.encode_prepared

    def counted(prepared: torch.Tensor, n: int) -> np.ndarray:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return forward(prepared, n)
        finally:
            with lock:
                running -= 1

    images = pictures(8)
    setattr(encoder, "encode_prepared", counted)  # noqa: B010 (assigning a method upsets mypy)
    try:
        found = concurrently(lambda im: batching.encode_images([im])[0], images)
    finally:
        del encoder.encode_prepared  # the fixture's encoder is shared: back to its method
    assert most == 2
    assert batching.items_encoded == 8
    np.testing.assert_allclose(np.stack(found), encoder.encode_images(images), atol=1e-5)


def test_a_call_larger_than_a_batch_is_cut_into_passes_in_order(encoder: Encoder) -> None:
    batching = BatchingEncoder(encoder, max_batch=2, max_wait_s=0.0, streams=2)
    batching.load()
    images = pictures(7)
    found = batching.encode_images(images)
    assert batching.forward_passes >= 4  # 2 + 2 + 2 + 1, whichever stream ran each
    np.testing.assert_allclose(found, encoder.encode_images(images), atol=1e-5)


def test_a_lone_query_does_not_wait_and_announced_ones_share_a_pass(encoder: Encoder) -> None:
    batching = BatchingEncoder(encoder, max_batch=2, max_wait_s=0.0, text_batch=8, text_wait_s=2.0)
    batching.load()
    batching.encode_texts(["warm-up"])
    t0 = time.monotonic()
    with batching.text_coming():
        batching.encode_texts(["a lone query"])
    assert time.monotonic() - t0 < 1.0  # its own announcement does not hold it
    passes = batching.forward_passes
    texts = ["a cat", "a cup of coffee", "a rocket", "a dog on grass"]
    arrived = threading.Barrier(len(texts))

    def search(text: str) -> np.ndarray:
        with batching.text_coming():
            arrived.wait()  # every task has announced its text before any sends it
            time.sleep(0.05 * texts.index(text))  # and they send them 50 ms apart
            return batching.encode_texts([text])[0]

    found = concurrently(search, texts)
    assert batching.forward_passes == passes + 1
    np.testing.assert_allclose(np.stack(found), encoder.encode_texts(texts), atol=1e-5)
