"""What ``spec.podTemplate.spec`` may and may not say: a DataJob author must not get more than a DataJob.

The operator owns identity and privilege of worker pods: their ServiceAccount (whose token can write the
job's Leases), token mounting, host namespaces, privileged or root containers, host paths and node
placement by name. Everything users legitimately need stays possible: volumes of the kinds the
``restricted`` Pod Security Standard allows, sidecars and init containers under the same restrictions,
labels, annotations, env, affinity, tolerations, DNS settings, imagePullSecrets.

Enforced twice from the one table below: by the API server at admission (CEL rules in the CRD, generated
by :func:`template_schema`; each names the field) and by the operator before it creates a pod
(:func:`violations`, which also catches volume kinds the CEL denylist cannot know about, since it checks
an allowlist).
"""

from __future__ import annotations

from typing import Any

PATH = "spec.podTemplate.spec"

# Pod fields a template may not set at all, and why.
FORBIDDEN_POD_FIELDS: dict[str, str] = {
    "serviceAccountName": "workers run as the job's own ServiceAccount, which the operator manages",
    "serviceAccount": "workers run as the job's own ServiceAccount, which the operator manages",
    "automountServiceAccountToken": "the operator decides how the worker's token is mounted",
    "hostNetwork": "host namespaces are not available to DataJob workers",
    "hostPID": "host namespaces are not available to DataJob workers",
    "hostIPC": "host namespaces are not available to DataJob workers",
    "nodeName": "bypasses the scheduler; use spec.nodeSelector or spec.affinity",
    "ephemeralContainers": "ephemeral containers are added by kubectl debug, not by a template",
}

# The volume sources the `restricted` Pod Security Standard allows; anything else is refused.
ALLOWED_VOLUME_SOURCES = (
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
)
# Every other source of core/v1 Volume (Kubernetes 1.36), for the CEL rules: CEL can only test declared
# fields, so admission uses this denylist and the operator's allowlist check covers future kinds.
FORBIDDEN_VOLUME_SOURCES = (
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "iscsi",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
)
ALLOWED_CAPABILITIES = ("NET_BIND_SERVICE",)
CONTAINER_LISTS = ("containers", "initContainers")
MAX_CONTAINERS = 32
MAX_VOLUMES = 128
_NOT_ROOT = "must not run as root: the `restricted` Pod Security Standard applies to DataJob workers"


def violations(spec: dict[str, Any] | None) -> list[str]:
    """Every problem with a pod template spec, each naming its field; empty when it is acceptable."""
    if not spec:
        return []
    if not isinstance(spec, dict):
        return [f"{PATH} must be an object"]
    problems = [
        f"{PATH}.{name} cannot be set: {why}" for name, why in FORBIDDEN_POD_FIELDS.items() if name in spec
    ]
    if spec.get("hostUsers") is True:
        problems.append(f"{PATH}.hostUsers cannot be true: workers may not share the host's user namespace")
    problems += _security_context(spec.get("securityContext"), f"{PATH}.securityContext", pod=True)
    for index, volume in enumerate(_items(spec.get("volumes"))):
        sources = [key for key in volume if key != "name"]
        for source in sources:
            if source not in ALLOWED_VOLUME_SOURCES:
                problems.append(
                    f"{PATH}.volumes[{index}].{source} is not allowed: volume kinds allowed are "
                    + ", ".join(ALLOWED_VOLUME_SOURCES)
                )
    for key in CONTAINER_LISTS:
        for index, container in enumerate(_items(spec.get(key))):
            where = f"{PATH}.{key}[{index}]"
            problems += _security_context(
                container.get("securityContext"), f"{where}.securityContext", pod=False
            )
            for port_index, port in enumerate(_items(container.get("ports"))):
                if port.get("hostPort"):
                    problems.append(f"{where}.ports[{port_index}].hostPort is not allowed")
    return problems


def _items(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _security_context(context: Any, where: str, *, pod: bool) -> list[str]:
    if not isinstance(context, dict):
        return []
    problems = []
    if context.get("runAsUser") == 0:
        problems.append(f"{where}.runAsUser {_NOT_ROOT}")
    if context.get("runAsNonRoot") is False:
        problems.append(f"{where}.runAsNonRoot {_NOT_ROOT}")
    if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
        problems.append(f"{where}.seccompProfile.type cannot be Unconfined")
    if (context.get("windowsOptions") or {}).get("hostProcess"):
        problems.append(f"{where}.windowsOptions.hostProcess cannot be true")
    for key in ("type", "user", "role"):
        if (context.get("seLinuxOptions") or {}).get(key):
            problems.append(f"{where}.seLinuxOptions.{key} cannot be set (only level may be)")
    if pod:
        if context.get("sysctls"):
            problems.append(f"{where}.sysctls cannot be set")
        return problems
    if context.get("privileged"):
        problems.append(f"{where}.privileged cannot be true")
    if context.get("allowPrivilegeEscalation"):
        problems.append(f"{where}.allowPrivilegeEscalation cannot be true")
    if context.get("procMount") not in (None, "Default"):
        problems.append(f"{where}.procMount must be Default")
    added = (context.get("capabilities") or {}).get("add") or []
    for capability in added:
        if capability not in ALLOWED_CAPABILITIES:
            problems.append(
                f"{where}.capabilities.add cannot include {capability}: only "
                + ", ".join(ALLOWED_CAPABILITIES)
                + " may be added"
            )
    return problems


# -- the same rules as a structural schema with CEL, for the CRD ------------------------------------------


def _rule(rule: str, message: str, field: str) -> dict[str, str]:
    return {"rule": rule, "message": message, "fieldPath": f".{field}"}


def _open(properties: dict[str, Any], rules: list[dict[str, str]] | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": properties,
    }
    if rules:
        node["x-kubernetes-validations"] = rules
    return node


def _not_true(field: str, message: str) -> dict[str, str]:
    return _rule(f"!has(self.{field}) || !self.{field}", message, field)


def _context_schema(*, pod: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "runAsUser": {"type": "integer", "format": "int64"},
        "runAsNonRoot": {"type": "boolean"},
        "seccompProfile": _open(
            {"type": {"type": "string", "maxLength": 64}},
            [_rule("!has(self.type) || self.type != 'Unconfined'", "type cannot be Unconfined", "type")],
        ),
        "windowsOptions": _open(
            {"hostProcess": {"type": "boolean"}}, [_not_true("hostProcess", "hostProcess cannot be true")]
        ),
        "seLinuxOptions": _open(
            {key: {"type": "string", "maxLength": 253} for key in ("type", "user", "role")}
        ),
    }
    rules = [
        _rule("!has(self.runAsUser) || self.runAsUser != 0", f"runAsUser {_NOT_ROOT}", "runAsUser"),
        _rule("!has(self.runAsNonRoot) || self.runAsNonRoot", f"runAsNonRoot {_NOT_ROOT}", "runAsNonRoot"),
    ]
    rules += [
        _rule(
            f"!has(self.seLinuxOptions) || !has(self.seLinuxOptions.{key})",
            f"seLinuxOptions.{key} cannot be set (only level may be)",
            f"seLinuxOptions.{key}",
        )
        for key in ("type", "user", "role")
    ]
    if pod:
        properties["sysctls"] = {
            "type": "array",
            "maxItems": 64,
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        }
        rules.append(
            _rule("!has(self.sysctls) || size(self.sysctls) == 0", "sysctls cannot be set", "sysctls")
        )
        return _open(properties, rules)
    allowed = ", ".join(f"'{c}'" for c in ALLOWED_CAPABILITIES)
    properties.update(
        privileged={"type": "boolean"},
        allowPrivilegeEscalation={"type": "boolean"},
        procMount={"type": "string", "maxLength": 64},
        capabilities=_open(
            {"add": {"type": "array", "maxItems": 64, "items": {"type": "string", "maxLength": 64}}},
            [
                _rule(
                    f"!has(self.add) || self.add.all(c, c in [{allowed}])",
                    "add may only include " + ", ".join(ALLOWED_CAPABILITIES),
                    "add",
                )
            ],
        ),
    )
    rules += [
        _not_true("privileged", "privileged cannot be true"),
        _not_true("allowPrivilegeEscalation", "allowPrivilegeEscalation cannot be true"),
        _rule(
            "!has(self.procMount) || self.procMount == 'Default'", "procMount must be Default", "procMount"
        ),
    ]
    return _open(properties, rules)


def _container_schema() -> dict[str, Any]:
    port = _open(
        {"hostPort": {"type": "integer", "format": "int32"}},
        [_rule("!has(self.hostPort) || self.hostPort == 0", "hostPort is not allowed", "hostPort")],
    )
    return _open(
        {
            "securityContext": _context_schema(pod=False),
            "ports": {"type": "array", "maxItems": 64, "items": port},
        }
    )


def template_schema() -> dict[str, Any]:
    """The CRD schema of ``spec.podTemplate.spec``: open for everything else, closed on privilege."""
    properties: dict[str, Any] = {
        name: {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
        if name == "ephemeralContainers"
        else {"type": "boolean"}
        if name.startswith(("host", "automount"))
        else {"type": "string", "maxLength": 253}
        for name in FORBIDDEN_POD_FIELDS
    }
    properties["hostUsers"] = {"type": "boolean"}
    properties["securityContext"] = _context_schema(pod=True)
    properties["volumes"] = {
        "type": "array",
        "maxItems": MAX_VOLUMES,
        "items": _open(
            {
                source: {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                for source in FORBIDDEN_VOLUME_SOURCES
            },
            [
                _rule(
                    f"!has(self.{source})",
                    f"{source} volumes are not allowed: volume kinds allowed are "
                    + ", ".join(ALLOWED_VOLUME_SOURCES),
                    source,
                )
                for source in FORBIDDEN_VOLUME_SOURCES
            ],
        ),
    }
    for key in CONTAINER_LISTS:
        properties[key] = {"type": "array", "maxItems": MAX_CONTAINERS, "items": _container_schema()}
    rules = [
        _rule(f"!has(self.{name})", f"{name} cannot be set: {why}", name)
        for name, why in FORBIDDEN_POD_FIELDS.items()
    ]
    rules.append(
        _rule(
            "!has(self.hostUsers) || !self.hostUsers",
            "hostUsers cannot be true: workers may not share the host's user namespace",
            "hostUsers",
        )
    )
    schema = _open(properties, rules)
    _describe(schema)
    return schema


_DESCRIPTIONS = {
    **{name: f"Not allowed: {why}." for name, why in FORBIDDEN_POD_FIELDS.items()},
    **{
        source: "Not allowed: outside the restricted Pod Security Standard."
        for source in FORBIDDEN_VOLUME_SOURCES
    },
    "hostUsers": "Only false is allowed.",
    "securityContext": "Security context; it cannot make the pod privileged, root or unconfined.",
    "volumes": "Extra volumes, of the kinds " + ", ".join(ALLOWED_VOLUME_SOURCES) + ".",
    "containers": "Sidecars (one named worker is merged into the worker container), restricted like it.",
    "initContainers": "Init containers, restricted like the worker.",
    "ports": "Container ports; hostPort is not allowed.",
    "capabilities": "Only NET_BIND_SERVICE may be added.",
}


def _describe(node: dict[str, Any]) -> None:
    """Every declared property gets a description (kubectl explain shows them)."""
    for name, child in (node.get("properties") or {}).items():
        child.setdefault("description", _DESCRIPTIONS.get(name, "Restricted by the DataJob pod policy."))
        _describe(child)
    if isinstance(node.get("items"), dict):
        _describe(node["items"])
