"""Writes the DataJob CRD and its API reference, rendered from the pydantic models (``make crds``).

Usage: python hack/generate_api.py [--output CRD.yaml] [--docs REFERENCE.md] [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datajob_core.api.crd import PLURAL, render_crd, render_docs
from datajob_core.api.models import GROUP

CRD_PATH = Path("crds") / f"{GROUP}_{PLURAL}.yaml"
DOCS_PATH = Path("docs") / "api-reference.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python hack/generate_api.py", description=__doc__)
    parser.add_argument("--output", type=Path, default=CRD_PATH)
    parser.add_argument("--docs", type=Path, default=DOCS_PATH)
    parser.add_argument("--check", action="store_true", help="fail if the files are not up to date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in ((args.output, render_crd()), (args.docs, render_docs())):
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run `make crds`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
