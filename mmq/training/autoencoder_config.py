"""Hyper-parameters of the pair autoencoder: a plain dataclass, so the CLI lists them
without torch (the head's are in training/config.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AutoencoderConfig:
    hidden: int = 128  # units of the encoder's (and each decoder's) hidden layer
    steps: int = 400
    batch_size: int = 128  # photos per step, each as three views: pair, image, text
    lr: float = 3e-3
    weight_decay: float = 0.01
    temperature: float = 0.05  # of the contrastive term, fixed
    reconstruction: float = 0.5  # weight of the decoders' loss beside the contrastive one
    # Weight of the residual's squared norm in the loss. With a few hundred training photos
    # a free residual learns each photo by heart within a hundred steps (pair retrieval on
    # held-out photos falls); 1000 keeps it near zero, so the gates learn the fusion.
    residual_penalty: float = 1000.0
    eval_every: int = 25
    patience: int = 4  # evaluations without improvement before stopping
    seed: int = 0
