"""Where a job's data is, as the spec names it: local paths or object-store URLs, the store's endpoint, the
names of the credentials in its Secret, and whether an output could fall inside the job's own input.

Pure: strings in, answers out. Reaching a location is :mod:`datajob_core.storage`'s business.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

# The credentials a Secret named by spec.storage.credentialsSecret holds: the AWS SDKs' standard names, so
# the Secret can be mounted into workers with envFrom and every S3 client finds them.
ACCESS_KEY = "AWS_ACCESS_KEY_ID"
SECRET_KEY = "AWS_SECRET_ACCESS_KEY"
SESSION_TOKEN = "AWS_SESSION_TOKEN"
CREDENTIAL_KEYS = (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)

# What a job writes into its output; only these are removed by an overwrite.
JOB_FILES = re.compile(
    r"^(part-\d+(\.json)?|result|_SUCCESS|_temporary|_checkpoints|_attempts|_bad_records|_datajob|batches)$"
)
# Names a job writes, for telling whether an input glob could pick its own output up.
_SAMPLES = (
    "part-000000",
    "result",
    "_SUCCESS",
    "_bad_records/part-000000.jsonl",
    "_attempts/000000/1-0123456789ab/part",
    "_datajob/commits/part-000000.json",
    "_checkpoints/000000/1.1.json",
)


@dataclass(frozen=True)
class StorageConfig:
    """spec.storage without the Secret: where the object store is. Credentials come separately."""

    endpoint: str | None = None  # S3-compatible stores (MinIO, Ceph, R2); None = AWS
    region: str | None = None

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None) -> StorageConfig:
        storage = spec or {}
        return cls(endpoint=storage.get("endpoint") or None, region=storage.get("region") or None)

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("endpoint", self.endpoint), ("region", self.region)) if v}


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as ``glob.glob(..., recursive=True)`` reads it: ``*`` and ``?`` stay within a path part."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            out += f"[{'^' + body[1:] if body.startswith('!') else body}]"
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def output_inside_input(uris: list[str], output: str) -> str | None:
    """The first input URI whose files could include this job's own output, or None."""
    base = os.path.normpath(output.removeprefix("file://"))
    for uri in uris:
        if "://" in uri and not uri.startswith("file://"):
            continue  # object-store input with a path output: never the same place
        pattern = os.path.normpath(uri.removeprefix("file://"))
        regex = _glob_regex(pattern)
        if any(regex.match(f"{base}/{sample}") for sample in _SAMPLES):
            return uri
    return None
