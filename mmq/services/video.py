"""Index one video: sample frames → encode in batches → segments and a video vector.

Frames are encoded as they are decoded, batch by batch, so a long video never holds more
than one batch of images in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmq.config import Settings
from mmq.encoders import Encoder
from mmq.encoders.base import default_batch_size
from mmq.media.originals import video_suffix
from mmq.media.paths import confined
from mmq.media.videos import (
    DecodeStats,
    SampledFrame,
    VideoLimits,
    check_video_bytes,
    open_video,
    read_video_source,
    sample_frames,
)
from mmq.schemas import IngestItem
from mmq.segmentation import SegmentRules, VideoSegment, segment, video_vector
from mmq.services.originals import Original, keeps


@dataclass(frozen=True)
class IndexedVideo:
    content_hash: str
    uri: str | None
    duration_s: float
    vector: np.ndarray  # the whole video, in the encoder's space
    segments: list[VideoSegment]
    original: Original | None = None  # to keep in the media store once the item is good


def video_limits(settings: Settings) -> VideoLimits:
    return VideoLimits(
        max_bytes=settings.max_video_bytes,
        max_duration_s=settings.max_video_duration_s,
        max_decoded_frames=settings.max_video_decoded_frames,
        max_pixels=settings.max_video_pixels,
        frame_short_side=settings.video_frame_short_side,
    )


def segment_rules(settings: Settings, encoder: Encoder) -> SegmentRules:
    return SegmentRules(
        cut_distance=settings.video_cut_distance or encoder.cut_distance,
        min_s=settings.video_min_segment_s,
        max_s=settings.video_max_segment_s,
    )


def index_video(item: IngestItem, *, encoder: Encoder, settings: Settings) -> IndexedVideo:
    """Decode, encode and segment a video item; InvalidInput says why a video is refused."""
    limits = video_limits(settings)
    source: Path | bytes
    path: Path | None = None
    if item.video_path is not None:
        path = confined(item.video_path, settings.resolved_ingest_roots)
        source, content_hash = read_video_source(path, max_bytes=limits.max_bytes)
        uri: str | None = item.video_path
    else:
        source, uri = item.video_bytes or b"", None
        content_hash = check_video_bytes(source, max_bytes=limits.max_bytes)
    stats = DecodeStats()
    times: list[float] = []
    vectors: list[np.ndarray] = []
    batch: list[SampledFrame] = []
    batch_size = settings.encode_batch_size or default_batch_size(encoder.device)

    def flush() -> None:
        if batch:
            vectors.append(encoder.encode_images([f.image for f in batch]))
            times.extend(f.time_s for f in batch)
            batch.clear()

    with open_video(source, limits=limits) as (container, info):
        suffix = video_suffix(container, info.codec)
        frames = sample_frames(
            container, info, fps=settings.video_sample_fps, limits=limits, stats=stats
        )
        for frame in frames:
            batch.append(frame)
            if len(batch) >= batch_size:
                flush()
        flush()
    frame_vectors = np.concatenate(vectors)
    # The declared length when there is one; else up to the end of the last frame shown.
    shown_until = stats.last_time_s + (1.0 / info.fps if info.fps else 0.0)
    duration = max(info.declared_duration_s or shown_until, stats.last_time_s)
    return IndexedVideo(
        content_hash=content_hash,
        uri=uri,
        duration_s=round(duration, 3),
        vector=video_vector(frame_vectors),
        segments=segment(
            np.asarray(times),
            frame_vectors,
            duration_s=duration,
            rules=segment_rules(settings, encoder),
        ),
        original=Original(source, suffix) if keeps(settings, path) else None,
    )
