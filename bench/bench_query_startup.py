"""`amlwh query` start-up: its wall time against a bare `import duckdb` process, side by side.

    python bench/bench_query_startup.py [--warehouse PATH] [--repeats 15]

Each round runs, as fresh processes under bench/launch.py, alternating:
- `python -c "import duckdb; duckdb.sql('select 1').fetchall()"` (the floor: the
  interpreter and DuckDB's import);
- `amlwh query "select 1"` on the warehouse (default: the 1M views-bench warehouse if it
  exists, else an empty folder);
- `amlwh query "select count(*) from models"` (a view that needs one stored table);
- `amlwh query "select count(*) from runs"` (the view state and the run views).
Medians, the spread, and each one's ratio to the floor.

The project's modules are byte-compiled first (`compileall`), as `pip install` does for an
installed package: a machine with PYTHONDONTWRITEBYTECODE set (CI images often do) would
otherwise compile ~20 modules from source at every start (~30 ms), which a deployed worker
image never does.
"""

from __future__ import annotations

import argparse
import compileall
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import OUT, ROOT, child_env, machine, md_table, median, print_preamble, versions  # noqa: E402
from bench.launch import run_launched  # noqa: E402


def timed(cmd: list[str], env: dict, report: Path) -> float:
    return run_launched(cmd, env, report)["wall_s"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--warehouse", type=Path, default=None)
    p.add_argument("--repeats", type=int, default=15)
    a = p.parse_args(argv)
    warehouse = a.warehouse or (OUT / "views-n1000000")
    empty = None
    if not warehouse.exists():
        empty = tempfile.TemporaryDirectory()
        warehouse = Path(empty.name)
    for package in ("consumer", "transforms", "sql"):
        compileall.compile_dir(ROOT / package, quiet=1)
    print_preamble(machine(), versions(["duckdb"]))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    print(f"date: {date.today()}  commit: {commit}  warehouse: {warehouse}")
    env = child_env(AMLWH_WAREHOUSE__PATH=str(warehouse))
    amlwh = [sys.executable, "-m", "consumer", "query"]
    commands = {
        "python + import duckdb, select 1": [sys.executable, "-c",
                                             "import duckdb; duckdb.sql('select 1').fetchall()"],
        "amlwh query \"select 1\"": amlwh + ["select 1"],
        "amlwh query \"select count(*) from models\"": amlwh + ["select count(*) from models"],
        "amlwh query \"select count(*) from runs\"": amlwh + ["select count(*) from runs"],
    }
    walls: dict[str, list[float]] = {label: [] for label in commands}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "launch.json"
        for label, cmd in commands.items():  # warm the page cache once
            timed(cmd, env, report)
        for _ in range(a.repeats):
            for label, cmd in commands.items():
                walls[label].append(timed(cmd, env, report))
    floor = median(walls["python + import duckdb, select 1"])
    rows = [[label, f"{median(w):.3f} s", f"{min(w):.3f}–{max(w):.3f} s", f"{median(w) / floor:.2f}"]
            for label, w in walls.items()]
    print("\n".join(md_table(["process", "median", "range", "ratio to the floor"], rows)))
    if empty is not None:
        empty.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
