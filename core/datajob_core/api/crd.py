"""The DataJob CRD and its API reference, rendered from the pydantic models (``hack/generate_api.py``
writes them to crds/ and docs/: ``make crds``)."""

from __future__ import annotations

import json
from typing import Any

import yaml

from datajob_core.api.models import GROUP, KIND, NAME_MESSAGE, NAME_RULE, VERSION, DataJobSpec, DataJobStatus

PLURAL = "datajobs"
_DROP = {"title", "$defs"}


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Turns one pydantic JSON-schema node into a Kubernetes structural-schema node."""
    node = dict(node)
    if "$ref" in node:
        target = _structural(defs[node.pop("$ref").split("/")[-1]], defs)
        # Field-level description and rules win over the model's own.
        rules = target.get("x-kubernetes-validations", []) + node.pop("x-kubernetes-validations", [])
        target.update({k: v for k, v in node.items() if k not in _DROP})
        if rules:
            target["x-kubernetes-validations"] = rules
        return target
    if "anyOf" in node:  # Optional[X]: absence is expressed by leaving it out of `required`
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express union {options} in a structural schema")
        if node.get("default", ...) is None:
            node.pop("default")
        return _structural({**options[0], **node}, defs)
    out: dict[str, Any] = {k: v for k, v in node.items() if k not in _DROP}
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out["type"] = "object"
        out.pop("additionalProperties", None)
        return out
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "const" in out:
        out["enum"] = [out.pop("const")]
        out.setdefault("type", "string")
    if out.get("type") == "object":
        properties = out.get("properties")
        if properties is not None:
            required = set(out.get("required", []))
            out["properties"] = {}
            for name, prop in properties.items():
                converted = _structural(prop, defs)
                if (
                    name not in required
                    and "$ref" in prop
                    and "default" not in converted
                    and not converted.get("required")
                ):
                    # So that the API server applies the nested defaults too. Spelled out rather than
                    # `{}`: the API server checks a default against the CEL rules before nested defaulting.
                    converted["default"] = {
                        key: child["default"]
                        for key, child in (converted.get("properties") or {}).items()
                        if "default" in child
                    }
                out["properties"][name] = converted
            out.pop("additionalProperties", None)
        elif isinstance(out.get("additionalProperties"), dict):
            out["additionalProperties"] = _structural(out["additionalProperties"], defs)
        elif out.get("additionalProperties") is True:
            out.pop("additionalProperties")
            out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("type") == "array" and "items" in out:
        out["items"] = _structural(out["items"], defs)
    return out


def _schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(raw, raw.get("$defs", {}))


def openapi_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": (
            "DataJob runs a fault-tolerant data-processing job on worker pods sized to the hardware it asks "
            "for, resuming failed workers' shards from their last checkpoint."
        ),
        "required": ["spec"],
        "x-kubernetes-validations": [{"rule": NAME_RULE, "message": NAME_MESSAGE}],
        "properties": {
            "apiVersion": {"type": "string", "description": "datajob.dev/v1alpha1"},
            "kind": {"type": "string", "description": "DataJob"},
            "metadata": {"type": "object"},
            "spec": _schema(DataJobSpec),
            "status": _schema(DataJobStatus),
        },
    }


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "datajob-operator"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": "datajob",
                "shortNames": ["dj"],
                "categories": ["all", "datajob"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.workers",
                            "statusReplicasPath": ".status.workers.active",
                            "labelSelectorPath": ".status.workers.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {
                            "name": "Shards",
                            "type": "string",
                            "jsonPath": ".status.shards.summary",
                            "description": "done/total",
                        },
                        {
                            "name": "Workers",
                            "type": "string",
                            "jsonPath": ".status.workers.summary",
                            "description": "ready/desired",
                        },
                        {
                            "name": "Progress",
                            "type": "string",
                            "jsonPath": ".status.progress.summary",
                            "description": "input consumed",
                        },
                        {
                            "name": "ETA",
                            "type": "string",
                            "jsonPath": ".status.progress.eta",
                            "description": "time left at the recent rate",
                        },
                        {
                            "name": "Lag",
                            "type": "string",
                            "jsonPath": ".status.batches.lag",
                            "description": "continuous jobs: age of the oldest unprocessed input",
                        },
                        {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts"},
                        {
                            "name": "Hardware",
                            "type": "string",
                            "jsonPath": ".status.hardware.summary",
                            "description": "workers per hardware profile",
                            "priority": 1,
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                }
            ],
        },
    }


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_crd() -> str:
    header = "# Generated by `make crds` from core/datajob_core/api/models.py. Do not edit.\n"
    return header + yaml.dump(crd(), Dumper=_NoAliases, sort_keys=False, width=120)


def _constraints(node: dict[str, Any]) -> str:
    parts = []
    for key, label in (
        ("minimum", "min"),
        ("maximum", "max"),
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
        ("pattern", "pattern"),
    ):
        if key in node:
            value = node[key]
            parts.append(f"{label} `{value}`" if key == "pattern" else f"{label} {value}")
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    for rule in node.get("x-kubernetes-validations", []):
        parts.append(f"rule: {rule['message']}")
    return "; ".join(parts).replace("|", "\\|")


def _type(node: dict[str, Any]) -> str:
    kind = node.get("type", "object")
    if kind == "array":
        return f"[]{_type(node.get('items', {}))}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map[string]{_type(node['additionalProperties'])}"
    return str(kind)


def _rows(node: dict[str, Any], path: str, required: bool, rows: list[str]) -> None:
    # JSON renders scalars and objects inline (YAML would add document markers such as `3\n...`).
    default = f"`{json.dumps(node['default'], separators=(', ', ': '))}`" if "default" in node else ""
    description = (node.get("description") or "").replace("\n", " ").replace("|", "\\|")
    cells = [f"`{path}`", _type(node), "yes" if required else "", default, _constraints(node), description]
    rows.append("| " + " | ".join(cells) + " |")
    target = node.get("items", node) if node.get("type") == "array" else node
    for name, child in (target.get("properties") or {}).items():
        suffix = "[]" if node.get("type") == "array" else ""
        _rows(child, f"{path}{suffix}.{name}", name in target.get("required", []), rows)


def render_docs() -> str:
    schema = openapi_schema()
    rows: list[str] = []
    _rows(schema["properties"]["spec"], "spec", True, rows)
    status_rows: list[str] = []
    _rows(schema["properties"]["status"], "status", False, status_rows)
    head = "| field | type | required | default | constraints | description |\n" + "| --- " * 6 + "|"
    return (
        "# DataJob API reference (datajob.dev/v1alpha1)\n\n"
        "Generated by `make crds` from `core/datajob_core/api/models.py`; "
        "`kubectl explain datajob.spec.<field>` shows the same descriptions. Rules are enforced by the API "
        "server at admission (CEL) and by local mode.\n\n"
        "## spec\n\n"
        + head
        + "\n"
        + "\n".join(rows)
        + "\n\n## status\n\n"
        + head
        + "\n"
        + "\n".join(status_rows)
        + "\n"
    )
