"""Randomly initialised CLIP checkpoints, built offline: tiny ones for tests of the CLIP
path (CLIP and Chinese-CLIP: a real checkpoint cannot be had here), and one shaped like
ViT-B/32 for throughput (`python -m benchmarks.random_clip`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import (
    BertTokenizer,
    ChineseCLIPConfig,
    ChineseCLIPImageProcessor,
    ChineseCLIPModel,
    ChineseCLIPProcessor,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

# (text tower, vision tower, projection width): hidden, intermediate, layers, heads [, image, patch]
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {
        "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                 "num_attention_heads": 2},
        "vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                   "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        "projection_dim": 16,
    },
    # openai/clip-vit-base-patch32's config
    "vit-b-32": {
        "text": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                 "num_attention_heads": 8},
        "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                   "num_attention_heads": 12, "image_size": 224, "patch_size": 32},
        "projection_dim": 512,
    },
}  # fmt: skip


def _tokenizer() -> tuple[CLIPTokenizer, int, int]:
    """The tokenizer and its start and end token ids. A char-level byte vocabulary with no
    merges covers any text, so nothing is downloaded."""
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    tokenizer = CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=[])
    return tokenizer, len(vocab) - 2, len(vocab) - 1


def build_random_clip(folder: Path, *, shape: str = "tiny", seed: int = 0) -> Path:
    """Save a random CLIPModel of `shape` and its CLIPProcessor to `folder` (created)."""
    spec = SHAPES[shape]
    tokenizer, bos, eos = _tokenizer()
    config = CLIPConfig(
        text_config={
            **spec["text"],
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 77,
            "bos_token_id": bos,
            "eos_token_id": eos,
            "pad_token_id": eos,
        },
        vision_config=spec["vision"],
        projection_dim=spec["projection_dim"],
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    side = spec["vision"]["image_size"]
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_clip(folder: Path, seed: int = 0) -> Path:
    return build_random_clip(folder, shape="tiny", seed=seed)


# The characters a tiny Chinese-CLIP knows, one token each (WordPiece, as Chinese-CLIP's own
# vocabulary splits Chinese); anything else is [UNK].
CHINESE_CHARACTERS = "一只枚杯碟子上的咖啡火箭穿白色宇航服员猫狗在草地里视频哪灰"


def build_tiny_chinese_clip(folder: Path, seed: int = 0) -> Path:
    """Save a random ChineseCLIPModel and its processor (a BERT tokenizer) to `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CHINESE_CHARACTERS, *letters]
    vocab += [f"##{c}" for c in letters]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # From the folder: transformers 5 ignores BertTokenizer(vocab_file=...) (all [UNK]).
    tokenizer = BertTokenizer.from_pretrained(str(folder))
    tiny = SHAPES["tiny"]
    config = ChineseCLIPConfig(
        # Chinese-CLIP pools the [CLS] token: at the default initializer range a random tiny
        # model gives every text the same vector, at a larger one they differ.
        text_config={
            **tiny["text"],
            "vocab_size": len(vocab),
            "max_position_embeddings": 64,
            "initializer_range": 0.5,
        },
        vision_config=tiny["vision"],
        projection_dim=tiny["projection_dim"],
    )
    torch.manual_seed(seed)
    model = ChineseCLIPModel(config).eval()
    side = tiny["vision"]["image_size"]
    image_processor = ChineseCLIPImageProcessor(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}
    )
    model.save_pretrained(folder)
    ChineseCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(
        folder
    )
    return folder
