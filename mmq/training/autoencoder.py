"""Fit the pair autoencoder (mmq/encoders/autoencoder.py) on a model's image and text vectors.

Each step takes distinct photos and, for each, three views: the pair (the photo and one of
its captions), the photo alone and another of its captions alone (modality dropout: the
missing input is zeros, Ngiam et al. 2011). The loss has three terms:

- contrastive: symmetric InfoNCE between the text view's and the pair's codes, the image
  view's and the pair's, and the text view's and the image view's, the batch's other photos
  as negatives; so that a code of one modality alone lands near its pair's code;
- reconstruction: two decoders rebuild the photo's image vector and the view's caption
  vector from every view's code (cosine loss), so that the code keeps both modalities;
- a penalty on the residual's squared norm (`residual_penalty`): with a few hundred
  photos a free residual learns each one by heart (docs/models.md has the curve), so by
  default it stays near zero and the gates, which weigh image and text per item, learn.

The encoder starts as the `sum` fusion and is early-stopped on held-out photos by pair
retrieval (`pair_retrieval`), the task the fusion is for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mmq.encoders.autoencoder import CARD, PARAMETERS, WEIGHTS, Autoencoder, autoencoder_hash
from mmq.schemas import FusionName
from mmq.services.vectors import item_vector, query_vector
from mmq.training.autoencoder_config import AutoencoderConfig
from mmq.training.early_stop import EarlyStop, Trained

KS = (1, 5, 10)


@dataclass
class PairVectors:
    """A model's unit image vectors, unit caption vectors, and each caption's image."""

    images: np.ndarray  # (n_images, d)
    texts: np.ndarray  # (n_captions, d)
    caption_image: np.ndarray  # (n_captions,) rows of `images`

    def captions_of(self) -> list[np.ndarray]:
        """Each image's caption indices, in file order (the first is its pair's)."""
        order = np.argsort(self.caption_image, kind="stable")
        bounds = np.searchsorted(self.caption_image[order], np.arange(len(self.images) + 1))
        return [order[bounds[i] : bounds[i + 1]] for i in range(len(self.images))]


class PairAutoencoder(nn.Module):
    """Encoder `[image ; text] → code` (a gated sum plus a residual) and two decoders."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.encoder_in = nn.Linear(2 * dim, hidden)
        self.encoder_out = nn.Linear(hidden, dim)
        self.gate = nn.Linear(hidden, 2)
        with torch.no_grad():  # starts as the `sum` fusion exactly: gates 1, residual 0
            for layer in (self.encoder_out, self.gate):
                layer.weight.zero_()
                layer.bias.zero_()
        self.image_decoder = _decoder(dim, hidden)
        self.text_decoder = _decoder(dim, hidden)

    def encode(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.unnormalised(image, text)[0], dim=-1)

    def unnormalised(
        self, image: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the code before its normalisation, the residual part of it)."""
        hidden = F.relu(self.encoder_in(torch.cat([image, text], dim=1)))
        gates = 2.0 * torch.sigmoid(self.gate(hidden))
        residual = self.encoder_out(hidden)
        return gates[:, :1] * image + gates[:, 1:] * text + residual, residual

    def shipped(self, card: dict[str, Any] | None = None) -> Autoencoder:
        """The encoder half as the numpy model that serves it."""
        state = self.state_dict()
        weights = {k: state[k].detach().double().cpu().numpy() for k in PARAMETERS}
        return Autoencoder(weights, card or {}, hash="", source="training")


def _decoder(dim: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))


@dataclass(kw_only=True)
class AutoencoderResult(Trained):
    model: PairAutoencoder
    config: AutoencoderConfig


def fit_autoencoder(
    data: PairVectors, train: np.ndarray, val: np.ndarray, config: AutoencoderConfig
) -> AutoencoderResult:
    """Train on the photos `train`, early-stopped on `val` (none: `steps` steps, the end kept)."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    dim = data.images.shape[1]
    model = PairAutoencoder(dim, config.hidden)
    images = torch.from_numpy(data.images).float()
    texts = torch.from_numpy(data.texts).float()
    captions_of = data.captions_of()
    train = np.array([i for i in train if len(captions_of[i])])
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    validate = len(val) > 0
    result = AutoencoderResult(
        model=model, config=config, best_step=0 if validate else config.steps
    )
    if validate:
        result.history.append({"step": 0.0, **_validate(model, data, val, train)})
    stop = EarlyStop(model, result, validate=validate, patience=config.patience, score=_score)
    for step in range(1, config.steps + 1):
        model.train()
        photos = rng.choice(train, size=min(config.batch_size, len(train)), replace=False)
        pair_caption, view_caption = (
            torch.from_numpy(c) for c in _two_captions(photos, captions_of, rng)
        )
        img = images[torch.from_numpy(photos)]
        pair_txt, view_txt = texts[pair_caption], texts[view_caption]
        zeros = torch.zeros_like(img)
        codes, residuals = [], []
        for image_in, text_in in ((img, pair_txt), (img, zeros), (zeros, view_txt)):
            code, residual = model.unnormalised(image_in, text_in)
            codes.append(F.normalize(code, dim=-1))
            residuals.append(residual.pow(2).sum(1).mean())
        pair, image_only, text_only = codes
        contrastive = (
            _info_nce(text_only, pair, config.temperature)
            + _info_nce(image_only, pair, config.temperature)
            + _info_nce(text_only, image_only, config.temperature)
        ) / 3
        rebuilt = torch.zeros(())
        for code, caption in ((pair, pair_txt), (image_only, pair_txt), (text_only, view_txt)):
            rebuilt = rebuilt + _cosine_loss(model.image_decoder(code), img)
            rebuilt = rebuilt + _cosine_loss(model.text_decoder(code), caption)
        loss = contrastive + config.reconstruction * rebuilt / 6
        loss = loss + config.residual_penalty * sum(residuals) / 3
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % config.eval_every == 0 or step == config.steps:
            metrics = {
                "step": float(step),
                "contrastive": round(float(contrastive.detach()), 4),
                "reconstruction": round(1.0 - float(rebuilt.detach()) / 6, 4),  # mean cosine
            }
            if validate:
                metrics |= _validate(model, data, val, train)
            if stop.record(step, metrics):
                break
    stop.restore()
    model.eval()
    return result


def _two_captions(
    photos: np.ndarray, captions_of: list[np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per photo, the pair's caption and another one for the text view (the same where the
    photo has one caption only)."""
    pair, view = [], []
    for photo in photos:
        own = captions_of[photo]
        drawn = rng.choice(len(own), size=min(2, len(own)), replace=False)
        pair.append(own[drawn[0]])
        view.append(own[drawn[-1]])
    return np.array(pair), np.array(view)


def _info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    logits = a @ b.T / temperature
    target = torch.arange(len(a))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def _cosine_loss(rebuilt: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (1.0 - F.cosine_similarity(rebuilt, target, dim=-1)).mean()


@torch.no_grad()
def _validate(
    model: PairAutoencoder, data: PairVectors, val: np.ndarray, train: np.ndarray
) -> dict[str, float]:
    """Pair retrieval of the held-out photos, the training photos' pairs as distractors
    too: among a few dozen held-out pairs alone every recall is near 100 and says little."""
    model.eval()
    ae = model.shipped()
    return pair_retrieval(data, val, fusion="autoencoder", autoencoder=ae, distractors=train)


def _score(metrics: dict[str, float]) -> float:
    return sum(metrics.get(f"{q}_r{k}", 0.0) for q in ("text", "image") for k in KS)


def pair_retrieval(
    data: PairVectors,
    photos: np.ndarray,
    *,
    fusion: FusionName,
    autoencoder: Autoencoder | None = None,
    distractors: np.ndarray | None = None,
) -> dict[str, float]:
    """Recall@k (%) of the right pair among the pairs (photo, its first caption) of
    `photos` (and of `distractors`), for queries by each of `photos`' other captions
    (`text_r*`) and by the photo alone (`image_r*`), with vectors made as search makes
    them (services/vectors.py)."""
    captions_of = data.captions_of()
    photos = np.array([p for p in photos if len(captions_of[p])])
    every = photos if distractors is None else np.concatenate([photos, distractors])
    stored = np.array([p for p in every if len(captions_of[p])], dtype=np.int64)
    first = np.array([captions_of[p][0] for p in stored])
    space: dict[str, Any] = {"collection_fusion": fusion, "autoencoder": autoencoder}
    pairs = item_vector({"image": data.images[stored], "text": data.texts[first]}, **space)
    other_captions = [(row, c) for row, p in enumerate(photos) for c in captions_of[p][1:]]
    out: dict[str, float] = {}
    queries = {"image": (data.images[photos], np.arange(len(photos)))}
    if other_captions:
        truth, captions = (np.array(x) for x in zip(*other_captions, strict=True))
        queries["text"] = (data.texts[captions], truth)
    for kind, (vectors, truth) in queries.items():
        q, _ = query_vector({kind: vectors}, **space)
        sims = q @ pairs.T
        rank = (sims > sims[np.arange(len(truth)), truth][:, None]).sum(1)
        for k in KS:
            out[f"{kind}_r{k}"] = round(100.0 * float(np.mean(rank < k)), 2)
    return out


def save_autoencoder(folder: Path, model: PairAutoencoder, card: dict[str, Any]) -> str:
    """Write the encoder half (safetensors) and its card; returns its hash."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    save_file({k: state[k].detach().cpu().contiguous() for k in PARAMETERS}, str(folder / WEIGHTS))
    (folder / CARD).write_text(json.dumps(card, indent=2) + "\n")
    return autoencoder_hash(folder)
