"""Chaos: ingest N photos while worker processes, the broker and PostgreSQL are killed and
the broker's data is wiped, with a producer searching throughout; count the end.

`make chaos` (N = 2,000; `--long`: 10,000, not in CI): at least 5 pool-process kills, one
main-process kill, one broker kill and restart, one broker wipe (FLUSHALL) and two
PostgreSQL kills and restarts during the ingest (the harness: tests/support/chaos.py). It
prints one JSON line: submitted, stored, failed, duplicates, stuck, seconds, the events,
the searches (answered, failed, hung) and the ingest worker's resident memory after
warm-up and at the end, and exits 1 unless every item was stored exactly once and no
search hung. `make test` runs a small one (tests/test_chaos.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tests.support.chaos import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--long", action="store_true", help="10,000 items (not in CI)")
    parser.add_argument("--child-kills", type=int, default=5)
    parser.add_argument("--postgres-kills", type=int, default=2)
    parser.add_argument("--wipes", type=int, default=1)
    args = parser.parse_args()
    n = 10_000 if args.long else args.n
    with tempfile.TemporaryDirectory(prefix="mmq-chaos-") as tmp:
        result = run(
            n,
            child_kills=args.child_kills,
            pg_kills=args.postgres_kills,
            wipes=args.wipes,
            work=Path(tmp),
        )
    print(json.dumps(result))
    ok = (
        result["stored"] + result["failed"] == result["submitted"]
        and result["failed"] == 0
        and result["duplicates"] == 0
        and result["stuck"] == 0
        and result["searches"]["hung"] == 0
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
