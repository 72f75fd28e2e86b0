"""Run a benchmarked command under a tiny launcher that reports its peak RSS and CPU time.

Why a launcher: on Linux a child's ru_maxrss is at least the RSS of the memory image it
was forked/exec'ed from. Spawned straight from a benchmark process (fork, vfork or
posix_spawn), a tool would inherit that process's own peak (the generated streams, up to
~2 GB), so every figure would read the same. A tiny `python -I -S` process forks and execs
the tool instead, forwards SIGTERM/SIGINT to it, reaps it with os.wait4 and writes its
rusage to a JSON report: the only floor left is the launcher's own ~6-10 MB (bench_backfill
prints it as "rusage floor").

The report holds `start` / `end` (time.time(), for lining up with log timestamps),
`wall_s` (perf_counter, from just before the fork to the reap), `rc`, `maxrss_kib`
(Linux: KiB) and `cpu_s` (user + system of the tool's process and its reaped children).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# argv: REPORT PIDFILE CMD...; PIDFILE "" = do not write one. Kept to the standard
# library's always-loaded modules so the launcher's own RSS (the floor) stays small.
LAUNCHER = r"""
import json, os, signal, sys, time
report, pidfile, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
start, t0 = time.time(), time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
def forward(sig, _frame):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, forward)
if pidfile:
    with open(pidfile + ".tmp", "w") as fh:
        fh.write(str(pid))
    os.replace(pidfile + ".tmp", pidfile)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(report, "w") as fh:
    json.dump({"start": start, "end": time.time(), "wall_s": wall, "rc": os.waitstatus_to_exitcode(status),
               "maxrss_kib": ru.ru_maxrss, "cpu_s": ru.ru_utime + ru.ru_stime}, fh)
"""


def launcher_argv(report: Path, cmd: list[str], pidfile: Path | None = None) -> list[str]:
    """argv that runs `cmd` under LAUNCHER, writing its rusage to `report`."""
    return [sys.executable, "-I", "-S", "-c", LAUNCHER, str(report), str(pidfile or ""), *cmd]


def read_report(report: Path, start: float) -> dict:
    """The launcher's report; a failed run (no report) reads as rc -1, zero RSS, NaN times."""
    try:
        return json.loads(report.read_text())
    except (OSError, ValueError):
        return {"start": start, "end": time.time(), "wall_s": float("nan"), "rc": -1, "maxrss_kib": 0,
                "cpu_s": float("nan")}


def run_launched(cmd: list[str], env: dict, report: Path, cwd: Path = ROOT) -> dict:
    """Run `cmd` to its end under the launcher; its report. A failure ends the benchmark
    with the command and the tail of its stderr."""
    report.unlink(missing_ok=True)
    start = time.time()
    done = subprocess.run(launcher_argv(report, cmd), env=env, cwd=cwd, capture_output=True, check=False)
    result = read_report(report, start)
    if result["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)[-120:]} failed ({result['rc']}): {done.stderr.decode()[-800:]}")
    return result


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def tree_pss_kib(pid: int) -> int:
    """Proportional set size of a process and all its descendants, in KiB. PSS, not RSS:
    pages shared between the processes (libraries, copy-on-write) are counted once in
    all, so a multi-process tool and a single-process one compare fairly."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += _pss_kib(current)
        todo += _children(current)
    return total


class TreeMemorySampler(threading.Thread):
    """Samples tree_pss_kib of the process whose pid the launcher writes to `pidfile`;
    `peak_kib` is the largest sample (every `interval` s, so a spike shorter than that
    can be missed: it complements wait4's exact per-process ru_maxrss).

    Not more often than every 0.5 s: reading smaps_rollup walks the process's page tables
    under its mmap lock, which its own allocations then wait for. Measured on the 1M-line
    backfill (3 processes, 2 cores): every 0.05 s made it ~12% slower, every 0.1 s ~6%,
    0.25 s ~2-3%, 0.5 s no measurable change, with the same peak (~720 MB)."""

    def __init__(self, pidfile: Path, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pidfile, self.interval = pidfile, interval
        self.peak_kib = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        pid = None
        while not self._stop_event.is_set():
            if pid is None:
                try:
                    pid = int(self.pidfile.read_text())
                except (OSError, ValueError):
                    pass
            if pid is not None:
                self.peak_kib = max(self.peak_kib, tree_pss_kib(pid))
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak_kib


def run_measured(cmd: list[str], report: Path, stdout: Path, stderr: Path, env: dict, cwd: Path) -> dict:
    """Run `cmd` to completion under the launcher, its output to two files; return the report,
    with `tree_pss_peak_kib` added (TreeMemorySampler)."""
    start = time.time()
    pidfile = report.with_suffix(".pid")
    pidfile.unlink(missing_ok=True)  # a stale one would have the sampler watch a dead process
    sampler = TreeMemorySampler(pidfile)
    sampler.start()
    try:
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            subprocess.run(launcher_argv(report, cmd, pidfile), stdout=out, stderr=err, env=env,
                           cwd=cwd, check=False)
    finally:
        peak = sampler.stop()
    result = read_report(report, start)
    result["tree_pss_peak_kib"] = peak
    return result


class Launched:
    """A command started in the background under the launcher, stdout+stderr to `<work>/<name>.log`."""

    def __init__(self, name: str, cmd: list[str], env: dict, work: Path, cwd: Path = ROOT):
        self.name = name
        self.log = work / f"{name}.log"
        self.report = work / f"{name}.rusage.json"
        self.pidfile = work / f"{name}.pid"
        self._child: int | None = None
        with open(self.log, "wb") as log:
            self.t0 = time.time()
            self.proc = subprocess.Popen(launcher_argv(self.report, cmd, self.pidfile), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd)

    @property
    def child_pid(self) -> int | None:
        """The measured process (not the launcher), once the launcher has written its pid file."""
        if self._child is None:
            deadline = time.monotonic() + 5
            while not self.pidfile.exists() and time.monotonic() < deadline and self.alive:
                time.sleep(0.01)
            try:
                self._child = int(self.pidfile.read_text())
            except (OSError, ValueError):
                return None
        return self._child

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        """SIGTERM to the launcher, which forwards it to the measured process."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> dict:
        """Wait for the launcher (SIGKILL the measured process after `timeout`); return the report."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"  ! {self.name} did not exit within {timeout:.0f}s: killing it", flush=True)
            if self.child_pid:
                try:
                    os.kill(self.child_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(10)
        return read_report(self.report, self.t0)

    def stop(self, timeout: float = 60) -> dict:
        self.terminate()
        return self.wait(timeout)

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""
