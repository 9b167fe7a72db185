"""An example job with its input and output on S3, in local mode: starts MinIO (built by hack/build-tools.sh)
on 127.0.0.1:9000, uploads the example's generated input, runs ``examples/<example>/datajob-s3.yaml`` with
workers killed on purpose, and compares the result with the same job on local files when that has run.

python examples/s3_demo.py wordcount|sales     (or: make demo-s3 [EXAMPLE=sales])
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from datajob_testenv.objectstore import EXAMPLE_PORT, ObjectStore
from datajob_worker.cli import main as datajob

HERE = Path(__file__).resolve().parent
INPUT = {"wordcount": "*.txt", "sales": "*.csv"}
LOCAL_RESULT = {"wordcount": "out/wordcount/result", "sales": "out/sales-by-region/result"}
KILL_EVERY = {"wordcount": "2", "sales": "5"}  # seconds; a sales shard (2 MiB of CSV) takes longer


def main(argv: list[str]) -> int:
    example = argv[0] if argv else "wordcount"
    if example not in INPUT:
        print(f"usage: s3_demo.py {'|'.join(INPUT)}", file=sys.stderr)
        return 2
    inputs = sorted((HERE / example / "data").glob(INPUT[example]))
    if not inputs:
        print(f"generate the input first: python examples/{example}/generate.py", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="datajob-s3-demo-") as scratch:
        store = ObjectStore(Path(scratch))
        store.start(EXAMPLE_PORT)
        try:
            fs = store.filesystem()
            fs.mkdir("corpus")
            fs.mkdir("results")
            for path in inputs:
                fs.put_file(str(path), f"corpus/{example}/{path.name}")
            print(f"MinIO at {store.endpoint}: uploaded {len(inputs)} files to s3://corpus/{example}/")
            os.environ.update(store.credentials)  # local mode: credentials from the environment
            os.environ["XDG_CACHE_HOME"] = str(Path(scratch) / "cache")
            manifest = HERE / example / "datajob-s3.yaml"
            code = datajob(["run", str(manifest), "--kill-every", KILL_EVERY[example], "--seed", "1"])
            if code != 0:
                return code
            result = fs.cat_file(f"results/{example}/result")
            objects = sorted(fs.find(f"results/{example}"))
            print(f"s3://results/{example} holds {len(objects)} objects: part-*, result, _SUCCESS, _datajob/")
            reference = HERE / example / LOCAL_RESULT[example]
            if reference.exists():
                same = reference.read_bytes() == result
                print(f"result identical to the same job on local files ({reference}): {same}")
                if not same:
                    return 1
        finally:
            store.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
