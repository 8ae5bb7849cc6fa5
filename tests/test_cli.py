"""The `mmq` command line against the session's servers and workers."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from mmq.samples import PHOTOS
from tests.support.videos import video_bytes

pytestmark = pytest.mark.slow


def mmq(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmq.cli", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=600,
    )


@pytest.fixture(scope="module")
def folder(photos, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("cli-photos")
    for name in ("chelsea", "coffee", "rocket", "horse"):
        shutil.copy(photos[name], root / f"{name}.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "clip.mp4").write_bytes(video_bytes(seconds=3, size=(160, 120)))
    with open(root / "captions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        for name in ("chelsea", "coffee", "rocket", "horse"):
            w.writerow([f"{name}.png", PHOTOS[name]])
            w.writerow([f"{name}.png", f"a photo of {name}"])
    return root


@pytest.fixture(scope="module")
def ingested(folder, workers) -> tuple[str, list[dict]]:  # type: ignore[no-untyped-def]
    name = f"cli-{uuid.uuid4().hex[:8]}"
    out = mmq("ingest", str(folder), "--collection", name, "--wait", "--json", check=False)
    assert out.returncode == 2, out.stderr  # one item failed
    return name, [json.loads(line) for line in out.stdout.splitlines()]


def test_ingest_wait_json_reports_every_item(ingested) -> None:  # type: ignore[no-untyped-def]
    _, lines = ingested
    by_id = {line["external_id"]: line for line in lines}
    assert set(by_id) == {
        "chelsea.png",
        "coffee.png",
        "rocket.png",
        "horse.png",
        "broken.jpg",
        "clip.mp4",
    }
    video = by_id.pop("clip.mp4")
    assert all(set(line) == {"source", "external_id", "status", "error"} for line in by_id.values())
    assert video["status"] == "stored" and video["duration_s"] == 3.0 and video["segments"] >= 1
    assert by_id["broken.jpg"]["status"] == "failed" and by_id["broken.jpg"]["error"]
    assert all(by_id[f"{n}.png"]["status"] == "stored" for n in ("chelsea", "coffee"))


def test_search_json(ingested, folder) -> None:  # type: ignore[no-untyped-def]
    name, _ = ingested
    hits = json.loads(
        mmq("search", "--collection", name, "--text", "a cat", "-k", "3", "--json").stdout
    )
    assert len(hits) == 3
    assert set(hits[0]) == {"external_id", "kind", "score", "source", "metadata"}
    assert hits[0]["external_id"] == "chelsea.png" and hits[0]["kind"] == "image"
    assert hits[0]["source"].endswith("chelsea.png")
    by_image = json.loads(
        mmq("search", "--collection", name, "--image", str(folder / "rocket.png"), "--json").stdout
    )
    assert by_image[0]["external_id"] == "rocket.png"
    videos = json.loads(
        mmq("search", "--collection", name, "--text", "grey", "--targets", "video", "--json").stdout
    )
    assert [h["external_id"] for h in videos] == ["clip.mp4"]
    assert 0.0 <= videos[0]["start_s"] <= videos[0]["keyframe_s"] <= videos[0]["end_s"] <= 3.0
    assert videos[0]["duration_s"] == 3.0


def test_search_text_output_and_failure(ingested) -> None:  # type: ignore[no-untyped-def]
    name, _ = ingested
    out = mmq("search", "--collection", name, "--text", "coffee", "-k", "2")
    assert "coffee.png" in out.stdout.splitlines()[0]
    failed = mmq("search", "--collection", "missing-collection", "--text", "x", check=False)
    # One line, the error's kind and its exit status (mmq/errors.py), no traceback.
    assert failed.returncode == 4
    assert failed.stderr == "mmq search: not_found: unknown collection 'missing-collection'\n"


def test_ingest_captions_as_pairs_and_status(folder, workers) -> None:  # type: ignore[no-untyped-def]
    name = f"cli-{uuid.uuid4().hex[:8]}"
    job_id = mmq(
        "ingest",
        str(folder / "chelsea.png"),
        "--collection",
        name,
        "--captions",
        str(folder / "captions.csv"),
    ).stdout.strip()
    for _ in range(600):
        status = json.loads(mmq("status", job_id).stdout)
        if status["state"] in ("done", "failed"):
            break
    assert status["state"] == "done" and status["id"] == job_id
    hits = json.loads(mmq("search", "--collection", name, "--text", "cat", "--json").stdout)
    assert hits[0]["kind"] == "pair" and hits[0]["metadata"]["captions"][0] == PHOTOS["chelsea"]


def test_eval_json(folder, workers) -> None:  # type: ignore[no-untyped-def]
    out = mmq(
        "eval",
        "--images",
        str(folder),
        "--captions",
        str(folder / "captions.csv"),
        "--json",
        "--no-spawn-workers",
        "--collection",
        f"eval-{uuid.uuid4().hex[:6]}",
    )
    scores = json.loads(out.stdout.strip().splitlines()[-1])
    keys = {"t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r5", "i2t_r10", "images_per_s"}
    assert set(scores) == keys
    assert scores["t2i_r10"] == 100.0  # 4 images: every caption's image is in the top 10
    assert 0 < scores["t2i_r1"] <= 100 and scores["images_per_s"] > 0


def test_db_upgrade_is_idempotent(urls) -> None:  # type: ignore[no-untyped-def]
    assert "upgraded" in mmq("db", "upgrade").stdout


def test_demo_runs_on_its_own_servers(tmp_path: Path) -> None:
    # As `make demo` runs it: no URLs configured, so it starts and stops its own servers.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMQ_")}
    env["MMQ_STATE_DIR"] = str(tmp_path / "state")
    out = subprocess.run(
        [sys.executable, "-m", "mmq.cli", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    first_cat_hit = lines[lines.index(next(x for x in lines if "'a cat'" in x)) + 1]
    assert "chelsea" in first_cat_hit, out.stdout
    video_line = next(x for x in lines if x.startswith("text → video: 'a cat'"))
    video_hit = lines[lines.index(video_line) + 1]
    start, end = (float(t) for t in video_hit.split()[-1].rstrip("s").split("-"))
    assert "photos.mp4" in video_hit and abs(start - 7.7) <= 1 and abs(end - 12.7) <= 1, video_hit
    assert "0 failed" in out.stdout
    assert not (tmp_path / "state" / "embedded.json").exists()  # servers stopped
