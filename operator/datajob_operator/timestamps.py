"""Times as the API server writes them (RFC 3339, UTC, whole seconds)."""

from __future__ import annotations

import datetime


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(iso: str | None) -> float | None:
    """An API server time as seconds since the epoch; None for none."""
    if not iso:
        return None
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
