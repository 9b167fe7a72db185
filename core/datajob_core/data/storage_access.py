"""Whose identity a storage action the operator takes for a job may use (no confused deputy).

The operator lists a job's input to plan it, claims (and with ``spec.output.overwrite`` clears) its output,
and deletes superseded checkpoints. Every target is one the DataJob's author named, so each action must run
with an identity the author controls, or where an administrator has said the operator's own identity may
be used for that namespace:

- ``s3://`` locations are reached with the job's own Secret (``spec.storage.credentialsSecret``), which the
  author controls; workers get the same Secret.
- Any location (a POSIX path on a volume mounted into the operator, an ``s3://``, ``gs://`` or ``az://``
  prefix reached with the operator's cloud identity) may be reached with the operator's own identity only
  under a root the administrator lists (``--storage-root``; ``{namespace}`` stands for the job's
  namespace, so ``/data/{namespace}`` gives each namespace its own directory). Object-store roots are of
  the default endpoint only: a job naming ``spec.storage.endpoint`` needs its own credentials there.
- Requests go only to object-store endpoints the administrator allows (``--storage-endpoint``): a job's
  ``spec.storage.endpoint`` must not make the operator call arbitrary URLs inside the cluster network.

Anything else is refused before a single request is sent, with the field named. Pure: the caller resolves
symlinks (:func:`inside` on real paths) and reads the Secret. See docs/threat-model.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from datajob_core.data.locations import is_remote

# The schemes a job's own S3 Secret opens; any other remote scheme needs an administrator's root.
CREDENTIAL_SCHEMES = ("s3", "s3a")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_GLOB = re.compile(r"[*?[]")


@dataclass(frozen=True)
class StorageAccessPolicy:
    """The administrator's answer to "where may the operator act with its own identity, and call whom"."""

    roots: tuple[str, ...] = ()  # POSIX directories or object-store prefixes; "{namespace}" is substituted
    endpoints: tuple[str, ...] = ()  # scheme://host:port; host may start with "*.", port may be "*"

    def roots_for(self, namespace: str) -> list[str]:
        return [normalize(root.replace("{namespace}", namespace)) for root in self.roots]


class StorageAccessError(Exception):
    """The operator may not act on a location a job named; the message names the field and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def normalize(location: str) -> str:
    """A location as compared with roots: ``file://`` dropped, ``.``/``..`` and trailing ``/`` resolved."""
    if is_remote(location):
        scheme, _, rest = location.partition("://")
        parts = [p for p in rest.split("/") if p not in ("", ".")]
        if ".." in parts:  # keys are literal in object stores, but never let one read as a way out
            return f"{scheme.lower()}://\0invalid"
        return f"{scheme.lower()}://{'/'.join(parts)}"
    path = location.removeprefix("file://")
    if not path.startswith("/"):
        return "\0relative"
    return os.path.normpath(path).replace("//", "/")


def inside(location: str, root: str) -> bool:
    """Whether ``location`` is ``root`` or below it (both normalized; a path part is never cut)."""
    location, root = normalize(location), normalize(root)
    if "\0" in location or "\0" in root:
        return False
    return location == root or location.startswith(root.rstrip("/") + "/")


def static_prefix(pattern: str) -> str:
    """The part of a glob before its first wildcard's path part: every match is under it."""
    match = _GLOB.search(pattern)
    if match is None:
        return pattern
    head = pattern[: match.start()]
    return head[: head.rfind("/")] if "/" in head else ""


def origin(url: str) -> str:
    """``scheme://host:port`` of an endpoint URL, with the scheme's default port spelled out (an IPv6
    host keeps its brackets)."""
    scheme, host, port = _parts(url)
    return f"{scheme}://{host}:{port}"


def _parts(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = str(parts.port or _DEFAULT_PORTS.get(scheme, 0))
    except ValueError:  # not a number: only an allowlist pattern may say "*"
        port = parts.netloc.rpartition(":")[2]
    return scheme, host, port


def endpoint_allowed(policy: StorageAccessPolicy, endpoint: str) -> bool:
    """Scheme and host must match exactly; a pattern's host may start with ``*.`` (any subdomain, never
    the dots of another name) and its port may be ``*``."""
    scheme, host, port = _parts(endpoint)
    for pattern in policy.endpoints:
        want_scheme, want_host, want_port = _parts(pattern.replace("*.", "wildcard.", 1))
        if want_scheme != scheme or want_port not in (port, "*"):
            continue
        if want_host.startswith("wildcard."):
            suffix = want_host.removeprefix("wildcard")
            if host.endswith(suffix) and "." not in host[: -len(suffix)] and host[: -len(suffix)]:
                return True
        elif host and want_host == host:
            return True
    return False


def under_root(policy: StorageAccessPolicy, namespace: str, location: str) -> str | None:
    """The administrator's root (for this namespace) that holds ``location``, or None."""
    prefix = static_prefix(location)
    return next((root for root in policy.roots_for(namespace) if inside(prefix, root)), None)


def _is_s3(location: str) -> bool:
    return is_remote(location) and location.split("://", 1)[0].lower() in CREDENTIAL_SCHEMES


def uses_job_credentials(location: str, has_credentials: bool) -> bool:
    return has_credentials and _is_s3(location)


def check_job(
    policy: StorageAccessPolicy,
    namespace: str,
    spec: dict[str, Any],
    *,
    has_credentials: bool,
    why_no_credentials: str,
) -> None:
    """Raises StorageAccessError for the first location the operator may not act on for this job.

    ``has_credentials``: the job's Secret was read. ``why_no_credentials`` completes the refusal when it
    was not (no ``credentialsSecret``; the operator may not read Secrets).
    """
    storage = spec.get("storage") or {}
    locations = [(f"spec.input.uris[{i}]", uri) for i, uri in enumerate(spec["input"]["uris"])]
    locations.append(("spec.output.uri", spec["output"]["uri"]))
    endpoint = storage.get("endpoint")
    reaches_s3 = any(_is_s3(uri) for _, uri in locations)
    if endpoint and reaches_s3 and not endpoint_allowed(policy, endpoint):
        raise StorageAccessError(
            "spec.storage.endpoint",
            f"{origin(endpoint)} is not an object-store endpoint this operator may call (its "
            f"administrator allows: {_listing(policy.endpoints)}; chart value storage.allowedEndpoints)",
        )
    for field, uri in locations:
        check_location(
            policy,
            namespace,
            field,
            uri,
            has_credentials=has_credentials,
            why_no_credentials=why_no_credentials,
            endpoint=endpoint,
        )


def check_location(
    policy: StorageAccessPolicy,
    namespace: str,
    field: str,
    uri: str,
    *,
    has_credentials: bool = False,
    why_no_credentials: str = "",
    endpoint: str | None = None,
) -> None:
    """Raises StorageAccessError unless the operator may act on ``uri`` for a job of ``namespace``."""
    # An object-store root is a prefix of the store the operator's own identity belongs to (the cloud's
    # default endpoint): with another endpoint, the same bucket name is someone else's.
    own = under_root(policy, namespace, uri) is not None and not (is_remote(uri) and endpoint)
    if uses_job_credentials(uri, has_credentials) or own:
        return
    if _is_s3(uri):
        detail = f"the job's own credentials are needed ({why_no_credentials})"
    elif is_remote(uri):
        detail = "only s3:// locations can be reached with the job's own credentials"
    else:
        detail = "a path is reached through the operator's own volumes"
    raise StorageAccessError(
        field,
        f"{uri} is outside the storage roots where this operator may act with its own identity for "
        f"namespace {namespace} ({_listing(policy.roots_for(namespace))}; chart value storage.roots), "
        f"and {detail}",
    )


def _listing(items: Iterable[str]) -> str:
    listed = ", ".join(items)
    return listed or "none"


def own_credentials_refused(storage: Mapping[str, object], has_job_credentials: bool, allowed: bool) -> str:
    """Why a person reading a job's output (``kubectl datajob report``, the Python client) must not use their
    own credentials there unless they say so: the location and endpoint are the job author's choice, and a
    reader's credentials (an administrator's, say) would be a confused deputy's. "" when they may: the job's
    own Secret was read, the reader allowed it, or the job names neither a Secret nor an endpoint (then the
    job itself relies on the ambient identity, as the reader does)."""
    if has_job_credentials or allowed:
        return ""
    if storage.get("credentialsSecret"):
        return (
            f"spec.storage.credentialsSecret {storage['credentialsSecret']!r} cannot be read with your "
            "access; to read the output with your own credentials instead, say so (--use-my-credentials)"
        )
    if storage.get("endpoint"):
        return (
            f"the output is on {storage['endpoint']}, an endpoint the job's author chose; to send your own "
            "credentials there, say so (--use-my-credentials)"
        )
    return ""
