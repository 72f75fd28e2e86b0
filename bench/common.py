"""What every benchmark shares: paths, the machine and package description, load average,
settling before a measured run, medians and percentiles, markdown table lines.

Standard library only at import time, so importing it costs a benchmark (or a child
program) nothing that it would then measure.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"

NAN = float("nan")


# -- the machine -------------------------------------------------------------------
def machine() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            kib = int(fh.readline().split()[1])
        mem = f", {kib / 2**20:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({usable} usable){mem}, {platform.platform()}"


def versions(packages: Iterable[str], azurite: bool = False) -> str:
    """`python X.Y.Z, <package> <version>, ...` for the installed ones; with `azurite`, also
    the Azurite that `make install` put under .tools/."""
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"python {platform.python_version()}"]
    for name in packages:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    if azurite:
        try:
            package = ROOT / ".tools/azurite/node_modules/azurite/package.json"
            parts.append(f"azurite {json.loads(package.read_text())['version']}")
        except (OSError, ValueError, KeyError):
            pass
    return ", ".join(parts)


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def print_preamble(mach: str, vers: str) -> None:
    print(f"machine:  {mach}")
    print(f"versions: {vers}")
    print(f"load avg at start: {loadavg()}")


def settle() -> None:
    """Before each measured run: flush what earlier runs left (dirty pages, the deletion of
    their output) and pause. Without it, the run after a deletion measured up to 10% slower
    with 2x the system time, whichever tool it was."""
    os.sync()
    time.sleep(1.0)


def work_dir(prefix: str) -> Path:
    """A fresh directory under bench/out/ (gitignored) for one benchmark invocation."""
    OUT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=OUT))


def child_env(**extra: str) -> dict:
    """This process's environment without AMLWH_* settings (a measured process gets the
    production defaults plus what the benchmark states), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLWH_")}
    env["AMLWH_LOGGING__FORMAT"] = "text"  # the parts parse the worker's log lines (worker_common.py)
    env.update(extra)
    return env


# -- statistics --------------------------------------------------------------------
def median(values: Iterable[float | None]) -> float:
    """Median of the values that are not None; NaN when there are none."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else NAN


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1), linear between the closest ranks; NaN when empty."""
    if not values:
        return NAN
    values = sorted(values)
    k = (len(values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def is_nan(x: float) -> bool:
    return x != x


# -- markdown ----------------------------------------------------------------------
def md_row(cells: Sequence[str]) -> str:
    """`| a | b |`; an empty cell prints as `| |`."""
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> list[str]:
    """A markdown table's lines: the first `left` columns left-aligned, the others right-aligned
    (figures)."""
    rule = "|" + "|".join("---" if i < left else "---:" for i in range(len(header))) + "|"
    return [md_row(header), rule, *(md_row(r) for r in rows)]
