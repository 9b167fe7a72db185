"""How a job's durable state (ledger and slots) is stored in ``status.ledger``: compressed, as one string.

The plain JSON form (``JobState.to_dict``) of a job with 1,000 workers holds a few thousand small maps;
stored as such, the API server also records every one of their keys in ``metadata.managedFields``, which
roughly doubles the object (measured: 560 KiB at 100,000 shards x 1,000 workers, against etcd's 1.5 MiB
limit). Stored as ``{"v": 2, "z": "<base64 of zlib of the JSON>"}`` the same state is one field to the
API server and a fraction of the size (docs/benchmarks.md). Objects written by an earlier operator (the
plain form, ``"v": 1``) are still read.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from datajob_core.cluster.reconciler import JobState

CODEC_VERSION = 2


def encode(state: JobState) -> dict[str, Any]:
    text = json.dumps(state.to_dict(), separators=(",", ":"), sort_keys=True).encode()
    return {"v": CODEC_VERSION, "z": base64.b64encode(zlib.compress(text, 6)).decode()}


def decode(data: dict[str, Any]) -> JobState:
    """The state from ``status.ledger``, in either form; ValueError if it cannot be read."""
    if data.get("v") == CODEC_VERSION:
        try:
            plain = json.loads(zlib.decompress(base64.b64decode(data["z"])))
        except (KeyError, ValueError, zlib.error) as error:
            raise ValueError(f"status.ledger cannot be decoded: {error}") from error
        return JobState.from_dict(plain)
    return JobState.from_dict(data)
