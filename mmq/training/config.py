"""Training hyper-parameters: a plain dataclass, so the CLI can list them without torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainConfig:
    kind: str = "linear"  # or "mlp"
    steps: int = 300
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.1
    dropout: float = 0.5  # on the standardised pooled features
    temperature: float = 0.07  # initial; learned unless fixed
    learn_temperature: bool = True
    eval_every: int = 25
    patience: int = 4  # evaluations without improvement before stopping
    seed: int = 0
    # One caption per image in a batch; off, captions are drawn at random and several captions
    # of one image can meet in a batch as false negatives (kept to measure the difference).
    distinct_images: bool = True
