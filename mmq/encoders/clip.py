"""Hugging Face CLIP-family encoders (CLIP, Chinese-CLIP, SigLIP), loaded from local files only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmq.encoders.base import Encoder, hash_files
from mmq.encoders.preprocess import Recipe, nvjpeg_works, prepare
from mmq.errors import BadRequest, NotFound
from mmq.media import Picture, as_image

_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "config.json")


def _local_folder(name_or_path: str) -> Path:
    """The checkpoint folder: a local directory, or the snapshot already in the HF cache."""
    if Path(name_or_path).is_dir():
        return Path(name_or_path)
    from huggingface_hub import snapshot_download

    try:
        # local_files_only: a worker must never block on, or depend on, the network.
        return Path(snapshot_download(name_or_path, local_files_only=True))
    except (OSError, ValueError) as exc:  # LocalEntryNotFoundError, HFValidationError
        raise NotFound(
            f"CLIP checkpoint {name_or_path!r} not found locally (neither a folder nor in the "
            "Hugging Face cache); no download is attempted"
        ) from exc


class ClipEncoder(Encoder):
    """Texts and images into a CLIP-family joint space via `get_text/image_features`."""

    def __init__(self, name_or_path: str, device: str = "auto") -> None:
        super().__init__(device=device)
        self.name_or_path = name_or_path
        self.name = f"clip:{name_or_path}"
        self.model: Any = None
        self.processor: Any = None
        self._recipe: Recipe | None = None  # set on a GPU: preprocessing runs there
        self.max_length = 77

    def _load(self) -> None:
        import torch
        from transformers import AutoModel, AutoProcessor

        folder = _local_folder(self.name_or_path)
        # fp16 halves memory and doubles throughput on GPUs; CPUs lack fast fp16 kernels.
        dtype = torch.float16 if self.device == "cuda" else torch.float32
        try:
            model = AutoModel.from_pretrained(folder, dtype=dtype, local_files_only=True)
            processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise BadRequest(f"cannot load CLIP checkpoint from {folder}: {exc}") from exc
        if not hasattr(model, "get_text_features") or not hasattr(model, "get_image_features"):
            raise BadRequest(f"{type(model).__name__} at {folder} is not a text-image model")
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.decode_side = _resize_side(processor)
        if self.device == "cuda":
            # The processor's own recipe, run on the GPU: its CPU work would starve the model.
            self._recipe = _recipe(processor)
            self.decodes_jpeg = self._recipe is not None and nvjpeg_works()
        self.max_length = self._text_max_length()
        weights = [p for pattern in _WEIGHT_PATTERNS for p in folder.glob(pattern)]
        self.version = hash_files(weights, type(model).__name__)
        projection_dim = getattr(model.config, "projection_dim", None)
        # SigLIP has no projection_dim: its width is whatever the text tower emits.
        self.dim = int(projection_dim or self._encode_texts(["probe"]).shape[1])

    def _text_max_length(self) -> int:
        # Tokenizers saved without a limit report ~1e30; the position table is the real bound.
        text_config = getattr(self.model.config, "text_config", self.model.config)
        positions = int(getattr(text_config, "max_position_embeddings", 77))
        return min(int(getattr(self.processor.tokenizer, "model_max_length", positions)), positions)

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        # Pad to the full length: SigLIP was trained that way; CLIP pools at EOS so is unaffected.
        inputs = self.processor(
            text=texts,
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            return _as_array(self.model.get_text_features(**inputs))

    def prepare_images(self, images: Sequence[Picture]) -> Any:
        self.load()  # the processor comes with the checkpoint
        if self._recipe is not None:
            return prepare(images, self._recipe, self.device, self.model.dtype)
        rgb = [as_image(image).convert("RGB") for image in images]
        return self.processor(images=rgb, return_tensors="pt")["pixel_values"]

    def _encode_prepared(self, prepared: Any) -> np.ndarray:
        import torch

        pixels = prepared.to(self.device, dtype=self.model.dtype)
        with torch.inference_mode():
            return _as_array(self.model.get_image_features(pixel_values=pixels))


def _field(obj: Any, key: str) -> Any:
    """A processor config value: a dict in older transformers, a SizeDict in newer."""
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _resize_side(processor: Any) -> int | None:
    """The shorter side the image processor resizes to (None if it does not say)."""
    size = getattr(getattr(processor, "image_processor", None), "size", None)
    side = _field(size, "shortest_edge") or min(
        _field(size, "height") or 0, _field(size, "width") or 0
    )
    return int(side) or None


def _recipe(processor: Any) -> Recipe | None:
    """The processor's steps as a Recipe, if they are resize-shorter-side, centre-crop and
    normalise (CLIP's); None for any other (SigLIP resizes to a square without cropping)."""
    ip = getattr(processor, "image_processor", None)
    crop = getattr(ip, "crop_size", None)
    side = _field(getattr(ip, "size", None), "shortest_edge")
    steps = ("do_resize", "do_center_crop", "do_rescale", "do_normalize")
    if ip is None or crop is None or not side or not all(getattr(ip, s, False) for s in steps):
        return None
    if abs(float(getattr(ip, "rescale_factor", 0)) - 1 / 255) > 1e-9:
        return None
    mean, std = tuple(ip.image_mean), tuple(ip.image_std)
    crop_hw = (int(_field(crop, "height")), int(_field(crop, "width")))
    return Recipe(int(side), crop_hw, mean, std)


def _as_array(features: Any) -> np.ndarray:
    import torch

    # transformers 5 returns an output object whose pooler_output is the projected embedding.
    tensor = features if isinstance(features, torch.Tensor) else features.pooler_output
    return tensor.float().cpu().numpy()
