"""Retry policy: restart backoff and the crash-loop budget for workers, and the attempt rule for shards.

Pure functions of counts and times passed in, so the operator and local mode make the same decisions and a
restarted operator, reading the counts back from the DataJob status, continues exactly where it stopped.

Two different things are retried and they are kept apart on purpose:

- a *worker* (pod or local subprocess) that crashed is restarted after an exponential backoff, at most
  ``maxWorkerRestarts`` times (:class:`RestartPolicy`, :class:`RestartTracker`);
- a *shard* whose attempt failed is handed out again, at most ``max_attempts`` counted attempts in all
  (:func:`shard_attempts_exhausted`, :class:`ShardRetryPolicy`). A worker crash fails the shards it held,
  but a graceful release (scale-down, suspend) does not count against them; see ``Ledger.release_worker``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def backoff_seconds(restarts: int, initial: float, maximum: float) -> float:
    """Wait before restart number ``restarts`` (1-based): 0 for none, ``initial`` for the first, doubling.

    ``restarts=0`` means nothing has failed yet, so there is nothing to wait for. The result never exceeds
    ``maximum`` (also when ``initial`` already does), so a crash-looping worker is retried at a steady pace.
    """
    _check_count("restarts", restarts)
    _check_seconds("initial", initial)
    _check_seconds("maximum", maximum)
    if restarts == 0 or initial == 0:
        return 0.0
    try:
        wait = math.ldexp(initial, restarts - 1)  # initial * 2**(restarts-1), without building a huge int
    except OverflowError:
        return float(maximum)
    return float(min(wait, maximum))


def restart_allowed(restarts: int, max_worker_restarts: int) -> bool:
    """Whether one more restart fits the budget, given ``restarts`` already performed (0 = never restart)."""
    _check_count("restarts", restarts)
    _check_count("max_worker_restarts", max_worker_restarts)
    return restarts < max_worker_restarts


@dataclass(frozen=True)
class RestartDecision:
    """What to do about a crashed worker; ``tracker`` is the state to store if the restart goes ahead."""

    allowed: bool
    restart_number: int  # 1-based number of the restart this decision is about
    wait_seconds: float
    not_before: float  # earliest time the replacement may start (``now`` + ``wait_seconds``)
    reason: str
    tracker: RestartTracker


@dataclass(frozen=True)
class RestartPolicy:
    """The DataJob's worker restart settings.

    ``reset_after``: when set, a worker that ran at least that many seconds since its last restart is
    considered healthy again and its count starts over, as kubelet does for CrashLoopBackOff; a worker that
    fails once a day for a week is not in a crash loop. ``None`` makes the budget last the whole job.
    """

    max_worker_restarts: int
    initial_backoff: float = 10.0
    max_backoff: float = 300.0
    reset_after: float | None = None

    def __post_init__(self) -> None:
        _check_count("max_worker_restarts", self.max_worker_restarts)
        _check_seconds("initial_backoff", self.initial_backoff)
        _check_seconds("max_backoff", self.max_backoff)
        if self.reset_after is not None:
            _check_seconds("reset_after", self.reset_after)

    def backoff(self, restart_number: int) -> float:
        return backoff_seconds(restart_number, self.initial_backoff, self.max_backoff)


@dataclass(frozen=True)
class RestartTracker:
    """Restart history of one worker slot, small enough to keep in the DataJob status."""

    restarts: int = 0
    last_restart_at: float | None = None  # when the latest replacement was due to start

    def __post_init__(self) -> None:
        _check_count("restarts", self.restarts)
        if self.last_restart_at is not None:
            _check_time("last_restart_at", self.last_restart_at)

    def effective_restarts(self, policy: RestartPolicy, now: float) -> int:
        """Restarts that still count at ``now``: 0 once the worker has run ``reset_after`` seconds."""
        _check_time("now", now)
        if (
            policy.reset_after is not None
            and self.last_restart_at is not None
            and now - self.last_restart_at >= policy.reset_after
        ):
            return 0
        return self.restarts

    def decide(self, policy: RestartPolicy, now: float) -> RestartDecision:
        """The worker failed at ``now``: may it be restarted, and when?"""
        counted = self.effective_restarts(policy, now)
        number = counted + 1
        if not restart_allowed(counted, policy.max_worker_restarts):
            return RestartDecision(
                allowed=False,
                restart_number=number,
                wait_seconds=0.0,
                not_before=now,
                reason=(
                    f"worker failed after {counted} restart(s); "
                    f"maxWorkerRestarts={policy.max_worker_restarts} is exhausted"
                ),
                tracker=self,
            )
        wait = policy.backoff(number)
        return RestartDecision(
            allowed=True,
            restart_number=number,
            wait_seconds=wait,
            not_before=now + wait,
            reason=f"restart {number} of {policy.max_worker_restarts} after {wait:g}s backoff",
            tracker=RestartTracker(restarts=number, last_restart_at=now + wait),
        )

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"restarts": self.restarts}
        if self.last_restart_at is not None:
            result["lastRestartAt"] = self.last_restart_at
        return result

    @classmethod
    def from_dict(cls, data: Any) -> RestartTracker:
        if not isinstance(data, dict):
            raise ValueError(f"restart tracker must be an object, got {type(data).__name__}")
        restarts = data.get("restarts", 0)
        last = data.get("lastRestartAt")
        if not _is_int(restarts) or restarts < 0:
            raise ValueError(f"restart tracker: restarts must be a non-negative int, got {restarts!r}")
        if last is not None and (not _is_number(last) or not math.isfinite(last)):
            raise ValueError(f"restart tracker: lastRestartAt must be a finite number, got {last!r}")
        return cls(restarts=restarts, last_restart_at=None if last is None else float(last))


# -- shards ---------------------------------------------------------------------------------------------


def shard_attempts_exhausted(failures: int, max_attempts: int) -> bool:
    """The shard attempt rule: after ``failures`` counted failed attempts, is the shard FAILED for good?

    ``max_attempts`` is the number of attempts a shard may *use*, so 1 means "never retry". Only attempts
    that ended in a failure count; attempts ended by a graceful release do not.
    """
    _check_count("failures", failures)
    check_max_attempts(max_attempts)
    return failures >= max_attempts


def check_max_attempts(max_attempts: int) -> None:
    if not _is_int(max_attempts) or max_attempts < 1:
        raise ValueError(f"max_attempts must be an int >= 1, got {max_attempts!r}")


@dataclass(frozen=True)
class ShardRetryPolicy:
    """How often, and how soon, a failed shard is tried again."""

    max_attempts: int = 3
    initial_backoff: float = 0.0
    max_backoff: float = 60.0

    def __post_init__(self) -> None:
        check_max_attempts(self.max_attempts)
        _check_seconds("initial_backoff", self.initial_backoff)
        _check_seconds("max_backoff", self.max_backoff)

    def exhausted(self, failures: int) -> bool:
        return shard_attempts_exhausted(failures, self.max_attempts)

    def backoff(self, failures: int) -> float:
        """Wait before retrying a shard that has failed ``failures`` times (counted)."""
        return backoff_seconds(failures, self.initial_backoff, self.max_backoff)


# -- validation -----------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_count(name: str, value: int) -> None:
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def _check_seconds(name: str, value: float) -> None:
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


def _check_time(name: str, value: float) -> None:
    if not _is_number(value) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
