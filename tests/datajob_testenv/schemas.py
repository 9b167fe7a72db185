"""JSON schemas for kubeconform, made from the test API server's own OpenAPI and from CRD files.

kubeconform normally downloads schemas from GitHub, which these machines cannot reach. The API server
already publishes the schema of every built-in kind (``/openapi/v2``), for exactly the version under test,
so the schemas are written from there: one file per kind, in the "standalone strict" form kubeconform's
own schema repository uses (references kept local, unknown properties rejected).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

# kubeconform fills these in per object: `Group` is the apiVersion's first part ("apps", or "v1" for core).
LOCATION = "{{ .ResourceKind }}_{{ .Group }}_{{ .ResourceAPIVersion }}.json"
INT_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
QUANTITY = {"oneOf": [{"type": "string"}, {"type": "number"}]}


def _strict(node: Any) -> Any:
    """Rejects unknown fields: additionalProperties false on every object that lists its properties."""
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if node.get("x-kubernetes-int-or-string") is True:
            return {k: v for k, v in node.items() if k != "type"} | INT_OR_STRING
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(item) for item in node]
    return node


def _file_name(group: str, version: str, kind: str) -> str:
    return f"{kind.lower()}_{group or version}_{version}.json"


def write_builtin_schemas(openapi_v2: dict[str, Any], directory: Path) -> int:
    definitions = copy.deepcopy(openapi_v2["definitions"])
    definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = INT_OR_STRING
    definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"] = QUANTITY
    definitions = _strict(definitions)
    written = 0
    for definition in definitions.values():
        for gvk in definition.get("x-kubernetes-group-version-kind") or []:
            schema = {**definition, "definitions": definitions}
            # kubeconform's Group is the apiVersion's first part: the full group name ("v1" for core).
            name = _file_name(gvk["group"], gvk["version"], gvk["kind"])
            (directory / name).write_text(json.dumps(schema))
            written += 1
    return written


def write_crd_schemas(crd_files: list[Path], directory: Path) -> int:
    written = 0
    for path in crd_files:
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                properties = schema.setdefault("properties", {})
                properties.setdefault("apiVersion", {"type": "string"})
                properties.setdefault("kind", {"type": "string"})
                properties.setdefault("metadata", {"type": "object"})
                schema.setdefault("additionalProperties", False)
                name = _file_name(spec["group"], version["name"], spec["names"]["kind"])
                (directory / name).write_text(json.dumps(schema))
                written += 1
    return written
