"""Regenerate samples/demo-stream.ndjson.gz, the stream `make demo` backfills.

    .venv/bin/python bench/make_demo_stream.py                 # rewrite the bundled sample
    .venv/bin/python bench/make_demo_stream.py --out /tmp/demo-stream.ndjson.gz   # elsewhere

Deterministic: the same seed gives the same bytes (gzip mtime is pinned; the gzip header
names the file, so a copy under the same file name compares equal byte for byte).
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devstack.synth import disorder, generate, poison_lines  # noqa: E402

OUT = ROOT / "samples" / "demo-stream.ndjson.gz"


def bodies() -> list[bytes]:
    stream = generate(400, seed=2026, payload_bytes=1000)
    out = disorder(stream.bodies, seed=5)
    rng = random.Random(3)
    for body in poison_lines(rng):
        out.insert(rng.randrange(len(out)), body)
    out.insert(100, b'{"id":"blob-1","topic":"/subscriptions/x/resourceGroups/y/providers/'
                    b'Microsoft.Storage/storageAccounts/z","subject":"/blobServices/default",'
                    b'"eventType":"Microsoft.Storage.BlobCreated","eventTime":"2026-01-02T00:00:00Z",'
                    b'"data":{},"dataVersion":"1"}')
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=OUT, help=f"where to write (default: {OUT.relative_to(ROOT)})")
    args = p.parse_args(argv)
    lines = bodies()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for body in lines:
            gz.write(body + b"\n")
    print(f"wrote {len(lines)} bodies to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
