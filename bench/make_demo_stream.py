"""Regenerate samples/demo-stream.ndjson.gz, the stream `make demo` backfills.

Deterministic: the same seed gives the same bytes (gzip mtime is pinned).
"""

from __future__ import annotations

import gzip
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack.synth import disorder, generate, poison_lines  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "samples" / "demo-stream.ndjson.gz"


def main() -> None:
    stream = generate(400, seed=2026, payload_bytes=1000)
    bodies = disorder(stream.bodies, seed=5)
    rng = random.Random(3)
    for body in poison_lines(rng):
        bodies.insert(rng.randrange(len(bodies)), body)
    bodies.insert(100, b'{"id":"blob-1","topic":"/subscriptions/x/resourceGroups/y/providers/'
                       b'Microsoft.Storage/storageAccounts/z","subject":"/blobServices/default",'
                       b'"eventType":"Microsoft.Storage.BlobCreated","eventTime":"2026-01-02T00:00:00Z",'
                       b'"data":{},"dataVersion":"1"}')
    OUT.parent.mkdir(exist_ok=True)
    with open(OUT, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for body in bodies:
            gz.write(body + b"\n")
    print(f"wrote {len(bodies)} bodies to {OUT}")


if __name__ == "__main__":
    main()
