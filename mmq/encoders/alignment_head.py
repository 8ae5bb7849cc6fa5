"""The alignment head: frozen image features → the text space, trained contrastively.

Input is `[EfficientNet pooled features (1280) ; unit ConSE vector (384)]`. The head starts
as the identity on the ConSE part and zero on the rest, so an untrained head *is* ConSE, and
training only has to learn what to add (LiT, Zhai et al., CVPR 2022: towers stay frozen).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmq.errors import BadRequest

WEIGHTS = "head.safetensors"
CARD = "card.json"


class AlignmentHead(nn.Module):
    """`linear`: W x + b. `mlp`: ConSE + MLP(x), a residual on the ConSE vector."""

    def __init__(
        self, pooled_dim: int, text_dim: int, *, kind: str = "linear", hidden: int = 512
    ) -> None:
        super().__init__()
        if kind not in ("linear", "mlp"):
            raise BadRequest(f"unknown head kind {kind!r}: use 'linear' or 'mlp'")
        self.kind, self.pooled_dim, self.text_dim = kind, pooled_dim, text_dim
        in_dim = pooled_dim + text_dim
        # Standardisation of the pooled features, fitted on the training images.
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.zeros(pooled_dim))
        self.register_buffer("std", torch.ones(pooled_dim))
        if kind == "linear":
            self.net: nn.Module = nn.Linear(in_dim, text_dim)
            with torch.no_grad():
                self.net.weight.zero_()
                self.net.weight[:, pooled_dim:] = torch.eye(text_dim)
                self.net.bias.zero_()
        else:
            out = nn.Linear(hidden, text_dim)
            with torch.no_grad():
                out.weight.zero_()  # starts as exactly ConSE
                out.bias.zero_()
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), out)
        self.dropout = nn.Dropout(0.0)

    def set_dropout(self, p: float) -> None:
        self.dropout = nn.Dropout(p)

    def fit_standardisation(self, pooled: torch.Tensor) -> None:
        self.mean.copy_(pooled.mean(0))
        self.std.copy_(pooled.std(0).clamp(min=1e-4))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled, conse = features[:, : self.pooled_dim], features[:, self.pooled_dim :]
        pooled = self.dropout((pooled - self.mean) / self.std)
        x = torch.cat([pooled, conse], dim=1)
        return self.net(x) if self.kind == "linear" else conse + self.net(x)


def save_head(folder: Path, head: AlignmentHead, card: dict[str, Any]) -> str:
    """Write the weights (safetensors) and the model card; returns the head's hash."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"kind": head.kind})
    config = {"kind": head.kind, "pooled_dim": head.pooled_dim, "text_dim": head.text_dim}
    if head.kind == "mlp":
        config["hidden"] = int(head.net[0].out_features)  # type: ignore[index]
    (folder / CARD).write_text(json.dumps({**card, "head": config}, indent=2) + "\n")
    return head_hash(folder)


def load_head(folder: Path) -> tuple[AlignmentHead, dict[str, Any]]:
    from safetensors.torch import load_file

    card = json.loads((Path(folder) / CARD).read_text())
    config = card["head"]
    head = AlignmentHead(
        config["pooled_dim"],
        config["text_dim"],
        kind=config["kind"],
        hidden=config.get("hidden", 512),
    )
    head.load_state_dict(load_file(str(Path(folder) / WEIGHTS)))
    return head.eval(), card


def head_hash(folder: Path) -> str:
    """Content hash of the weights: part of the model version, so two heads never share an
    index."""
    return hashlib.sha256((Path(folder) / WEIGHTS).read_bytes()).hexdigest()[:16]
