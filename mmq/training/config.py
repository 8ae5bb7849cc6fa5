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
    dropout: float = 0.8  # on the standardised pooled features
    temperature: float = 0.07  # initial; learned unless fixed
    learn_temperature: bool = True
    eval_every: int = 25
    patience: int = 4  # evaluations without improvement before stopping
    seed: int = 0
    # How a batch is drawn (fit.BATCHES): "all-captions" takes distinct images with every
    # caption of each, all of them positives of their image; "one-caption" one caption per
    # image; "random" draws captions at random, so captions of one image can meet in a
    # batch as each other's negatives (the last two are kept to measure the difference).
    batch: str = "all-captions"
