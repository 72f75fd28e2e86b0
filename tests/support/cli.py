"""The real CLI, run as a separate process (`python -m consumer`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.events import REPO

# the workspace of every event in tests/data/hand_checked.ndjson
HAND_CHECKED_WS = ("/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/ml/providers/"
                   "Microsoft.MachineLearningServices/workspaces/prod-ws")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any AMLWH_* setting, with the checkout importable.
    Logs are text lines, which the tests read (a child's stderr is no terminal, so its own
    default would be JSON); `extra` may ask for AMLWH_LOGGING__FORMAT=json."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLWH_")}
    env["PYTHONPATH"] = str(REPO)
    env["AMLWH_LOGGING__FORMAT"] = "text"
    env.update(extra)
    return env


def amlwh(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
          check: bool = True) -> subprocess.CompletedProcess:
    """Run `amlwh ARGS` to completion; stdout and stderr are captured as text."""
    proc = subprocess.run([sys.executable, "-m", "consumer", *args], capture_output=True, text=True,
                          env=clean_env(**(env or {})), cwd=cwd or REPO, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"amlwh {args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc
