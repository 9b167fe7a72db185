"""Time limits on user code: ``spec.retryPolicy.shardTimeoutSeconds`` and ``recordTimeoutSeconds``.

A user function that never returns leaves the worker's heartbeat thread beating, so to the operator the
worker looks healthy; only the worker can tell. Its heartbeat thread asks :meth:`Watchdog.expired`; on
expiry the worker writes the reason (naming the shard and the record) as its last words, dumps every
thread's stack into its log, and ends with exit code 124 (as ``timeout(1)`` does). The shard it held is
charged like any crash of its worker, with that reason, and retried up to ``maxShardAttempts``.

The limits are read from the environment (``DATAJOB_TIME_LIMITS``, JSON) that the operator and local
mode both set from the spec. :class:`Watchdog` itself is pure: it is told the time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

EXIT_CODE = 124


@dataclass(frozen=True)
class Limits:
    shard_seconds: float | None = None  # one attempt of one shard, from its start (or resume)
    record_seconds: float | None = None  # one call of a user function (processor.function, a mapper)

    @classmethod
    def from_env(cls, text: str | None) -> Limits:
        data = json.loads(text) if text else {}
        return cls(data.get("shardSeconds"), data.get("recordSeconds"))


class Watchdog:
    """Where user code is now, and whether it has overstayed (read by the heartbeat thread)."""

    def __init__(self, limits: Limits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self.clock = clock
        self.shard: int | None = None
        self.started = 0.0
        self.records = 0  # records of the shard given to the processor before the current batch
        self.where = ""  # where the current batch starts
        self.calls = 0  # user-function calls since then
        self.call_started: float | None = None

    @property
    def armed(self) -> bool:
        return self.limits.shard_seconds is not None or self.limits.record_seconds is not None

    def start_shard(self, shard: int, records: int) -> None:
        self.shard, self.started, self.records = shard, self.clock(), records
        self.where, self.calls, self.call_started = "", 0, None

    def end_shard(self) -> None:
        self.shard = None

    def batch_done(self, records: int, where: str) -> None:
        """The shard's position after a batch: ``records`` so far, the next batch starting ``where``."""
        self.records, self.where, self.calls, self.call_started = records, where, 0, None

    def call(self) -> None:
        """Before each call of a user function (cheap: it runs once per record)."""
        self.calls += 1
        self.call_started = self.clock()

    def returned(self) -> None:
        self.call_started = None

    def expired(self) -> str | None:
        """The reason the current shard must fail now, or None."""
        if self.shard is None:
            return None
        now = self.clock()
        record = self.records + max(self.calls, 1)
        near = f" ({self.where})" if self.where else ""
        limit = self.limits.record_seconds
        if limit is not None and self.call_started is not None and now - self.call_started > limit:
            return (
                f"RecordTimeout: shard {self.shard}: the user function did not return within {limit:g}s "
                f"(spec.retryPolicy.recordTimeoutSeconds) on record {record} of the shard{near}"
            )
        limit = self.limits.shard_seconds
        if limit is not None and now - self.started > limit:
            return (
                f"ShardTimeout: shard {self.shard} did not finish within {limit:g}s "
                f"(spec.retryPolicy.shardTimeoutSeconds); it was at record {record}{near}"
            )
        return None
