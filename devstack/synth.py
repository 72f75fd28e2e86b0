"""Deterministic synthetic AML event streams with their ground truth.

The truth (each run's final status, start and end) is recorded while the
stream is generated, independently of the warehouse views, so tests and
benchmarks can compare the views against it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterator

import orjson

WORKSPACE = (
    "/subscriptions/5f3c1d2e-0000-4000-8000-00000000a1b2/resourceGroups/ml-prod/providers/"
    "Microsoft.MachineLearningServices/workspaces/ml-prod-ws"
)
FOREIGN_WORKSPACE = WORKSPACE.replace("ml-prod", "ml-sandbox")
EXPERIMENTS = ("churn-train", "fraud-score", "forecast-weekly", "nlp-finetune", "img-classify")
RUN_TYPES = (("azureml.PipelineRun", 0.15), ("azureml.StepRun", 0.35), ("automl", 0.2), (None, 0.3))
T = "Microsoft.MachineLearningServices."


@dataclass
class RunTruth:
    experiment: str
    run_type: str | None
    status: str
    created_us: int
    started_us: int | None
    ended_us: int | None


@dataclass
class Stream:
    bodies: list[bytes] = field(default_factory=list)
    runs: dict[str, RunTruth] = field(default_factory=dict)
    models: int = 0
    deployments: int = 0
    drift: int = 0


def _iso(us: int, rng: random.Random) -> str:
    dt = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
    # AML emits 7-digit fractions with Z or +00:00; keep whole microseconds exact.
    return text + "0" + rng.choice(("Z", "+00:00"))


def _envelope(rng, event_id, etype, subject, us, data, workspace) -> dict:
    if rng.random() < 0.2:
        return {"specversion": "1.0", "source": workspace, "type": T + etype, "subject": subject,
                "time": _iso(us, rng), "id": event_id, "data": data}
    return {"topic": workspace, "subject": subject, "eventType": T + etype,
            "eventTime": _iso(us, rng), "id": event_id, "data": data, "dataVersion": "2",
            "metadataVersion": "1"}


def _run_properties(rng: random.Random, pad: int) -> dict:
    props = {
        "azureml.runsource": "azureml.StepRun", "computeTargetType": rng.choice(("AmlCompute", "ComputeInstance")),
        "stepType": rng.choice(("PythonScriptStep", "CommandStep")),
        "contentSnapshotId": f"{rng.getrandbits(128):032x}",
        "azureml.parameters": '{"client_id":"c1","lr":"0.01"}',
    }
    props["notes"] = "x" * max(0, pad)
    return props


def generate(runs: int, *, seed: int = 7, start_us: int = 1_767_225_600_000_000,
             span_s: int = 7 * 86400, payload_bytes: int = 1500,
             foreign_share: float = 0.0) -> Stream:
    """A stream of `runs` run lifecycles plus model/drift events, in event-time order."""
    rng = random.Random(seed)
    stream = Stream()
    timed: list[tuple[int, int, bytes]] = []
    seq = 0

    def emit(etype, subject, us, data, workspace=WORKSPACE):
        nonlocal seq
        seq += 1
        event_id = f"{rng.getrandbits(128):032x}"
        env = _envelope(rng, event_id, etype, subject, us, data, workspace)
        timed.append((us, seq, orjson.dumps([env] if rng.random() < 0.3 else env)))

    for n in range(runs):
        exp = rng.choice(EXPERIMENTS)
        run_type = rng.choices([r for r, _ in RUN_TYPES], [w for _, w in RUN_TYPES])[0]
        run_id = f"{exp}_{n}_{rng.getrandbits(32):08x}"
        exp_id = f"exp-{EXPERIMENTS.index(exp):04d}"
        created = start_us + rng.randrange(span_s * 1_000_000)
        queue = rng.randrange(1, 600) * 1_000_000
        duration = int(rng.lognormvariate(6, 1.2) * 1_000_000) + 1_000_000
        final = rng.choices(("Completed", "Failed", "Canceled", "Running"), (0.78, 0.12, 0.05, 0.05))[0]
        workspace = FOREIGN_WORKSPACE if rng.random() < foreign_share else WORKSPACE
        base = {"experimentId": exp_id, "experimentName": exp, "runId": run_id, "runType": run_type,
                "runTags": {"azureml.pipelinerunid": f"pipe-{n // 5}"} if run_type == "azureml.StepRun" else {},
                "runProperties": _run_properties(rng, payload_bytes - 900)}
        subject = f"experiments/{exp_id}/runs/{run_id}"
        steps = [("NotStarted", created), ("Queued", created + queue // 2), ("Running", created + queue)]
        started = created + queue
        ended = None
        if final != "Running":
            ended = started + duration
            steps += [("Finalizing", ended - min(duration // 10, 5_000_000)), (final, ended)]
        for status, us in steps:
            emit("RunStatusChanged", subject, us, {"runStatus": status, **base}, workspace)
        if final == "Completed":
            emit("RunCompleted", subject, ended + 200_000, dict(base), workspace)
        if workspace == WORKSPACE:
            stream.runs[run_id] = RunTruth(exp, run_type, final, created, started, ended)
        if final == "Completed" and rng.random() < 0.2:
            version = rng.randrange(1, 40)
            name = f"{exp}-model"
            emit("ModelRegistered", f"models/{name}:{version}", ended + 5_000_000,
                 {"modelName": name, "modelVersion": rng.choice((version, str(version))),
                  "modelTags": {"stage": "candidate"}, "modelProperties": {"run": run_id}})
            stream.models += 1
            if rng.random() < 0.5:
                emit("ModelDeployed", f"endpoints/{exp}-svc", ended + 60_000_000,
                     {"serviceName": f"{exp}-svc", "serviceComputeType": rng.choice(("ACI", "AKS")),
                      "modelIds": f"{name}:{version}", "serviceTags": {}, "serviceProperties": {}})
                stream.deployments += 1
        if rng.random() < 0.02:
            drift_id = f"{rng.getrandbits(64):016x}"
            emit("DatasetDriftDetected", f"datadrift/{drift_id}/run/{drift_id}_1", created,
                 {"dataDriftId": drift_id, "dataDriftName": f"{exp}-monitor", "runId": f"{drift_id}_1",
                  "baseDatasetId": "base", "targetDatasetId": "target",
                  "driftCoefficient": round(rng.random(), 6),
                  "startTime": _iso(created - 86_400_000_000, rng), "endTime": _iso(created, rng)})
            stream.drift += 1
    timed.sort()
    stream.bodies = [body for _, _, body in timed]
    return stream


def disorder(bodies: list[bytes], *, seed: int = 11, late_share: float = 0.01,
             dup_share: float = 0.02, window: int = 50) -> list[bytes]:
    """Local shuffles, a few events moved far later (hours late), some redelivered."""
    rng = random.Random(seed)
    out = list(bodies)
    for start in range(0, len(out), window):
        chunk = out[start:start + window]
        rng.shuffle(chunk)
        out[start:start + window] = chunk
    # hours late: each chosen event is delivered at a random *later* position
    late = sorted((i for i in range(len(out)) if rng.random() < late_share), reverse=True)
    for i in late:
        body = out.pop(i)
        out.insert(rng.randrange(i, len(out) + 1), body)
    # redeliveries come after the original
    dups = sorted((i for i in range(len(out)) if rng.random() < dup_share), reverse=True)
    for i in dups:
        out.insert(rng.randrange(i + 1, len(out) + 1), out[i])
    return out


def poison_lines(rng: random.Random) -> Iterator[bytes]:
    """Bodies that must become dead letters."""
    yield b"{not json"
    yield b'{"id":"x","eventType":"' + T.encode() + b'RunCompleted","eventTime":"2026-01-01T00:00:00Z","data":{"experimentName":"e"}}'
    yield b'"just a string"'
    yield bytes(rng.getrandbits(8) for _ in range(40)).replace(b"\n", b" ")
