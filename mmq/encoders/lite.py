"""`lite` (the offline default) and `lite+head:<dir>`: the lite towers of `lite-conse`
(encoders/lite_conse.py) with a trained alignment head on images.

Texts are encoded exactly as by `lite-conse`; images go through `[pooled ; ConSE] → head`. The
head's content hash is part of the version, so vectors from two heads never share an index.
A head's folder may hold an `autoencoder/` (encoders/autoencoder.py): the model's learned
`autoencoder` fusion, which the shipped head has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmq.encoders.autoencoder import FOLDER as AUTOENCODER_FOLDER
from mmq.encoders.autoencoder import load_optional as load_autoencoder
from mmq.encoders.calibration import FILE, Calibration, load_optional
from mmq.encoders.lite_conse import LiteConseEncoder
from mmq.errors import NotFound

# Trained by `mmq train` on flickr8k-dev; its card.json records the data and recipe.
SHIPPED_HEAD = Path(__file__).parent / "heads" / "flickr8k-dev"


class LiteEncoder(LiteConseEncoder):
    """`lite` (the shipped head) or `lite+head:<dir>` (a head of your own)."""

    # The head spreads images further apart than ConSE, so its shot cuts are further apart
    # too (docs/videos.md; benchmarks/video_cut_distances.py). A head of your own gets the
    # same value until you measure it (--model lite+head:<dir>).
    cut_distance = 0.5

    def __init__(
        self,
        head_dir: str | None = None,
        device: str = "auto",
        cache_dir: Path | None = None,
        autoencoder_dir: Path | None = None,
    ) -> None:
        super().__init__(device=device, cache_dir=cache_dir)
        self.head_dir = Path(head_dir) if head_dir else SHIPPED_HEAD
        self.name = f"lite+head:{head_dir}" if head_dir else "lite"
        # Another autoencoder than the head's own, for tests and benchmarks: a collection
        # of its codes gets another version, so this model's workers refuse it.
        self.autoencoder_dir = autoencoder_dir or self.head_dir / AUTOENCODER_FOLDER

    def _load(self) -> None:
        from mmq.encoders.alignment_head import head_hash, load_head

        if not (self.head_dir / "head.safetensors").is_file():
            raise NotFound(f"no trained head in {self.head_dir} (run `mmq train`)")
        super()._load()
        self._head, self.card = load_head(self.head_dir)
        self._head.to(self.device)
        self.version = f"{self.version}+head-{head_hash(self.head_dir)}"
        self.autoencoder = load_autoencoder(self.autoencoder_dir, base_version=self.version)

    def _load_calibration(self) -> Calibration:
        # The head's own, beside its weights (`mmq train` writes one when it holds images
        # out); none: the identity, raw cosines. ConSE's would not fit another head's space.
        return load_optional(self.head_dir / FILE)

    def _encode_prepared(self, prepared: Any) -> np.ndarray:
        import torch

        features = torch.from_numpy(self._features(prepared)).to(self.device)
        with torch.inference_mode():
            return self._head(features).float().cpu().numpy()
