"""A process that queries a warehouse in a loop until a stop file appears, then writes what
it saw as JSON: `python -m tests.support.query_hammer WAREHOUSE OUT.json STOPFILE`.

Each round runs, as `amlwh query` does (a connection each), counts of the deduplicated
events and of the headline views. Events are only ever added while it runs, so every count must be
at least the one before: a count that drops means an event went missing from a reader's
view, and an error means a reader failed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from consumer.query.connection import query_warehouse

QUERIES = {
    "events": "SELECT count(*) FROM raw_events",
    "run_events": "SELECT count(*) FROM run_events",
    "runs": "SELECT count(*) FROM runs",
    "history": "SELECT count(*) FROM run_status_history",
    "finished": "SELECT coalesce(sum(runs), 0) FROM run_durations",
}


def hammer(warehouse: Path, stop: Path) -> dict:
    seen = {name: 0 for name in QUERIES}
    report = {"rounds": 0, "errors": [], "drops": []}
    while not stop.exists():
        try:
            for name, sql in QUERIES.items():
                count = query_warehouse(warehouse, sql)[1][0][0]
                if count < seen[name]:
                    report["drops"].append(f"{name}: {seen[name]} -> {count}")
                seen[name] = max(seen[name], count)
            report["rounds"] += 1
        except Exception as exc:  # every failure is what this process exists to report
            report["errors"].append(f"{type(exc).__name__}: {exc}")
        time.sleep(0.01)
    report["last"] = seen
    return report


if __name__ == "__main__":
    warehouse, out, stop = (Path(a) for a in sys.argv[1:4])
    out.write_text(json.dumps(hammer(warehouse, stop)))
