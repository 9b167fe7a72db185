"""Which checkpoint files may go: a pure decision on the ledger as durably stored.

The fencing rule (docs/design.md, "Fencing attempts and checkpoints"): workers only ever *add* checkpoint
files, each under a name unique to its attempt (``<attempt>.<seq>``), and never delete one. Only the
operator (or the local-mode driver) deletes them, and only after the ledger that makes them redundant is
durable:

- a shard's files ordered before the checkpoint the ledger names, by (attempt, seq), are superseded;
- every file of a committed or permanently failed shard is garbage.

A file a zombie (an attempt the ledger has moved past) writes later is ordered before the current
attempt's, so the next collection removes it; a file newer than the named one (written, not yet reported)
is kept, because its report may still arrive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from datajob_core.shards.ledger import Checkpoint, Ledger, ShardState

# A checkpoint's state name: "<attempt>.<seq>". Anchored, digits only: it is joined into a path, so it must
# not be able to name anything outside the shard's directory.
STATE_NAME = re.compile(r"^([0-9]{1,9})\.([0-9]{1,12})$")

Watermark = tuple[int, int]  # (attempt, seq): files ordered strictly before it are superseded
ALL: Watermark = (2**62, 0)  # every file of the shard


def parse_state_name(name: object) -> Watermark | None:
    """(attempt, seq) of a state name, or None if it is not one (never trust it as a path then)."""
    if not isinstance(name, str):
        return None
    match = STATE_NAME.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def state_name(attempt: int, seq: int) -> str:
    return f"{attempt}.{seq}"


def _named(checkpoint: Checkpoint | None) -> Watermark | None:
    return parse_state_name((checkpoint or {}).get("state"))


@dataclass(frozen=True)
class Collection:
    """What to delete now, and the snapshot to pass to the next call."""

    targets: dict[int, Watermark]  # shard -> delete files ordered before this (ALL: the whole shard)
    snapshot: dict[int, Watermark | None]


def plan_collection(previous: dict[int, Watermark | None] | None, ledger: Ledger) -> Collection:
    """Targets that changed since ``previous`` (None: first call, e.g. after an operator restart).

    The snapshot covers only shards with an entry in the ledger (in flight, waiting for retry, failed), so
    each call costs O(workers + failures), not O(shards).
    """
    snapshot: dict[int, Watermark | None] = {}
    for shard, running in ledger.in_flight.items():
        snapshot[shard] = _named(running.checkpoint)
    for shard, waiting in ledger.retry.items():
        snapshot[shard] = _named(waiting.checkpoint)
    for shard in ledger.failed:
        snapshot[shard] = ALL
    targets: dict[int, Watermark] = {}
    for shard, mark in snapshot.items():
        if mark is not None and (previous is None or previous.get(shard) != mark):
            targets[shard] = mark
    for shard in previous or {}:
        if shard not in snapshot and ledger.state_of(shard) is ShardState.SUCCEEDED:
            targets[shard] = ALL
    return Collection(targets, snapshot)
