"""`mmq` command line: argument parsing only; each command lives in its own module."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from mmq.errors import MmqError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmq", description="asynchronous multimodal retrieval")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("worker", help="run a Celery worker (embedded servers if no URLs set)")
    p.add_argument("--queues", default="ingest,search", help="comma-separated: ingest,search")
    p.add_argument("--pool", choices=["threads", "prefork"], help="default: MMQ_WORKER_POOL")
    p.add_argument(
        "--concurrency",
        type=int,
        help="task threads (default MMQ_WORKER_THREADS) or, with prefork, processes (default 1)",
    )
    p.add_argument("--loglevel", default="INFO")

    p = sub.add_parser("db", help="database schema (Alembic)")
    p.add_argument("action", choices=["upgrade", "downgrade"])
    p.add_argument("revision", nargs="?", default=None, help="default: head / base")

    p = sub.add_parser("ingest", help="enqueue images and videos (files or folders)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--collection", required=True)
    p.add_argument("--captions", help="CSV with columns image,caption: stored as image+text pairs")
    p.add_argument("--metadata", help='JSON object stored with every item, e.g. {"split": "dev"}')
    p.add_argument("--fusion", choices=["sum", "concat", "attention", "autoencoder"])
    p.add_argument("--wait", action="store_true", help="wait until every item is stored")
    p.add_argument("--json", action="store_true", help="with --wait: one JSON object per item")
    p.add_argument("--timeout", type=float, default=3600.0)
    _if_no_worker(p, default="wait")

    p = sub.add_parser("search", help="text, image or composed query, or examples (--like)")
    p.add_argument("--collection", required=True)
    p.add_argument("--text")
    p.add_argument("--image")
    p.add_argument(
        "--like",
        action="append",
        metavar="ID",
        help="more like this item (an external id; repeat for several), instead of a query",
    )
    p.add_argument(
        "--unlike", action="append", metavar="ID", help="with --like: unlike this item (repeat)"
    )
    p.add_argument(
        "--method",
        choices=["svm", "centroid"],
        default="svm",
        help="with --like: rank by a linear SVM or by the examples' centroid (default: svm)",
    )
    p.add_argument("--weights", help="composed query weights, e.g. image=0.3,text=0.7")
    p.add_argument(
        "--targets", default="image,text,pair,video", help="item kinds to return (comma-separated)"
    )
    p.add_argument("--filter", help='metadata containment as JSON, e.g. {"split": "dev"}')
    p.add_argument("-k", type=int, default=10)
    p.add_argument(
        "--segments",
        choices=["best", "all"],
        default="best",
        help="video hits: the best segment only, or every segment scoring at least --min-score",
    )
    p.add_argument("--min-score", type=float, help="drop hits (and segments) scoring less")
    p.add_argument("--json", action="store_true")
    p.add_argument("--timeout", type=float, default=60.0)
    _if_no_worker(p, default="exit")

    p = sub.add_parser(
        "status",
        help="state of a job, as JSON; an unknown id (never sent, pruned, expired) prints "
        'state "unknown" and exits 4, as for anything not found. Without an id: queue '
        "depths, live workers, ingest jobs by state, the oldest unfinished job",
    )
    p.add_argument("job_id", nargs="?")
    p.add_argument("--json", action="store_true", help="without an id: the overview as JSON")

    from mmq.cli.jobs import add_jobs_arguments

    add_jobs_arguments(sub.add_parser("jobs", help="job records: prune those that ended"))

    p = sub.add_parser("demo", help="the whole system on the scikit-image photos")
    p.add_argument("--collection", default="demo")

    p = sub.add_parser("eval", help="retrieval recall through the queue")
    p.add_argument("--images", required=True)
    p.add_argument("--captions", required=True)
    p.add_argument("--collection", default="eval")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--only", help="a file of image names to use (e.g. a head's val_images.txt)")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--spawn-workers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start an ingest and a search worker for the run (default) or use running ones",
    )

    from mmq.cli.train import add_arguments

    about = "fit an image→text alignment head for lite (or --fusion autoencoder: its pair fusion)"
    add_arguments(sub.add_parser("train", help=about))

    from mmq.cli.events import add_events_arguments, add_recommend_arguments

    add_events_arguments(sub.add_parser("events", help="record what users did with items"))
    p = sub.add_parser("recommend", help="items for a user, from their recorded events")
    add_recommend_arguments(p)
    _if_no_worker(p, default="exit")

    from mmq.cli.delete import add_delete_arguments
    from mmq.cli.inspect import add_collections_arguments, add_get_arguments

    p = sub.add_parser("delete", help="delete items (by id or --filter) or a whole collection")
    add_delete_arguments(p)
    _if_no_worker(p, default="wait")
    add_collections_arguments(
        sub.add_parser("collections", help="every collection: model, items, size")
    )
    from mmq.cli.reindex import add_reindex_arguments

    p = sub.add_parser("reindex", help="re-embed a collection with another model")
    add_reindex_arguments(p)
    _if_no_worker(p, default="wait")
    add_get_arguments(sub.add_parser("get", help="one item of a collection"))

    from mmq.cli.keys import add_keys_arguments

    add_keys_arguments(sub.add_parser("keys", help="API keys of the HTTP API"))

    from mmq.cli.serve import add_serve_arguments

    add_serve_arguments(sub.add_parser("serve", help="the HTTP API and the search page"))
    return parser


def _if_no_worker(p: argparse.ArgumentParser, *, default: str) -> None:
    p.add_argument(
        "--if-no-worker",
        choices=["wait", "exit"],
        default=default,
        help="when no worker consumes the queue after a few seconds: say so and keep "
        f"waiting, or exit (default: {default})",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. mmq's own errors end it with one line on stderr and the exit status
    of their kind (mmq/errors.py); anything else is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    on_main_thread = threading.current_thread() is threading.main_thread()
    if on_main_thread:
        # Exit in order on SIGTERM as on Ctrl-C, so that this process leaves the embedded
        # servers' users (a worker installs its own handlers over this one).
        previous = signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        return _run(args)
    except MmqError as exc:
        print(f"mmq {args.command}: {exc.kind}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"mmq {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mmq search --json | head`: the reader has all it wanted
        # Python flushes stdout again at exit: point it somewhere that cannot break.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process ended by SIGPIPE
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _run(args: argparse.Namespace) -> int:
    from mmq.cli.worker_extra import require_worker_extra

    require_worker_extra(args)  # before anything starts: one line, not an ImportError
    if args.command == "worker":
        from mmq.cli.worker import run_worker

        return run_worker(args)
    if args.command == "demo":
        from mmq.cli.demo import run_demo

        return run_demo(args)
    if args.command == "train":
        from mmq.cli.train import run_train

        return run_train(args)
    if args.command == "eval":
        from mmq.cli.evaluate import run_eval

        return run_eval(args)
    if args.command in ("events", "recommend"):
        from mmq.cli.events import run_events, run_recommend

        return (run_events if args.command == "events" else run_recommend)(args)
    if args.command == "delete":
        from mmq.cli.delete import run_delete

        return run_delete(args)
    if args.command == "reindex":
        from mmq.cli.reindex import run_reindex

        return run_reindex(args)
    if args.command in ("collections", "get"):
        from mmq.cli.inspect import run_collections, run_get

        return (run_collections if args.command == "collections" else run_get)(args)
    if args.command == "keys":
        from mmq.cli.keys import run_keys

        return run_keys(args)
    if args.command == "serve":
        from mmq.cli.serve import run_serve

        return run_serve(args)
    if args.command == "jobs":
        from mmq.cli.jobs import run_jobs

        return run_jobs(args)
    from mmq.cli import commands

    handler = {
        "db": commands.db,
        "ingest": commands.ingest,
        "search": commands.search,
        "status": commands.status,
    }[args.command]
    return handler(args)
