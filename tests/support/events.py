"""The bundled corpus and builders of event bodies (no test logic here)."""

from __future__ import annotations

from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
# The 37 published AML payloads (tests/data/corpus/FINDINGS.md says where each came from)
CORPUS = DATA / "corpus" / "samples"
HAND_CHECKED = DATA / "hand_checked.ndjson"
INGESTED_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z

WS = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
      "Microsoft.MachineLearningServices/workspaces/prod-ws")
RSC = "Microsoft.MachineLearningServices.RunStatusChanged"
RC = "Microsoft.MachineLearningServices.RunCompleted"


def corpus_files() -> list[Path]:
    """The corpus samples, sorted; fails loudly when the folder is missing or short, so no
    test silently runs on fewer payloads."""
    files = sorted(CORPUS.glob("*.json"))
    if len(files) != 37:
        raise AssertionError(f"expected the 37 corpus samples in {CORPUS}, found {len(files)}")
    return files


def run_event(run_id: str, status: str | None, time: str, *, event_id: str | None = None,
              event_type: str = RSC, experiment: str = "exp", run_type: str | None = None,
              tags: dict | None = None, props: dict | None = None, workspace: str = WS) -> bytes:
    data = {"experimentId": "e-" + experiment, "experimentName": experiment, "runId": run_id,
            "runType": run_type, "runTags": tags or {}, "runProperties": props or {}}
    if status is not None:
        data["runStatus"] = status
    return orjson.dumps({
        "topic": workspace, "subject": f"experiments/e/runs/{run_id}", "eventType": event_type,
        "eventTime": time, "id": event_id or f"{run_id}-{status}-{time}", "data": data,
        "dataVersion": "2",
    })
