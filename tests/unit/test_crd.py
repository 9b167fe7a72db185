"""The generated CRD is structural, documented, up to date, and carries the columns users see."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from datajob_core.api import crd

REPO = Path(__file__).resolve().parents[2]
CRD_PATH = REPO / "crds" / "datajob.dev_datajobs.yaml"  # where `make crds` writes them
DOCS_PATH = REPO / "docs" / "api-reference.md"


def _walk(node: dict[str, Any], path: str, problems: list[str]) -> None:
    for key in ("$ref", "anyOf", "oneOf", "allOf", "$defs", "title"):
        if key in node:
            problems.append(f"{path}: has {key}")
    if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{path}: no type")
    if node.get("properties") and "additionalProperties" in node:
        problems.append(f"{path}: properties with additionalProperties")
    for name, child in (node.get("properties") or {}).items():
        if path != "" and not child.get("description") and name != "metadata":
            problems.append(f"{path}.{name}: no description")
        _walk(child, f"{path}.{name}", problems)
    if isinstance(node.get("items"), dict):
        _walk(node["items"], f"{path}[]", problems)
    if isinstance(node.get("additionalProperties"), dict):
        _walk(node["additionalProperties"], f"{path}{{}}", problems)


def test_schema_is_structural_and_every_field_is_described() -> None:
    problems: list[str] = []
    _walk(crd.openapi_schema(), "", problems)
    assert problems == []


def test_committed_crd_and_reference_are_up_to_date() -> None:
    assert CRD_PATH.read_text() == crd.render_crd(), "run `make crds`"
    assert DOCS_PATH.read_text() == crd.render_docs(), "run `make crds`"
    # Helm can only package files inside the chart, so the chart carries copies of crds/.
    for source in sorted((REPO / "crds").glob("*.yaml")):
        copy = REPO / "charts" / "datajob-operator" / "crds" / source.name
        assert copy.read_text() == source.read_text(), f"{copy} is stale: run `make crds`"


def test_identity_columns_and_subresources() -> None:
    document = yaml.safe_load(CRD_PATH.read_text())
    spec = document["spec"]
    assert spec["names"]["shortNames"] == ["dj"]
    assert "all" in spec["names"]["categories"]
    version = spec["versions"][0]
    assert set(version["subresources"]) == {"status", "scale"}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase",
        "Shards",
        "Workers",
        "Progress",
        "ETA",
        "Lag",
        "Restarts",
        "Hardware",
        "Age",
    ]
    hardware = next(c for c in version["additionalPrinterColumns"] if c["name"] == "Hardware")
    assert hardware["priority"] == 1  # kubectl get -o wide only


@pytest.mark.parametrize("field", ["input", "output", "processor"])
def test_immutable_fields_carry_a_transition_rule(field: str) -> None:
    rules = crd.openapi_schema()["properties"]["spec"]["properties"][field]["x-kubernetes-validations"]
    assert {"rule": "self == oldSelf", "message": f"spec.{field} is immutable"} in rules


def test_api_reference_lists_every_spec_field() -> None:
    text = crd.render_docs()
    for path in (
        "spec.resources.gpu.product",
        "spec.retryPolicy.backoff.maxSeconds",
        "spec.ttlSecondsAfterFinished",
    ):
        assert f"`{path}`" in text


def test_api_reference_rows_are_single_lines_with_inline_defaults() -> None:
    text = crd.render_docs()
    table = [line for line in text.splitlines() if line.startswith("| `spec")]
    assert table, "no spec rows"
    assert "\n...\n" not in text and "`3\n" not in text
    attempts = next(row for row in table if row.startswith("| `spec.retryPolicy.maxShardAttempts`"))
    assert "| `3` |" in attempts
