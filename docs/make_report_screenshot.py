"""Regenerate docs/report.png: the bundled demo stream backfilled into a temporary
warehouse, `amlwh report` on it, and the top of the page as headless Chromium draws it
(offline: no name resolves, no proxy answers).

    make report-screenshot        # or: .venv/bin/python docs/make_report_screenshot.py

Needs the Debian packages chromium and chromium-driver (`make browser`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO_STREAM = REPO / "samples" / "demo-stream.ndjson.gz"
OUT = REPO / "docs" / "report.png"
CHROMIUM = Path("/usr/bin/chromium")
WIDTH, HEIGHT = 1400, 1560  # the header and the first three charts


def amlwh(*args: str, cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLWH_")}
    env.update(PYTHONPATH=str(REPO), AMLWH_WAREHOUSE__PATH="warehouse")  # shown as "warehouse"
    subprocess.run([sys.executable, "-m", "consumer", *args], cwd=cwd, env=env, check=True)


def main() -> int:
    if not CHROMIUM.is_file():
        print(f"{CHROMIUM} is missing: run `make browser` (Debian packages chromium and "
              "chromium-driver)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="amlwh-report-") as tmp:
        work = Path(tmp)
        amlwh("backfill", "files", str(DEMO_STREAM), "-q", cwd=work)
        amlwh("report", "--out", "report.html", cwd=work)
        subprocess.run(
            [str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
             "--disable-background-networking", "--disable-component-update", "--no-first-run",
             f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=15000",
             f"--screenshot={OUT}", (work / "report.html").as_uri()],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    print(f"wrote {OUT.relative_to(REPO)} ({OUT.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
