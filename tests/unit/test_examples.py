"""Every DataJob the examples ship passes the API's rules (the kind example once used a hostPath volume,
which the pod policy refuses: it would have been rejected at admission on the first try)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from datajob_core.api.models import DataJob

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MANIFESTS = sorted(EXAMPLES.glob("*/*.yaml"))


def datajobs(path: Path) -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "DataJob"]


def test_examples_are_found() -> None:
    assert sum(len(datajobs(p)) for p in MANIFESTS) >= 6


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_datajob_is_valid(path: Path) -> None:
    for manifest in datajobs(path):
        DataJob.load(manifest)
