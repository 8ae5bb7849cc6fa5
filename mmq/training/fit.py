"""Symmetric InfoNCE on (image, caption) pairs, early-stopped on images held out.

Several captions of one image in a batch would be false negatives of each other if each
were the only positive of its image. A batch therefore holds distinct images and every
caption of each: text→image is a cross-entropy per caption, image→text a cross-entropy
against all of the image's captions at once (multi-positive, uniform target).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from mmq.encoders.alignment_head import AlignmentHead
from mmq.errors import BadRequest
from mmq.training.config import TrainConfig
from mmq.training.early_stop import EarlyStop, Trained

KS = (1, 5, 10)
BATCHES = ("all-captions", "one-caption", "random")


@dataclass
class Pairs:
    """Features of images and captions, and which image each caption describes."""

    images: np.ndarray  # (n_images, pooled + text_dim)
    texts: np.ndarray  # (n_captions, text_dim), unit rows
    caption_image: np.ndarray  # (n_captions,) index into images

    def extended(self, other: Pairs) -> tuple[Pairs, np.ndarray]:
        """These pairs followed by `other`'s, and the indices `other`'s images get."""
        n = len(self.images)
        joined = Pairs(
            np.concatenate([self.images, other.images]),
            np.concatenate([self.texts, other.texts]),
            np.concatenate([self.caption_image, other.caption_image + n]),
        )
        return joined, np.arange(n, n + len(other.images))


@dataclass(kw_only=True)
class TrainResult(Trained):
    head: AlignmentHead
    config: TrainConfig


def split_by_image(n_images: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) image indices: every caption of an image stays on its side."""
    order = np.random.default_rng(seed).permutation(n_images)
    n_val = max(1, round(n_images * val_fraction)) if val_fraction > 0 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def fit(pairs: Pairs, train: np.ndarray, val: np.ndarray, config: TrainConfig) -> TrainResult:
    if config.batch not in BATCHES:
        raise BadRequest(f"unknown batch composition {config.batch!r}: use one of {BATCHES}")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    text_dim = pairs.texts.shape[1]
    head = AlignmentHead(pairs.images.shape[1] - text_dim, text_dim, kind=config.kind)
    images = torch.from_numpy(pairs.images).float()
    texts = torch.from_numpy(pairs.texts).float()
    head.fit_standardisation(images[torch.from_numpy(train), : head.pooled_dim])
    head.set_dropout(config.dropout)
    log_scale = torch.nn.Parameter(torch.tensor(math.log(1.0 / config.temperature)))
    params = [{"params": head.parameters(), "weight_decay": config.weight_decay}]
    if config.learn_temperature:
        params.append({"params": [log_scale], "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    captions_of = _captions_of(pairs.caption_image, len(pairs.images))
    train_captions = np.flatnonzero(np.isin(pairs.caption_image, train))
    # Without held-out images there is nothing to stop on: train for `steps` and keep the end.
    validate = len(val) > 0
    result = TrainResult(head=head, config=config, best_step=0 if validate else config.steps)
    if validate:
        result.history.append(evaluate(head, pairs, val, log_scale, step=0))
    stop = EarlyStop(head, result, validate=validate, patience=config.patience, score=_score)
    for step in range(1, config.steps + 1):
        head.train()
        batch, caption, owner = _draw_batch(config, rng, train, train_captions, captions_of, pairs)
        img = F.normalize(head(images[torch.from_numpy(batch)]), dim=-1)
        txt = texts[torch.from_numpy(caption)]
        logits = log_scale.clamp(max=math.log(100.0)).exp() * txt @ img.T  # (captions, images)
        positives = torch.zeros(len(batch), len(caption))
        positives[owner, torch.arange(len(caption))] = 1.0
        t2i = F.cross_entropy(logits, owner)
        i2t = F.cross_entropy(logits.T, positives / positives.sum(1, keepdim=True))
        loss = (t2i + i2t) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % config.eval_every == 0 or step == config.steps:
            metrics = {"step": float(step), "train_loss": float(loss.detach())}
            if validate:
                metrics |= evaluate(head, pairs, val, log_scale, step=step)
            if stop.record(step, metrics):
                break
    stop.restore()
    head.set_dropout(0.0)
    return result


def _draw_batch(
    config: TrainConfig,
    rng: np.random.Generator,
    train: np.ndarray,
    train_captions: np.ndarray,
    captions_of: list[np.ndarray],
    pairs: Pairs,
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """(image rows, caption indices, the row of each caption's image) for one step."""
    if config.batch == "random":
        # One row per caption, even when two captions share an image: the false negatives.
        size = min(config.batch_size, len(train_captions))
        caption = rng.choice(train_captions, size=size, replace=False)
        return pairs.caption_image[caption], caption, torch.arange(size)
    batch = rng.choice(train, size=min(config.batch_size, len(train)), replace=False)
    if config.batch == "all-captions":
        caption = np.concatenate([captions_of[i] for i in batch])
        owner = np.concatenate([np.full(len(captions_of[i]), row) for row, i in enumerate(batch)])
        return batch, caption, torch.from_numpy(owner)
    caption = np.array([rng.choice(captions_of[i]) for i in batch])
    return batch, caption, torch.arange(len(batch))


def _score(metrics: dict[str, float]) -> float:
    return metrics["t2i_r10"] + metrics["i2t_r10"]


def _captions_of(caption_image: np.ndarray, n_images: int) -> list[np.ndarray]:
    order = np.argsort(caption_image, kind="stable")
    bounds = np.searchsorted(caption_image[order], np.arange(n_images + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(n_images)]


@torch.no_grad()
def evaluate(
    head: AlignmentHead, pairs: Pairs, val: np.ndarray, log_scale: torch.Tensor, *, step: int
) -> dict[str, float]:
    """Validation loss (captions → their image among the held-out images) and recalls."""
    head.eval()
    image_vectors = F.normalize(head(torch.from_numpy(pairs.images[val]).float()), dim=-1)
    keep = np.isin(pairs.caption_image, val)
    texts = torch.from_numpy(pairs.texts[keep]).float()
    position = {int(image): i for i, image in enumerate(val)}
    truth = torch.tensor([position[int(i)] for i in pairs.caption_image[keep]])
    sims = texts @ image_vectors.T  # (captions, images)
    loss = F.cross_entropy(log_scale.exp() * sims, truth)
    out = {"step": float(step), "val_loss": float(loss)}
    out.update(recalls(sims.numpy(), truth.numpy()))
    return out


def recalls(sims: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Recall@k in percent both ways, from caption × image similarities."""
    t2i_rank = (sims > sims[np.arange(len(truth)), truth][:, None]).sum(1)
    # image → text: the rank of the best of the image's own captions.
    i2t_rank = np.full(sims.shape[1], sims.shape[0])
    for image in range(sims.shape[1]):
        column = sims[:, image]
        own = np.flatnonzero(truth == image)
        if len(own):
            i2t_rank[image] = (column > column[own].max()).sum()
    out = {}
    for k in KS:
        out[f"t2i_r{k}"] = round(100.0 * float(np.mean(t2i_rank < k)), 2)
        out[f"i2t_r{k}"] = round(100.0 * float(np.mean(i2t_rank < k)), 2)
    return out
