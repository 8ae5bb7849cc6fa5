"""What the alignment head's and the autoencoder's training loops share: a history of
evaluations, early stopping on a held-out score, and the best weights kept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass(kw_only=True)
class Trained:
    """A training run's record: its config, the evaluations, and the step whose weights
    were kept (the best held-out score, or the last step when nothing was held out)."""

    config: Any
    best_step: int
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def best(self) -> dict[str, float]:
        return next((h for h in self.history if h["step"] == self.best_step), {})

    def card(self) -> dict[str, object]:
        return {"config": asdict(self.config), "best_step": self.best_step, "history": self.history}


class EarlyStop:
    """Keeps `module`'s best weights by `score` of the evaluations recorded, and says when
    `patience` evaluations in a row have not beaten it. Without held-out data
    (`validate=False`) nothing can be compared: the last evaluation's weights are kept."""

    def __init__(
        self,
        module: torch.nn.Module,
        run: Trained,
        *,
        validate: bool,
        patience: int,
        score: Callable[[dict[str, float]], float],
    ) -> None:
        self.module, self.run, self.validate = module, run, validate
        self.patience, self.score = patience, score
        self.stale = 0
        self.best_score = score(run.history[-1]) if validate and run.history else float("-inf")
        self._keep()

    def record(self, step: int, metrics: dict[str, float]) -> bool:
        """Add an evaluation at `step`; True when training should stop."""
        self.run.history.append(metrics)
        if not self.validate:
            self._keep()
            return False
        if self.score(metrics) > self.best_score:
            self.best_score, self.stale, self.run.best_step = self.score(metrics), 0, step
            self._keep()
            return False
        self.stale += 1
        return self.stale >= self.patience

    def restore(self) -> None:
        """Load the kept weights back into the module."""
        self.module.load_state_dict(self._best)

    def _keep(self) -> None:
        self._best = {k: v.clone() for k, v in self.module.state_dict().items()}
