"""Makes input arrive: writes small log files into data/ at a steady rate, as an upstream system would.

    python examples/continuous/arrive.py --rate 20 --seconds 30
    python examples/continuous/arrive.py --to s3://corpus/continuous --endpoint http://127.0.0.1:9000

Each file is written under a temporary name and renamed (or uploaded in one PUT), so a listing never sees
half a file. The word counts the job should publish are printed at the end (an independent count to compare
its result with). For s3:// the credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORDS = ["GET", "POST", "PUT", "DELETE", "/api/orders", "/api/users", "/health", "200", "404", "500"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=20.0, help="files per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="for how long")
    parser.add_argument("--lines", type=int, default=200, help="lines per file")
    parser.add_argument("--directory", type=Path, default=HERE / "data")
    parser.add_argument("--to", help="an s3:// prefix to upload to instead of --directory")
    parser.add_argument("--endpoint", help="the S3 endpoint (e.g. MinIO's http://127.0.0.1:9000)")
    args = parser.parse_args()
    args.directory.mkdir(parents=True, exist_ok=True)
    upload = None
    if args.to:
        import fsspec  # noqa: PLC0415 - only for s3://

        options = {"client_kwargs": {"endpoint_url": args.endpoint}} if args.endpoint else {}
        upload = fsspec.filesystem("s3", **options)
    rng = random.Random(1)
    counts: collections.Counter[str] = collections.Counter()
    start, written = time.monotonic(), 0
    while time.monotonic() - start < args.seconds:
        lines = [" ".join(rng.choice(WORDS) for _ in range(3)) for _ in range(args.lines)]
        for line in lines:
            counts.update(line.split())
        name = f"log-{time.time_ns()}.txt"
        text = "\n".join(lines) + "\n"
        if upload is not None:
            upload.pipe(f"{args.to.removeprefix('s3://').rstrip('/')}/{name}", text.encode())
        else:
            scratch = args.directory / f".{name}.tmp"
            scratch.write_text(text)
            os.replace(scratch, args.directory / name)
        written += 1
        time.sleep(max(start + written / args.rate - time.monotonic(), 0.0))
    print(f"wrote {written} files; expected counts: {dict(sorted(counts.items()))}")


if __name__ == "__main__":
    main()
