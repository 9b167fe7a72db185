"""The word count on S3 in local mode: starts MinIO (built by hack/build-tools.sh) on 127.0.0.1:9000, uploads
the generated corpus, runs examples/wordcount/datajob-s3.yaml with workers killed on purpose, and checks the
result against the same job on local files.

python examples/wordcount/s3_demo.py     (or: make demo-s3)
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from datajob_testenv.objectstore import EXAMPLE_PORT, ObjectStore
from datajob_worker.cli import main as datajob

HERE = Path(__file__).resolve().parent


def main() -> int:
    corpus = sorted((HERE / "data").glob("*.txt"))
    if not corpus:
        print("generate the corpus first: python examples/wordcount/generate.py", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="datajob-s3-demo-") as scratch:
        store = ObjectStore(Path(scratch))
        store.start(EXAMPLE_PORT)
        try:
            fs = store.filesystem()
            fs.mkdir("corpus")
            fs.mkdir("results")
            for path in corpus:
                fs.put_file(str(path), f"corpus/wordcount/{path.name}")
            print(f"MinIO at {store.endpoint}: uploaded {len(corpus)} files to s3://corpus/wordcount/")
            os.environ.update(store.credentials)  # local mode: credentials from the environment
            os.environ["XDG_CACHE_HOME"] = str(Path(scratch) / "cache")
            code = datajob(["run", str(HERE / "datajob-s3.yaml"), "--kill-every", "2", "--seed", "1"])
            if code != 0:
                return code
            result = fs.cat_file("results/wordcount/result")
            objects = sorted(fs.find("results/wordcount"))
            print(f"s3://results/wordcount holds {len(objects)} objects: part-*, result, _SUCCESS, _datajob/")
            print(
                "first lines of result:",
                ", ".join(line.split("\t")[0] for line in result.decode().splitlines()[:8]),
            )
            reference = HERE / "out" / "wordcount" / "result"
            if reference.exists():
                same = reference.read_bytes() == result
                print(f"identical to the local-files run (make demo): {same}")
                if not same:
                    return 1
        finally:
            store.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
