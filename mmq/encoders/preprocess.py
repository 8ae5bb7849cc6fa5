"""Images into a model's input batch with torch: resize the shorter side, centre-crop,
normalise. On a GPU, JPEGs are decoded there too (nvJPEG), so its CPU only reads files.

One recipe for every model that resizes, crops and normalises (EfficientNet-Lite, CLIP's
image processors), on whichever device the model runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mmq.media import EncodedJpeg, Picture, as_image

log = logging.getLogger(__name__)

# torchvision's CUDA JPEG decoder is not safe to call from several threads at once, and it
# writes on a stream of its own: decodes take turns on one stream (see `_device_pixels`).
_NVJPEG_LOCK = threading.Lock()
_nvjpeg_stream: Any = None


@dataclass(frozen=True)
class Recipe:
    side: int  # the shorter side after resizing
    crop: tuple[int, int]  # (height, width) of the centre crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def prepare(pictures: Sequence[Picture], recipe: Recipe, device: str, dtype: Any) -> Any:
    """`(n, 3, height, width)` on `device`, in `dtype` (channels-last on a GPU, as
    convolutions there want it). Resizing is bicubic with antialiasing, as Pillow's."""
    import torch
    from torchvision.transforms.v2 import functional as F

    crops = []
    for pixels in _pixels(pictures, device):
        resized = F.resize(
            pixels, [recipe.side], interpolation=F.InterpolationMode.BICUBIC, antialias=True
        )
        crops.append(F.center_crop(resized, list(recipe.crop)))
    batch = torch.stack(crops).float().div_(255.0)
    mean = torch.tensor(recipe.mean, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(recipe.std, device=batch.device).view(1, 3, 1, 1)
    batch = batch.sub_(mean).div_(std).to(dtype)
    if device == "cuda":
        # Queued on the default stream, which the model's passes use too: they run after it.
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def _pixels(pictures: Sequence[Picture], device: str) -> list[Any]:
    """Each picture as a uint8 `(3, h, w)` tensor on `device`. JPEGs left encoded are
    decoded there in one batch; where nvJPEG refuses one (CMYK, say, or corrupt data), it
    is decoded on the CPU instead, and a corrupt file fails with InvalidInput as always."""
    from torchvision.transforms.v2 import functional as F

    out: list[Any] = [None] * len(pictures)
    jpegs = [i for i, p in enumerate(pictures) if isinstance(p, EncodedJpeg)]
    if jpegs and device == "cuda":
        decoded = _nvjpeg([pictures[i] for i in jpegs])  # type: ignore[misc]
        for i, pixels in zip(jpegs, decoded, strict=True):
            out[i] = pixels
    for i, picture in enumerate(pictures):
        if out[i] is None:
            out[i] = F.pil_to_tensor(as_image(picture).convert("RGB")).to(device)
    return out


def _nvjpeg(jpegs: list[EncodedJpeg]) -> list[Any]:
    """Decoded on the GPU, or None for each one nvJPEG could not decode."""
    data = [_as_tensor(j.data) for j in jpegs]
    try:
        return _device_pixels(data)
    except RuntimeError:
        pass
    # One bad file fails the whole call: decode one at a time to keep the others.
    out: list[Any] = []
    for one in data:
        try:
            out.extend(_device_pixels([one]))
        except RuntimeError as exc:
            log.info("nvJPEG could not decode an image (%s); decoding it on the CPU", exc)
            out.append(None)
    return out


def _device_pixels(data: list[Any]) -> list[Any]:
    global _nvjpeg_stream
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    # The decoder allocates its output on the current stream but fills it from a stream of
    # its own, without waiting: on the shared default stream it could be handed memory that
    # queued model kernels still read (pytorch/vision#9606). A stream used for nothing
    # else, drained before the pixels leave it, rules that out.
    with _NVJPEG_LOCK:
        if _nvjpeg_stream is None:
            _nvjpeg_stream = torch.cuda.Stream()
        with torch.cuda.stream(_nvjpeg_stream):
            pixels = decode_jpeg(
                data, mode=ImageReadMode.RGB, device="cuda", apply_exif_orientation=True
            )
            _nvjpeg_stream.synchronize()
    for p in pixels:
        p.record_stream(torch.cuda.current_stream())  # freed after the work that uses it
    return list(pixels)


def nvjpeg_works() -> bool:
    """Whether this torchvision decodes JPEGs on this machine's GPU."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, format="JPEG")
    try:
        _device_pixels([_as_tensor(buffer.getvalue())])
    except RuntimeError as exc:
        log.warning("no GPU JPEG decoding (%s): JPEGs are decoded on the CPU", exc)
        return False
    return True


def _as_tensor(data: bytes) -> Any:
    import torch

    return torch.frombuffer(bytearray(data), dtype=torch.uint8)
