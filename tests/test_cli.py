"""The `mmq` command line against the session's servers and workers."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mmq.embedded import Urls
from mmq.samples import PHOTOS
from tests.support.cli import mmq
from tests.support.db import connect, schema_snapshot
from tests.support.names import fresh
from tests.support.procs import Procs, without_mmq_settings
from tests.support.videos import video_bytes

pytestmark = pytest.mark.slow

FOLDER_PHOTOS = ("chelsea", "coffee", "rocket", "horse")


@pytest.fixture(scope="module")
def folder(photos: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-photos")
    for name in FOLDER_PHOTOS:
        shutil.copy(photos[name], root / f"{name}.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "clip.mp4").write_bytes(video_bytes(seconds=3, size=(160, 120)))
    with open(root / "captions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        for name in FOLDER_PHOTOS:
            w.writerow([f"{name}.png", PHOTOS[name]])
            w.writerow([f"{name}.png", f"a photo of {name}"])
    return root


@pytest.fixture(scope="module")
def ingested(folder: Path, workers: Procs) -> tuple[str, list[dict[str, Any]]]:
    name = fresh("cli")
    out = mmq("ingest", str(folder), "--collection", name, "--wait", "--json", check=False)
    assert out.returncode == 2, out.stderr  # one item failed
    return name, [json.loads(line) for line in out.stdout.splitlines()]


@pytest.fixture()
def unreachable_servers(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment whose broker and database refuse every connection (a port that is
    bound, never listened on): a command that sent or wrote anything would fail with a
    connection error, not with the error under test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        env = without_mmq_settings()
        env.update(
            MMQ_STATE_DIR=str(tmp_path / "state"),
            MMQ_BROKER_URL=f"redis://127.0.0.1:{port}/0",
            MMQ_RESULT_BACKEND=f"redis://127.0.0.1:{port}/1",
            MMQ_DATABASE_URL=f"postgresql://mmq@127.0.0.1:{port}/mmq?connect_timeout=2",
        )
        yield env


def test_ingest_wait_json_reports_every_item(ingested: tuple[str, list[dict[str, Any]]]) -> None:
    _, lines = ingested
    by_id = {line["external_id"]: line for line in lines}
    photos = {f"{n}.png" for n in FOLDER_PHOTOS}
    assert set(by_id) == photos | {"broken.jpg", "clip.mp4"}
    video = by_id.pop("clip.mp4")
    keys = {"source", "external_id", "status", "replaced", "error"}
    assert all(set(line) == keys for line in by_id.values())
    assert not any(line["replaced"] for line in lines)  # a new collection: nothing replaced
    # 3 s with a 2 s minimum segment (MMQ_VIDEO_MIN_SEGMENT_S): no cut fits, so one segment.
    assert (video["status"], video["error"], video["duration_s"], video["segments"]) == (
        "stored",
        None,
        3.0,
        1,
    )
    broken = by_id.pop("broken.jpg")
    assert broken["status"] == "failed", broken
    assert broken["error"].startswith("corrupt or truncated image"), broken
    assert {k: (v["status"], v["error"]) for k, v in by_id.items()} == {
        p: ("stored", None) for p in photos
    }


def test_search_json(ingested: tuple[str, list[dict[str, Any]]], folder: Path) -> None:
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


def test_search_text_output(ingested: tuple[str, list[dict[str, Any]]]) -> None:
    name, _ = ingested
    out = mmq("search", "--collection", name, "--text", "coffee", "-k", "2", "--targets", "image")
    lines = out.stdout.splitlines()
    assert len(lines) == 2, out.stdout
    assert re.fullmatch(r"   1\. \d\.\d{3}  image  coffee\.png", lines[0]), lines
    assert re.fullmatch(r"   2\. \d\.\d{3}  image  \w+\.png", lines[1]), lines


def test_output_piped_into_a_reader_that_stops_early_is_no_error(
    ingested: tuple[str, list[dict[str, Any]]],
) -> None:
    # `mmq search --json | head -1`: head exits before mmq writes.
    name, _ = ingested
    argv = [sys.executable, "-m", "mmq.cli", "search", "--collection", name, "--text", "x"]
    proc = subprocess.Popen([*argv, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert (proc.wait(timeout=120), err) == (141, "")


def test_search_of_a_missing_collection_is_not_found(workers: Procs) -> None:
    # The worker raises it; the CLI prints one line with the error's kind, and exits with
    # the kind's status (docs/design.md "Errors": not_found, 4). No traceback.
    failed = mmq("search", "--collection", "missing-collection", "--text", "x", check=False)
    assert failed.stderr == "mmq search: not_found: unknown collection 'missing-collection'\n"
    assert (failed.returncode, failed.stdout) == (4, "")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--targets", "nope"], "--targets 'nope': use kinds from image, text, pair, video"),
        (["--targets", ","], "--targets ',': use kinds from image, text, pair, video"),
        (["--filter", "[1]"], '--filter must be a JSON object, e.g. {"split": "dev"}'),
        (["--filter", "{"], "--filter is not JSON: Expecting property name enclosed in double"),
        (["--weights", "image=x"], "--weights 'image=x': expected NAME=NUMBER,..."),
    ],
)
def test_a_bad_search_is_refused_before_anything_is_sent(
    unreachable_servers: dict[str, str], flags: list[str], message: str
) -> None:
    # The broker refuses connections: a search sent would end in a connection error.
    failed = mmq(
        "search", "--collection", "c", "--text", "x", *flags,
        env=unreachable_servers, check=False, timeout=120,
    )  # fmt: skip
    assert failed.stderr.startswith(f"mmq search: bad_request: {message}"), failed.stderr
    assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr
    assert (failed.returncode, failed.stdout) == (3, "")


def test_ingest_of_a_missing_path_is_not_found(
    unreachable_servers: dict[str, str], folder: Path
) -> None:
    # The database refuses connections: a job written would end in a connection error.
    missing = folder / "no-such-photo.png"
    failed = mmq(
        "ingest", str(folder / "chelsea.png"), str(missing), "--collection", "c",
        env=unreachable_servers, check=False, timeout=120,
    )  # fmt: skip
    assert failed.stderr == f"mmq ingest: not_found: no such file or folder: {missing}\n"
    assert (failed.returncode, failed.stdout) == (4, "")


def test_ingest_captions_as_pairs_and_status(folder: Path, workers: Procs) -> None:
    name = fresh("cli")
    job_id = mmq(
        "ingest",
        str(folder / "chelsea.png"),
        "--collection",
        name,
        "--captions",
        str(folder / "captions.csv"),
    ).stdout.strip()
    deadline = time.monotonic() + 120
    while (status := json.loads(mmq("status", job_id).stdout))["state"] != "done":
        assert status["state"] in ("queued", "running"), status
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    # `mmq status` prints the job's JobStatus as JSON: one task, no item failed.
    assert status == {
        "id": job_id,
        "state": "done",
        "error": None,
        "error_kind": None,
        "done_tasks": 1,
        "total_tasks": 1,
    }
    hits = json.loads(mmq("search", "--collection", name, "--text", "cat", "--json").stdout)
    assert len(hits) == 1
    assert hits[0]["kind"] == "pair" and hits[0]["external_id"] == "chelsea.png"
    assert hits[0]["metadata"]["captions"] == [PHOTOS["chelsea"], "a photo of chelsea"]
    # The "--targets image on a captioned collection: no hits, no hint why".
    none = mmq("search", "--collection", name, "--text", "cat", "--targets", "image")
    assert none.stdout == "  no hits\n"
    assert none.stderr == (
        f"mmq search: no hits: collection {name!r} holds pair items only; "
        "--targets image leaves them out\n"
    )


def test_same_id_from_another_folder_is_reported_replaced(
    photos: dict[str, Path], workers: Procs, tmp_path: Path
) -> None:
    # The trip1/IMG_0001.jpg (a cat), then trip2/IMG_0001.jpg (a rocket): one id.
    for trip, photo in (("trip1", "chelsea"), ("trip2", "rocket")):
        (tmp_path / trip).mkdir()
        shutil.copy(photos[photo], tmp_path / trip / "IMG_0001.png")
    name = fresh("cli")
    first = mmq("ingest", str(tmp_path / "trip1"), "--collection", name, "--wait")
    assert re.match(r"1 stored, 0 failed in collection", first.stdout), first.stdout
    second = mmq(
        "ingest", str(tmp_path / "trip2"), "--collection", name, "--wait",
        "--metadata", '{"trip": 2}',
    )  # fmt: skip
    assert re.match(r"1 stored, 1 replaced, 0 failed in collection", second.stdout)
    assert "replaced: items of the collection had the same ids" in second.stderr
    assert re.search(r"^ingest job [0-9a-f-]{36}$", second.stderr, re.M)  # for `mmq status`
    found = mmq("search", "--collection", name, "--text", "x", "--filter", '{"trip": 2}', "--json")
    hits = json.loads(found.stdout)
    assert [(h["external_id"], h["metadata"]) for h in hits] == [("IMG_0001.png", {"trip": 2})]


def test_eval_json(photos: dict[str, Path], workers: Procs, tmp_path: Path) -> None:
    # All 14 demo photos, one caption each: more than 10 images, so R@10 can fall short.
    folder = tmp_path / "eval"
    folder.mkdir()
    for name, path in photos.items():
        shutil.copy(path, folder / f"{name}.png")
    with open(folder / "captions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        w.writerows((f"{name}.png", caption) for name, caption in PHOTOS.items())
    out = mmq(
        "eval",
        "--images",
        str(folder),
        "--captions",
        str(folder / "captions.csv"),
        "--json",
        "--no-spawn-workers",
        "--collection",
        fresh("eval"),
    )
    scores = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\nmmq eval over the 14 demo photos: {scores}")
    keys = {"t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r5", "i2t_r10", "images_per_s"}
    assert set(scores) == keys
    # docs/models.md: with the shipped head a demo caption finds its own photo first 11
    # times in 14; through the queue (workers decode the same PNGs) as in-process.
    assert scores["t2i_r1"] == round(100 * 11 / 14, 2)  # 78.57
    # And a photo finds its own caption first 9 times in 14 (measured); every one of
    # them within the top 5, both ways.
    assert scores["i2t_r1"] == round(100 * 9 / 14, 2)  # 64.29
    assert scores["t2i_r5"] == scores["t2i_r10"] == scores["i2t_r5"] == scores["i2t_r10"] == 100
    assert scores["images_per_s"] > 0


def test_db_upgrade_is_idempotent(fresh_database_url: str, urls: Urls) -> None:
    from alembic.script import ScriptDirectory

    from mmq.jobs import records
    from mmq.store.migrate import alembic_config

    # The broker URL stays the session's (exported by `urls`): no embedded server starts.
    env = {**os.environ, "MMQ_DATABASE_URL": fresh_database_url}
    assert mmq("db", "upgrade", env=env).stdout == "database upgraded to head\n"
    head = ScriptDirectory.from_config(alembic_config(fresh_database_url)).get_current_head()
    before = schema_snapshot(fresh_database_url)
    assert before["version"] == [(head,)]
    assert {table for table, *_ in before["columns"]} >= {"collections", "items", "ingest_jobs"}
    with connect(fresh_database_url) as conn:  # data the second upgrade must leave alone
        records.create_job(conn, job_id="j1", collection="c", tasks=[])
    assert mmq("db", "upgrade", env=env).stdout == "database upgraded to head\n"
    assert schema_snapshot(fresh_database_url) == before
    with connect(fresh_database_url) as conn:
        assert conn.execute("SELECT id, collection FROM ingest_jobs").fetchall() == [("j1", "c")]


def test_every_command_on_an_unmigrated_database_says_to_upgrade(
    fresh_database_url: str, urls: Urls, folder: Path
) -> None:
    # A broker database no worker listens on: the search waits on nobody, as it would if
    # the workers had refused to start on this database.
    quiet = urls.broker_url.rsplit("/", 1)[0]
    env = {
        **os.environ,
        "MMQ_DATABASE_URL": fresh_database_url,
        "MMQ_BROKER_URL": f"{quiet}/7",
        "MMQ_RESULT_BACKEND": f"{quiet}/8",
    }
    fix = "unavailable: the database has no mmq schema: run `mmq db upgrade`\n"
    t0 = time.monotonic()
    for argv in (
        ["ingest", str(folder / "chelsea.png"), "--collection", "c"],
        ["search", "--collection", "c", "--text", "a cat"],
        ["status", "0a1b2c"],
    ):
        out = mmq(*argv, env=env, check=False)
        assert (out.returncode, out.stderr) == (6, f"mmq {argv[0]}: {fix}"), argv
    assert time.monotonic() - t0 < 30  # the search's part: within seconds, not its timeout


# `mmq demo` as it prints: each query's title and its hits (rank order:
# score, kind, name and, for a video, the moment). Scores may move in the last digit only.
DEMO_QUERIES: list[tuple[str, list[tuple[float, str, str]]]] = [
    ("text → image: 'a cat'",
     [(0.524, "image", "chelsea"), (0.165, "image", "immunohistochemistry"),
      (0.116, "image", "horse")]),
    ("text → image: 'a cup of coffee'",
     [(0.340, "image", "coffee"), (0.219, "image", "coins"), (0.188, "image", "astronaut")]),
    ("image → image: the rocket photo",
     [(1.000, "image", "rocket"), (0.335, "image", "brick"), (0.301, "image", "page")]),
    ("image → text: the coffee photo",
     [(0.549, "text", "caption:coffee"), (0.222, "text", "caption:camera"),
      (0.174, "text", "caption:horse")]),
    ("composed: the cat photo + 'a cup of coffee' (image 0.5, text 0.5)",
     [(0.764, "image", "chelsea"), (0.260, "image", "coffee"), (0.235, "image", "coins")]),
    ("text → video: 'a cat' (the cat is on screen 7.7-12.7s)",
     [(0.553, "video", "photos.mp4  7.5-12.5s")]),
    ("image → video: the cat photo",
     [(0.949, "video", "photos.mp4  7.5-12.5s")]),
    ("text → anything: 'a cat' over images, captions and the video",
     [(0.732, "text", "caption:chelsea"), (0.553, "video", "photos.mp4  7.5-12.5s"),
      (0.524, "image", "chelsea")]),
    # Chinese queries: read as "cat" and "in video cat ?".
    ("Chinese text → image: '猫' (cat)",
     [(0.439, "image", "chelsea"), (0.154, "image", "immunohistochemistry"),
      (0.132, "image", "horse")]),
    ("Chinese question → video: '视频里的猫在哪里？' (where is the cat in the video?)",
     [(0.452, "video", "photos.mp4  7.5-12.5s")]),
]  # fmt: skip
TITLE = re.compile(r"^(?P<title>\S.*)  \[\d+ ms\]$")
HIT = re.compile(r"^ +\d+\. (?P<score>-?\d\.\d{3})  (?P<kind>\w+) +(?P<name>\S.*)$")


def demo_queries(stdout: str) -> list[tuple[str, list[tuple[float, str, str]]]]:
    """Each query block of `mmq demo`'s output: its title and its hit lines, parsed."""
    blocks: list[tuple[str, list[tuple[float, str, str]]]] = []
    for line in stdout.splitlines():
        if title := TITLE.match(line):
            blocks.append((title["title"], []))
        elif blocks and (hit := HIT.match(line)):
            blocks[-1][1].append((float(hit["score"]), hit["kind"], hit["name"]))
    return blocks


def test_demo_runs_on_its_own_servers(tmp_path: Path) -> None:
    # As `make demo` runs it: no URLs configured, so it starts and stops its own servers.
    env = without_mmq_settings()
    env["MMQ_STATE_DIR"] = str(tmp_path / "state")
    out = mmq("demo", env=env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    # README "Two commands": 14 photos, their 14 captions and a 21-second video; 10 queries.
    assert re.search(
        r"^ingested 29 items \(14 photos, 14 captions, 1 video of 21s\) in [\d.]+s; 0 failed$",
        out.stdout,
        re.M,
    ), out.stdout
    assert (
        "the video shows, in order: rocket 0.0-3.5s, coffee 3.5-7.7s, chelsea 7.7-12.7s, "
        "astronaut 12.7-16.5s, horse 16.5-21.0s"
    ) in out.stdout.splitlines()
    queries = demo_queries(out.stdout)
    assert [title for title, _ in queries] == [title for title, _ in DEMO_QUERIES], out.stdout
    for (title, hits), (_, expected) in zip(queries, DEMO_QUERIES, strict=True):
        # The hits' names, kinds and (README's example) the cat's moment 7.5-12.5s: exact.
        assert [h[1:] for h in hits] == [e[1:] for e in expected], (title, hits)
        assert [h[0] for h in hits] == pytest.approx([e[0] for e in expected], abs=1.5e-3), (
            title,
            hits,
        )
    assert "   (read by lite as: cat)" in out.stdout.splitlines()  # the text actually encoded
    assert not (tmp_path / "state" / "embedded.json").exists()  # servers stopped
