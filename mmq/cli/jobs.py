"""`mmq jobs prune`: delete the rows of ingest jobs that ended long ago (workers do it
hourly on their own: mmq/jobs/retention.py)."""

from __future__ import annotations

import argparse
import json

from mmq.config import get_settings


def add_jobs_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    prune = sub.add_parser(
        "prune",
        help="delete the job, task and item rows of ingest jobs that ended (every task done) "
        "and were created over --older-than-days ago; print how many jobs",
    )
    prune.add_argument(
        "--older-than-days",
        type=float,
        help="default: MMQ_JOB_RETENTION_DAYS (14); 0 prunes every job that ended",
    )
    prune.add_argument("--json", action="store_true", help='print {"pruned": N, ...}')


def run_jobs(args: argparse.Namespace) -> int:
    from mmq.client import Client
    from mmq.jobs.retention import prune_jobs

    settings = get_settings()
    days = settings.job_retention_days if args.older_than_days is None else args.older_than_days
    client = Client(settings)
    try:
        with client.tables.conn() as conn:
            pruned = prune_jobs(conn, older_than_days=days)
    finally:
        client.close()
    if args.json:
        print(json.dumps({"pruned": pruned, "older_than_days": days}))
    else:
        print(f"pruned {pruned} ingest job(s) that ended and were created over {days:g} days ago")
    return 0
