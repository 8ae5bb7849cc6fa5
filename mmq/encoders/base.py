"""The encoder contract every model follows."""

from __future__ import annotations

import hashlib
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from mmq.encoders.autoencoder import Autoencoder
from mmq.encoders.calibration import IDENTITY, Calibration
from mmq.errors import MmqError, Unavailable
from mmq.media import Picture


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def hash_files(paths: Iterable[Path], *extra: str) -> str:
    """A short content hash of weight/config files plus recipe parameters: the model version."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    for item in extra:
        digest.update(item.encode())
    return digest.hexdigest()[:16]


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity, not the host's count)."""
    return len(os.sched_getaffinity(0))


def default_batch_size(device: str) -> int:
    """Items per forward pass where MMQ_ENCODE_BATCH_SIZE is unset. A CPU: 2, the best of
    the forward-pass curve with one stream per core (`make bench`). A GPU: 64, since it needs
    many images per pass to be busy, and fp16 activations of 64 images fit any card."""
    return 64 if device == "cuda" else 2


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise Unavailable("MMQ_DEVICE=cuda but no CUDA device is available")
    return device


class Encoder(ABC):
    """Decoded media in, float32 L2-normalised `(n, dim)` arrays out.

    Construction is cheap; `load()` does the heavy work once (idempotent, thread-safe), so a
    worker can build the encoder at import and load it in `worker_process_init`.
    """

    name: str
    dim: int
    version: str
    # Cosine distance between consecutive video frames' vectors that marks a shot cut. It
    # depends on how the model spreads images; measure it with
    # benchmarks/video_cut_distances.py. MMQ_VIDEO_CUT_DISTANCE overrides it. (Not measured
    # for CLIP models yet: they get ConSE's value.)
    cut_distance: float = 0.3
    # The shorter side, in pixels, that the model's preprocessing resizes images to. A JPEG
    # at least twice as large is decoded at 1/2, 1/4 or 1/8 scale, never below this (a
    # fraction of the cost of a full decode). None: always decode in full.
    decode_side: int | None = None
    # True where the encoder decodes JPEGs on its own device (a GPU): ingest then hands
    # JPEGs over undecoded, once their headers passed the checks (mmq.media.EncodedJpeg).
    decodes_jpeg: bool = False
    # How search makes scores of different item kinds comparable (encoders/calibration.py).
    # A model that ships one sets it in `_load`; the identity (raw cosines) otherwise. Not
    # part of the version: it reorders results at query time, stored vectors stay valid.
    calibration: Calibration = IDENTITY
    # The learned `autoencoder` fusion of this model's vectors (encoders/autoencoder.py),
    # where it has one; set in `_load`. Its hash joins the version of a collection of codes.
    autoencoder: Autoencoder | None = None

    def __init__(self, device: str = "auto") -> None:
        self.requested_device = device
        self.device = "cpu"
        self._loaded = False
        self._lock = threading.Lock()

    def load(self) -> Encoder:
        with self._lock:
            if not self._loaded:
                self.device = resolve_device(self.requested_device)
                self._load()
                self._loaded = True
        return self

    def text_as_encoded(self, text: str) -> str:
        """The text the model's text tower reads for `text`: itself, unless the model
        rewrites what it cannot read (the lite towers read Chinese as English glosses)."""
        return text

    def text_coming(self) -> AbstractContextManager[None]:
        """Around a task that will encode a text soon (a search): a batching encoder holds
        a pass of texts for it a moment, so that queries arriving together share it."""
        return nullcontext()

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._check(l2_normalize(self._encode_texts(list(texts))), len(texts))

    def encode_images(self, images: Sequence[Picture]) -> np.ndarray:
        self.load()
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_prepared(self.prepare_images(list(images)), len(images))

    def submit_images(self, images: Sequence[Picture]) -> Future[np.ndarray]:
        """`encode_images` as a future. Here it is done on return; a batching encoder
        returns at once, so the caller can decode its next images while the model works."""
        done: Future[np.ndarray] = Future()
        try:
            done.set_result(self.encode_images(images))
        except Exception as exc:
            done.set_exception(exc)
        return done

    def prepare_images(self, images: Sequence[Picture]) -> Any:
        """The model's input batch (resized, cropped, normalised): CPU work that touches no
        model, so a batching worker runs it in each task's thread, beside the model."""
        return list(images)

    def encode_prepared(self, prepared: Any, n: int) -> np.ndarray:
        """Unit vectors of `n` images from `prepare_images` (or `join_prepared`) output."""
        self.load()
        return self._check(l2_normalize(self._encode_prepared(prepared)), n)

    @staticmethod
    def join_prepared(parts: list[Any]) -> Any:
        """One batch from several `prepare_images` outputs."""
        if isinstance(parts[0], list):
            return [x for part in parts for x in part]
        import torch

        return torch.cat(parts)

    def _check(self, out: np.ndarray, n: int) -> np.ndarray:
        if out.shape != (n, self.dim) or not np.isfinite(out).all():
            raise MmqError(f"{self.name} produced {out.shape}, expected ({n}, {self.dim})")
        return out

    @abstractmethod
    def _load(self) -> None:
        """Load weights; must set `dim` and `version`."""

    @abstractmethod
    def _encode_texts(self, texts: list[str]) -> np.ndarray: ...

    @abstractmethod
    def _encode_prepared(self, prepared: Any) -> np.ndarray:
        """Raw image vectors from a prepared batch: the model's forward pass."""
