"""Chaos: ingest N photos while worker processes and the broker are killed; count the end.

`make chaos` (N = 500): at least 5 pool-process kills, one main-process kill and one broker
kill and restart during the ingest (the harness: tests/support/chaos.py). It prints one
JSON line: submitted, stored, failed, duplicates, stuck, seconds and the events, and exits 1
unless every item was stored exactly once. `make test` runs a small one (tests/test_chaos.py).
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
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--child-kills", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mmq-chaos-") as tmp:
        result = run(args.n, child_kills=args.child_kills, work=Path(tmp))
    print(json.dumps(result))
    ok = (
        result["stored"] + result["failed"] == result["submitted"]
        and result["failed"] == 0
        and result["duplicates"] == 0
        and result["stuck"] == 0
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
