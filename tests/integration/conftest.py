from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WS = ("/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/ml/providers/"
      "Microsoft.MachineLearningServices/workspaces/prod-ws")


def amlwh(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
          check: bool = True) -> subprocess.CompletedProcess:
    """Run the real CLI (`python -m consumer`) as a separate process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AMLWH_")}
    full_env["PYTHONPATH"] = str(REPO)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "consumer", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or REPO, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"amlwh {args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def warehouse_env(tmp_path: Path) -> dict[str, str]:
    return {"AMLWH_WAREHOUSE__PATH": str(tmp_path / "warehouse")}
