"""The shard ledger: which shard is where, and what happens to it when a worker reports or dies.

Shards are the integers ``0 .. total-1``. Each is in exactly one state: PENDING, ASSIGNED (in flight on one
worker), SUCCEEDED or FAILED. The ledger is stored in the DataJob status (etcd caps an object at 1.5 MiB),
so it never holds one entry per shard for the common states:

- every shard >= ``next_fresh`` has never been assigned (PENDING, no history);
- ``succeeded`` is a :class:`RangeSet`: shards finish roughly in order, so it is a few intervals;
- only the exceptional shards get an entry: ``in_flight`` (bounded by workers x prefetch), ``retry``
  (went back to PENDING after an interrupted or failed attempt) and ``failed``.

The key sets of ``succeeded``, ``failed``, ``in_flight`` and ``retry`` are disjoint and together are exactly
``range(0, next_fresh)``. A shard in flight may also have one *backup* attempt (speculation, on another
worker, from the same checkpoint): ``backups`` keys are a subset of ``in_flight``'s. The first of the two
attempts to commit wins; the other is dropped uncharged, and if the original ends first (dies or fails)
the backup becomes the shard's attempt instead of the shard going back to PENDING.

A map shard's unprocessed remainder may be *split* off (:mod:`datajob_core.shards.splitting`): the shard
then covers only a *cut* of its planned input, and each part of the rest becomes a new shard, numbered from
``total`` up (``total .. total+children-1``, in the map stage whatever their number). ``cuts`` holds the
range of every such shard; the others cover their plan entry. Children are never fresh: they start in
``retry``, so the invariant above holds over ``range(0, next_fresh)`` plus the children.

Attempt numbers are issued per shard, 1, 2, 3, ... one per assignment and never reused, so a report from an
earlier attempt (a worker that was presumed dead, a delayed message) can always be told apart from the
current one. Separately, ``failures`` counts the attempts that count toward ``max_attempts``: a graceful
release (scale-down, suspend) issues no failure, so the two numbers differ.

Shards may form consecutive *stages* separated by ``barriers``: a fresh shard at a barrier is handed out only
once every shard before it has finished (succeeded or failed). A job's map shards are one stage; its job
commit (:mod:`datajob_core.shards.stages`) is the last, so it is assigned, retried and charged like any shard.

Everything here is pure and deterministic (time is an argument), so local mode and the operator share it.
Operations return small frozen result objects so the caller can emit Kubernetes Events or log lines.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from datajob_core.shards.rangeset import RangeSet
from datajob_core.shards.retry import check_max_attempts, shard_attempts_exhausted
from datajob_core.shards.splitting import Cut

FORMAT_VERSION = 1

# Bounds on what a worker can put into the status. 1 000 workers x 256 B of checkpoint is 256 KiB, which
# leaves room for the rest of the DataJob within etcd's 1.5 MiB.
MAX_CHECKPOINT_BYTES = 256
MAX_REASON_CHARS = 200

Checkpoint = dict[str, Any]


class ShardState(StrEnum):
    PENDING = "Pending"
    ASSIGNED = "Assigned"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


# -- ledger entries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InFlight:
    """A shard being processed by ``worker`` as attempt number ``attempt``."""

    worker: str
    attempt: int
    failures: int  # counted failed attempts before this one
    checkpoint: Checkpoint | None
    assigned_at: float
    updated_at: float  # last assignment or accepted checkpoint; lets the caller spot stuck shards
    # Non-empty: a verifying attempt (see Retry.verify); the reason the shard fails if it finds no commit.
    verify: str = ""
    # The highest attempt number issued for the shard when above ``attempt`` (a backup attempt was issued
    # and dropped): the next attempt's number comes after it, so no number is ever issued twice.
    issued: int = 0

    @property
    def highest(self) -> int:
        return max(self.attempt, self.issued)


@dataclass(frozen=True)
class Retry:
    """A shard back in PENDING after an attempt ended without success; resumes from ``checkpoint``."""

    attempts: int  # attempts issued so far; the next assignment is attempt ``attempts + 1``
    failures: int  # attempts that counted toward max_attempts
    checkpoint: Checkpoint | None
    reason: str
    not_before: float  # earliest time it may be reassigned; 0 = immediately
    # Non-empty: its attempts are used up by a worker's death, which may have come after the attempt's
    # commit record was created (storage is the truth, not the missing report). One more attempt only
    # verifies: it reports the committed output, or the shard fails with this reason.
    verify: str = ""


@dataclass(frozen=True)
class FailedShard:
    """A shard that used up its attempts. Still accepts a late completion from an issued attempt."""

    attempts: int
    failures: int
    reason: str


# -- operation results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    shard: int
    attempt: int
    checkpoint: Checkpoint | None  # where to resume; None = start of the shard

    @property
    def resumed(self) -> bool:
        return self.checkpoint is not None


class CompletionStatus(StrEnum):
    ACCEPTED = "Accepted"
    DUPLICATE = "Duplicate"
    REJECTED = "Rejected"


@dataclass(frozen=True)
class Completion:
    shard: int
    status: CompletionStatus
    previous_state: ShardState | None = None  # None when rejected for an out-of-range shard
    # Set when another attempt of the shard was in flight: that worker must drop the shard.
    preempted_worker: str | None = None
    preempted_attempt: int | None = None
    reason: str = ""
    # The shard had a backup attempt: "won" (the backup committed first) or "lost" (another attempt did).
    speculation: str = ""

    @property
    def accepted(self) -> bool:
        return self.status is CompletionStatus.ACCEPTED

    @property
    def duplicate(self) -> bool:
        return self.status is CompletionStatus.DUPLICATE

    @property
    def rejected(self) -> bool:
        return self.status is CompletionStatus.REJECTED


class OutcomeKind(StrEnum):
    RETRY = "Retry"  # back to PENDING, resumes from its checkpoint
    FAILED = "Failed"  # attempts exhausted
    IGNORED = "Ignored"  # stale or unknown report; ledger unchanged


@dataclass(frozen=True)
class AttemptOutcome:
    shard: int
    worker: str
    attempt: int
    kind: OutcomeKind
    failures: int = 0  # counted failures after this outcome
    not_before: float = 0.0  # for RETRY
    reason: str = ""

    @property
    def retrying(self) -> bool:
        return self.kind is OutcomeKind.RETRY

    @property
    def failed(self) -> bool:
        return self.kind is OutcomeKind.FAILED

    @property
    def ignored(self) -> bool:
        return self.kind is OutcomeKind.IGNORED


@dataclass(frozen=True)
class Counts:
    total: int
    pending: int
    running: int
    succeeded: int
    failed: int


# -- the ledger -----------------------------------------------------------------------------------------


@dataclass
class Ledger:
    """Mutable shard ledger; see the module docstring for the representation and its invariant."""

    total: int
    next_fresh: int = 0
    succeeded: RangeSet = field(default_factory=RangeSet)
    failed: dict[int, FailedShard] = field(default_factory=dict)
    in_flight: dict[int, InFlight] = field(default_factory=dict)
    retry: dict[int, Retry] = field(default_factory=dict)
    barriers: tuple[int, ...] = ()  # first shard of each stage after the first
    backups: dict[int, InFlight] = field(default_factory=dict)  # speculative attempts of in-flight shards
    cuts: dict[int, Cut] = field(default_factory=dict)  # the input range of split shards and their children
    children: int = 0  # shards made by splits, numbered total .. total+children-1

    def __post_init__(self) -> None:
        self.check_invariant()

    @classmethod
    def new(cls, total: int, barriers: Iterable[int] = ()) -> Ledger:
        return cls(total=total, barriers=tuple(barriers))

    # -- queries ----------------------------------------------------------------------------------

    def state_of(self, shard: int) -> ShardState:
        self._check_shard(shard)
        if shard in self.in_flight:
            return ShardState.ASSIGNED
        if shard in self.retry or self.next_fresh <= shard < self.total:
            return ShardState.PENDING
        if shard in self.failed:
            return ShardState.FAILED
        return ShardState.SUCCEEDED

    def counts(self, first: int = 0, end: int | None = None) -> Counts:
        """Counts over shards ``[first, end)`` (default: all), with the children of splits of those shards."""
        end = self.total if end is None else end
        if (first, end) == (0, self.total):
            return Counts(
                total=self.total + self.children,
                pending=len(self.retry) + self.total - self.next_fresh,
                running=len(self.in_flight),
                succeeded=len(self.succeeded),
                failed=len(self.failed),
            )
        succeeded = sum(max(0, min(b, end) - max(a, first)) for a, b in self.succeeded.intervals())
        children = [
            c for c in range(self.total, self.total + self.children) if first <= self.cuts[c].root < end
        ]
        succeeded += sum(1 for c in children if c in self.succeeded)
        return Counts(
            total=end - first + len(children),
            pending=sum(first <= self.placed(s) < end for s in self.retry)
            + max(0, end - max(first, self.next_fresh)),
            running=sum(first <= self.placed(s) < end for s in self.in_flight),
            succeeded=succeeded,
            failed=self.failed_count(first, end),
        )

    def failed_count(self, first: int = 0, end: int | None = None) -> int:
        end = self.total if end is None else end
        return sum(first <= self.placed(s) < end for s in self.failed)

    def is_finished(self) -> bool:
        """Nothing pending and nothing in flight: every shard either succeeded or failed."""
        return self.next_fresh == self.total and not self.retry and not self.in_flight

    def workers(self) -> set[str]:
        """Workers holding at least one shard (an attempt of their own or a backup attempt)."""
        return {entry.worker for entry in (*self.in_flight.values(), *self.backups.values())}

    def in_flight_for(self, worker: str) -> list[int]:
        return sorted(shard for shard, entry in self.in_flight.items() if entry.worker == worker)

    def held_by(self, worker: str) -> list[tuple[int, InFlight]]:
        """Every attempt ``worker`` holds, its own shards' and backups, by shard."""
        mine = [(s, e) for s, e in self.in_flight.items() if e.worker == worker]
        mine += [(s, e) for s, e in self.backups.items() if e.worker == worker]
        return sorted(mine, key=lambda item: item[0])

    def attempt_of(self, shard: int, worker: str, attempt: int) -> InFlight | None:
        """The running attempt ``attempt`` of ``shard`` if ``worker`` holds it (original or backup)."""
        for entry in (self.in_flight.get(shard), self.backups.get(shard)):
            if entry is not None and entry.worker == worker and entry.attempt == attempt:
                return entry
        return None

    def stage_limit(self) -> int:
        """The first shard that may not start yet: the first barrier above the lowest unfinished shard."""
        lowest = min((self.placed(s) for s in (*self.retry, *self.in_flight)), default=self.next_fresh)
        lowest = min(lowest, self.next_fresh)
        return min((b for b in self.barriers if b > lowest), default=self.total)

    def placed(self, shard: int) -> int:
        """Where a shard stands in stage order: a child of a split stands where its root does."""
        cut = self.cuts.get(shard) if shard >= self.total else None
        return cut.root if cut is not None else shard

    def next_retry_time(self) -> float | None:
        """Earliest ``not_before`` of any retry shard, so the caller can schedule a wake-up; None if none."""
        return min((entry.not_before for entry in self.retry.values()), default=None)

    # -- operations -------------------------------------------------------------------------------

    def assign(self, worker: str, now: float) -> Assignment | None:
        """Give ``worker`` its next shard: a ready retry shard first (lowest number), else a fresh one.

        Retries go first so interrupted work, whose partial output is already paid for, finishes early and
        the job's tail is not made of stragglers. Returns None when nothing is pending at ``now``.
        """
        _check_worker(worker)
        now = _time("now", now)
        # Stages: nothing at or past the first barrier above the lowest unfinished shard may start.
        limit = self.stage_limit()
        ready = [s for s, entry in self.retry.items() if entry.not_before <= now and self.placed(s) < limit]
        if ready:
            shard = min(ready, key=lambda s: (self.placed(s), s))
            previous = self.retry.pop(shard)
            entry = InFlight(
                worker=worker,
                attempt=previous.attempts + 1,
                failures=previous.failures,
                checkpoint=previous.checkpoint,
                assigned_at=now,
                updated_at=now,
                verify=previous.verify,
            )
        elif self.next_fresh < limit:
            shard = self.next_fresh
            self.next_fresh += 1
            entry = InFlight(
                worker=worker, attempt=1, failures=0, checkpoint=None, assigned_at=now, updated_at=now
            )
        else:
            return None
        self.in_flight[shard] = entry
        return Assignment(shard=shard, attempt=entry.attempt, checkpoint=copy.deepcopy(entry.checkpoint))

    def speculate(self, shard: int, worker: str, now: float) -> Assignment | None:
        """Starts a backup attempt of in-flight ``shard`` on ``worker``, from the original's checkpoint, with
        the next attempt number. None (ledger unchanged) if the shard is not in flight, already has a
        backup, is held by ``worker`` itself, or is a verifying attempt (those only read storage)."""
        _check_worker(worker)
        now = _time("now", now)
        original = self.in_flight.get(shard) if _is_int(shard) else None
        if original is None or shard in self.backups or original.worker == worker or original.verify:
            return None
        if original.issued > original.attempt:
            # One backup per attempt: a backup that failed or lost its worker is not tried again (its
            # failures are never charged, so retrying it would loop, and crash its workers, for ever).
            return None
        entry = InFlight(
            worker=worker,
            attempt=original.highest + 1,
            failures=original.failures,
            checkpoint=copy.deepcopy(original.checkpoint),
            assigned_at=now,
            updated_at=now,
        )
        self.backups[shard] = entry
        return Assignment(shard=shard, attempt=entry.attempt, checkpoint=copy.deepcopy(entry.checkpoint))

    def drop_backup(self, shard: int) -> InFlight | None:
        """Ends ``shard``'s backup attempt, uncharged (its worker is told to drop it); the original goes
        on. The original remembers the backup's number so that it is never issued again."""
        backup = self.backups.pop(shard, None)
        original = self.in_flight.get(shard)
        if backup is not None and original is not None and backup.attempt > original.highest:
            self.in_flight[shard] = replace(original, issued=backup.attempt)
        return backup

    def record_checkpoint(
        self, shard: int, worker: str, attempt: int, checkpoint: Checkpoint, now: float
    ) -> bool:
        """Store the latest progress of the current attempt; True if accepted.

        False, with the ledger unchanged, for a stale report (not the shard's current worker and attempt)
        and for a checkpoint that is not a small JSON object (:func:`checkpoint_problem` says why): worker
        input must neither break nor bloat the status document, nor make the reconcile raise.
        """
        entry = self.attempt_of(shard, worker, attempt) if _is_int(shard) else None
        if entry is None:
            return False
        stored, problem = _normalise_checkpoint(checkpoint)
        if problem is not None:
            return False
        table = self.backups if self.backups.get(shard) is entry else self.in_flight
        table[shard] = replace(entry, checkpoint=stored, updated_at=_time("now", now))
        return True

    def complete(self, shard: int, worker: str, attempt: int, now: float) -> Completion:
        """A worker committed the output of ``shard``; idempotent.

        The worker's output committer makes output exactly-once, so the first commit reported by any
        attempt that was actually issued wins, even if the ledger has since moved the shard on (retry,
        another worker, FAILED). A still-running other attempt is removed and named in the result so the
        caller can tell that worker to drop it. Reports for never-issued attempts are rejected.
        """
        del now  # part of the uniform signature; completion does not depend on time
        if not _is_int(shard) or not 0 <= shard < self.total + self.children:
            return Completion(shard, CompletionStatus.REJECTED, reason=f"shard {shard!r} is out of range")
        state = self.state_of(shard)
        if state is ShardState.SUCCEEDED:
            return Completion(shard, CompletionStatus.DUPLICATE, previous_state=state)
        if not _is_int(attempt) or attempt < 1:
            return Completion(
                shard, CompletionStatus.REJECTED, previous_state=state, reason=f"invalid attempt {attempt!r}"
            )
        issued = self._attempts_issued(shard)
        if attempt > issued:
            return Completion(
                shard,
                CompletionStatus.REJECTED,
                previous_state=state,
                reason=f"attempt {attempt} was never issued (highest issued: {issued})",
            )
        preempted_worker: str | None = None
        preempted_attempt: int | None = None
        backup = self.backups.get(shard)
        running = self.in_flight.get(shard)
        for holder in (backup, running):
            if holder is not None and holder.attempt == attempt and holder.worker != worker:
                return Completion(
                    shard,
                    CompletionStatus.REJECTED,
                    previous_state=state,
                    reason=f"attempt {attempt} belongs to worker {holder.worker!r}, not {worker!r}",
                )
        if backup is not None:
            del self.backups[shard]
            if backup.attempt != attempt:
                preempted_worker, preempted_attempt = backup.worker, backup.attempt  # the backup lost
        if running is not None:
            if running.attempt != attempt:
                preempted_worker, preempted_attempt = running.worker, running.attempt
            del self.in_flight[shard]
        speculation = "" if backup is None else ("won" if backup.attempt == attempt else "lost")
        self.retry.pop(shard, None)
        self.failed.pop(shard, None)
        self.succeeded.add(shard)
        return Completion(
            shard,
            CompletionStatus.ACCEPTED,
            previous_state=state,
            preempted_worker=preempted_worker,
            preempted_attempt=preempted_attempt,
            speculation=speculation,
        )

    def fail_attempt(
        self,
        shard: int,
        worker: str,
        attempt: int,
        reason: str,
        now: float,
        *,
        max_attempts: int,
        backoff_seconds: float,
        permanent: bool = False,
        counted: bool = True,
    ) -> AttemptOutcome:
        """The current attempt failed (bad record, exception): retry later from the checkpoint, or FAILED.

        The failure counts toward ``max_attempts`` unless not ``counted`` (not the shard's fault: its input
        was lost); ``permanent`` (a failure any attempt would repeat) fails the shard at once.
        ``backoff_seconds`` delays the retry (e.g. ``ShardRetryPolicy.backoff(entry.failures + 1)``). A stale
        worker/attempt is ignored.
        """
        check_max_attempts(max_attempts)
        backoff = _seconds("backoff_seconds", backoff_seconds)
        entry = self.in_flight.get(shard) if _is_int(shard) else None
        backup = self.backups.get(shard) if _is_int(shard) else None
        if backup is not None and backup.worker == worker and backup.attempt == attempt:
            # A backup's failure is not charged: the original goes on, and fails on its own if it must.
            self.drop_backup(shard)
            return AttemptOutcome(shard, worker, attempt, OutcomeKind.IGNORED, reason="backup attempt ended")
        if entry is None or entry.worker != worker or entry.attempt != attempt:
            return AttemptOutcome(
                shard, worker, attempt, OutcomeKind.IGNORED, reason="stale or unknown report"
            )
        return self._end_attempt(
            shard,
            entry,
            reason=_reason(reason),
            now=_time("now", now),
            max_attempts=1 if permanent else max_attempts,
            backoff=backoff,
            count_attempt=counted,
        )

    def reopen(self, shard: int, attempts: int, reason: str, now: float) -> bool:
        """Sends a succeeded shard back to pending because its committed output was lost (a reducer found a
        map output deleted). ``attempts`` is the highest attempt known to have run, so the rerun gets a new
        number. Later stages wait for it again (:meth:`stage_limit`). False if it was not succeeded."""
        self._check_shard(shard)
        if self.state_of(shard) is not ShardState.SUCCEEDED:
            return False
        self.succeeded.discard(shard)
        # The winner's number, plus one: a backup of the winner's attempt may have been issued (a shard has
        # at most one backup per attempt), and the succeeded set does not remember it.
        issued = max(int(attempts), 1) + 1
        self.retry[shard] = Retry(issued, failures=0, checkpoint=None, reason=_reason(reason), not_before=now)
        return True

    def split(self, shard: int, keep: Cut, rest: list[Cut], now: float) -> list[int]:
        """``shard`` succeeded covering only ``keep`` (its worker stopped early, when asked to): each cut of
        ``rest`` becomes a new pending shard. Returns their numbers. The caller makes ``keep`` and ``rest``
        tile the shard's old range (:mod:`datajob_core.shards.splitting`); the ledger keeps them."""
        self._check_shard(shard)
        if self.state_of(shard) is not ShardState.SUCCEEDED:
            raise ValueError(f"shard {shard} is split only once its commit is accepted")
        self.cuts[shard] = keep
        made = []
        for cut in rest:
            child = self.total + self.children
            self.children += 1
            self.cuts[child] = cut
            self.retry[child] = Retry(0, failures=0, checkpoint=None, reason="split off", not_before=now)
            made.append(child)
        return made

    def requeue_failed(self, reason: str, now: float) -> list[int]:
        """Gives every permanently failed shard a fresh attempt budget (a user's retry): each goes back to
        PENDING from its start, with a new attempt number; shards that succeeded are not touched. Returns
        the shards requeued."""
        shards = sorted(self.failed)
        for shard in shards:
            entry = self.failed.pop(shard)
            issued = max(int(entry.attempts), 1)
            self.retry[shard] = Retry(
                issued, failures=0, checkpoint=None, reason=_reason(reason), not_before=now
            )
        return shards

    def release_worker(
        self,
        worker: str,
        reason: str,
        now: float,
        *,
        max_attempts: int,
        charge: tuple[int, int] | None = None,
        permanent: bool = False,
        backoff_seconds: float = 0.0,
    ) -> list[AttemptOutcome]:
        """The worker is gone: each shard it held goes back to PENDING, resuming from its checkpoint.

        Only ``charge`` = (shard, attempt), the shard the worker reported processing when it died, is
        charged a failed attempt (``permanent``: it fails at once), and only if that attempt is still in
        this worker's hands; the caller passes None for a disruption (eviction, drain, node loss, scale-down)
        or when the worker was not processing anything. Shards queued behind it never started and are
        never charged. Attempt numbers still advance on the next assignment.
        """
        check_max_attempts(max_attempts)
        backoff = _seconds("backoff_seconds", backoff_seconds)
        now = _time("now", now)
        text = _reason(reason)
        outcomes = []
        for shard in [s for s, e in self.backups.items() if e.worker == worker]:
            self.drop_backup(shard)  # never charged: the original goes on
        for shard in self.in_flight_for(worker):
            entry = self.in_flight[shard]
            charged = charge is not None and charge == (shard, entry.attempt)
            outcomes.append(
                self._end_attempt(
                    shard,
                    entry,
                    reason=text,
                    now=now,
                    max_attempts=1 if charged and permanent else max_attempts,
                    backoff=backoff if charged else 0.0,
                    count_attempt=charged,
                    died=True,
                )
            )
        return outcomes

    def _end_attempt(
        self,
        shard: int,
        entry: InFlight,
        *,
        reason: str,
        now: float,
        max_attempts: int,
        backoff: float,
        count_attempt: bool,
        died: bool = False,
    ) -> AttemptOutcome:
        del self.in_flight[shard]
        failures = entry.failures + 1 if count_attempt else entry.failures
        exhausted = count_attempt and shard_attempts_exhausted(failures, max_attempts)
        verify = entry.verify
        backup = self.backups.pop(shard, None)
        issued = max(entry.highest, backup.attempt if backup else 0)
        fails_now = exhausted and bool(verify or not died)
        if backup is not None and not fails_now:
            # The backup, already running (from the original's checkpoint when it started), becomes the
            # shard's attempt (also when a death used the last attempt: the backup's own commit or death
            # then decides).
            self.in_flight[shard] = replace(
                backup, failures=failures, issued=issued if issued > backup.attempt else 0
            )
            return AttemptOutcome(
                shard, entry.worker, entry.attempt, OutcomeKind.RETRY, failures=failures, reason=reason
            )
        if fails_now:
            reason = verify or reason  # a verifying attempt that found nothing: the death's reason stands
            self.failed[shard] = FailedShard(attempts=issued, failures=failures, reason=reason)
            return AttemptOutcome(
                shard, entry.worker, entry.attempt, OutcomeKind.FAILED, failures=failures, reason=reason
            )
        if exhausted:
            verify, backoff = reason, 0.0  # a death used the last attempt: verify before failing
        not_before = now + backoff if backoff > 0 else 0.0
        self.retry[shard] = Retry(
            attempts=issued,
            failures=failures,
            checkpoint=entry.checkpoint,
            reason=reason,
            not_before=not_before,
            verify=verify,
        )
        return AttemptOutcome(
            shard,
            entry.worker,
            entry.attempt,
            OutcomeKind.RETRY,
            failures=failures,
            not_before=not_before,
            reason=reason,
        )

    def _attempts_issued(self, shard: int) -> int:
        if shard in self.in_flight:
            backup = self.backups.get(shard)
            return max(self.in_flight[shard].highest, backup.attempt if backup else 0)
        if shard in self.retry:
            return self.retry[shard].attempts
        if shard in self.failed:
            return self.failed[shard].attempts
        return 0

    # -- invariant --------------------------------------------------------------------------------

    def check_invariant(self) -> None:
        """Raise ValueError unless the ledger is well formed (see the module docstring)."""
        if not _is_int(self.total) or self.total < 0:
            raise ValueError(f"ledger: total must be a non-negative int, got {self.total!r}")
        if not _is_int(self.next_fresh) or not 0 <= self.next_fresh <= self.total:
            raise ValueError(
                f"ledger: next_fresh must be an int in [0, {self.total}], got {self.next_fresh!r}"
            )
        if not isinstance(self.succeeded, RangeSet):
            raise ValueError("ledger: succeeded must be a RangeSet")
        if not isinstance(self.barriers, tuple) or any(
            not _is_int(b) or not 0 < b < self.total for b in self.barriers
        ):
            raise ValueError(f"ledger: barriers must be ints in (0, {self.total}), got {self.barriers!r}")
        if list(self.barriers) != sorted(set(self.barriers)):
            raise ValueError(f"ledger: barriers must be increasing, got {self.barriers!r}")

        if not _is_int(self.children) or self.children < 0:
            raise ValueError(f"ledger: children must be a non-negative int, got {self.children!r}")
        end = self.total + self.children
        top = self.succeeded.max()
        never = sum(
            max(0, min(b, self.total) - max(a, self.next_fresh)) for a, b in self.succeeded.intervals()
        )
        if (top is not None and top >= end) or never:
            raise ValueError(
                f"ledger: a succeeded shard was never assigned (next_fresh={self.next_fresh}, "
                f"children={self.children})"
            )
        for shard, cut in self.cuts.items():
            _check_entry(_is_int(shard) and 0 <= shard < end, shard, "a cut of a shard that does not exist")
            _check_entry(isinstance(cut, Cut), shard, "cut entry has the wrong type")
            _check_entry(
                cut.root == shard if shard < self.total else 0 <= cut.root < self.total,
                shard,
                f"a cut of the wrong root shard {cut.root}",
            )
        if any(child not in self.cuts for child in range(self.total, end)):
            raise ValueError("ledger: a child of a split has no cut")
        seen: dict[int, str] = {}
        for name, keys in (("failed", self.failed), ("in_flight", self.in_flight), ("retry", self.retry)):
            for shard in keys:
                if not _is_int(shard) or not (0 <= shard < self.next_fresh or self.total <= shard < end):
                    raise ValueError(
                        f"ledger: {name} shard {shard!r} is outside [0, next_fresh={self.next_fresh})"
                        f" and the children [{self.total}, {end})"
                    )
                if shard in seen:
                    raise ValueError(f"ledger: shard {shard} is both {seen[shard]} and {name}")
                if shard in self.succeeded:
                    raise ValueError(f"ledger: shard {shard} is both succeeded and {name}")
                seen[shard] = name
        # Disjoint sets, all below next_fresh: their union is range(0, next_fresh) iff the sizes add up.
        covered = len(self.succeeded) + len(seen)
        if covered != self.next_fresh + self.children:
            raise ValueError(
                f"ledger: {self.next_fresh + self.children - covered} shard(s) below "
                f"next_fresh={self.next_fresh} or among the children are in no state"
            )
        for shard, running in self.in_flight.items():
            _check_entry(isinstance(running, InFlight), shard, "in_flight entry has the wrong type")
            _check_entry(bool(running.worker) and isinstance(running.worker, str), shard, "empty worker")
            _check_entry(_is_int(running.attempt) and running.attempt >= 1, shard, "attempt must be >= 1")
            _check_entry(
                _is_int(running.failures) and 0 <= running.failures < running.attempt,
                shard,
                "in-flight failures must be in [0, attempt)",
            )
        for shard, backup in self.backups.items():
            original = self.in_flight.get(shard) if _is_int(shard) else None
            _check_entry(original is not None, shard, "a backup attempt of a shard not in flight")
            _check_entry(isinstance(backup, InFlight), shard, "backup entry has the wrong type")
            assert original is not None
            _check_entry(bool(backup.worker) and isinstance(backup.worker, str), shard, "empty worker")
            _check_entry(backup.worker != original.worker, shard, "a backup on the original's worker")
            _check_entry(
                _is_int(backup.attempt) and backup.attempt != original.attempt and backup.attempt >= 1,
                shard,
                "a backup must have an attempt number of its own",
            )
        for shard, waiting in self.retry.items():
            _check_entry(isinstance(waiting, Retry), shard, "retry entry has the wrong type")
            if shard >= self.total and waiting.attempts == 0:  # a child of a split, not yet started
                _check_entry(waiting.failures == 0, shard, "failures before the first attempt")
                continue
            _check_counts(shard, waiting.attempts, waiting.failures)
        for shard, dead in self.failed.items():
            _check_entry(isinstance(dead, FailedShard), shard, "failed entry has the wrong type")
            _check_counts(shard, dead.attempts, dead.failures)

    # -- serialisation ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Compact JSON-serialisable form, for the DataJob status.

        Top-level keys are spelled out (they appear once); per-shard entries use one- or two-letter keys
        and omit defaults, because there can be thousands of them. Shard keys are decimal strings.
        """
        running = {str(shard): _running_item(self.in_flight[shard]) for shard in sorted(self.in_flight)}
        backups = {str(shard): _running_item(self.backups[shard]) for shard in sorted(self.backups)}
        retry: dict[str, Any] = {}
        for shard in sorted(self.retry):
            r = self.retry[shard]
            item = {"a": r.attempts}
            _put(item, "f", r.failures, 0)
            _put(item, "c", copy.deepcopy(r.checkpoint), None)
            _put(item, "r", r.reason, "")
            _put(item, "nb", r.not_before, 0.0)
            _put(item, "v", r.verify, "")
            retry[str(shard)] = item
        failed: dict[str, Any] = {}
        for shard in sorted(self.failed):
            f = self.failed[shard]
            item = {"a": f.attempts}
            _put(item, "f", f.failures, 0)
            _put(item, "r", f.reason, "")
            failed[str(shard)] = item
        return {
            "v": FORMAT_VERSION,
            "total": self.total,
            "next": self.next_fresh,
            "succeeded": self.succeeded.to_list(),
            "running": running,
            "retry": retry,
            "failed": failed,
            **({"barriers": list(self.barriers)} if self.barriers else {}),
            **({"backups": backups} if backups else {}),
            **({"cuts": {str(s): self.cuts[s].to_list() for s in sorted(self.cuts)}} if self.cuts else {}),
            **({"children": self.children} if self.children else {}),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Ledger:
        """Inverse of :meth:`to_dict`; raises ValueError naming the problem if the document is corrupt."""
        if not isinstance(data, dict):
            raise ValueError(f"ledger: expected an object, got {type(data).__name__}")
        version = data.get("v")
        if version != FORMAT_VERSION:
            raise ValueError(f"ledger: unsupported format version {version!r} (expected {FORMAT_VERSION})")
        total = _field(data, "total", _is_int, "an int")
        next_fresh = _field(data, "next", _is_int, "an int")
        try:
            succeeded = RangeSet.from_list(data.get("succeeded", []))
        except ValueError as error:
            raise ValueError(f"ledger: succeeded: {error}") from None

        in_flight = {
            shard: _running_entry(item, f"running[{shard}]") for shard, item in _entries(data, "running")
        }
        backups = {
            shard: _running_entry(item, f"backups[{shard}]") for shard, item in _entries(data, "backups")
        }
        retry: dict[int, Retry] = {}
        for shard, item in _entries(data, "retry"):
            retry[shard] = Retry(
                attempts=_field(item, "a", _is_int, "an int", where=f"retry[{shard}]"),
                failures=_field(item, "f", _is_int, "an int", where=f"retry[{shard}]", default=0),
                checkpoint=_checkpoint_field(item, f"retry[{shard}]"),
                reason=_field(item, "r", _is_str, "a string", where=f"retry[{shard}]", default=""),
                not_before=_time_field(item, "nb", f"retry[{shard}]", default=0.0),
                verify=_field(item, "v", _is_str, "a string", where=f"retry[{shard}]", default=""),
            )
        failed: dict[int, FailedShard] = {}
        for shard, item in _entries(data, "failed"):
            failed[shard] = FailedShard(
                attempts=_field(item, "a", _is_int, "an int", where=f"failed[{shard}]"),
                failures=_field(item, "f", _is_int, "an int", where=f"failed[{shard}]", default=0),
                reason=_field(item, "r", _is_str, "a string", where=f"failed[{shard}]", default=""),
            )
        barriers = data.get("barriers") or []
        if not isinstance(barriers, list):
            raise ValueError("ledger: barriers must be a list")
        cuts_data = data.get("cuts") or {}
        if not isinstance(cuts_data, dict):
            raise ValueError("ledger: cuts must be an object keyed by shard number")
        cuts: dict[int, Cut] = {}
        for shard, item in cuts_data.items():
            if not isinstance(shard, str) or not shard.isascii() or not shard.isdigit():
                raise ValueError(f"ledger: cuts key {shard!r} is not a shard number")
            try:
                cuts[int(shard)] = Cut.from_list(item)
            except ValueError as error:
                raise ValueError(f"ledger: cuts[{shard}]: {error}") from None
        return cls(
            total=total,
            next_fresh=next_fresh,
            succeeded=succeeded,
            failed=failed,
            in_flight=in_flight,
            retry=retry,
            barriers=tuple(barriers),
            backups=backups,
            cuts=cuts,
            children=_field(data, "children", _is_int, "an int", default=0),
        )

    def _check_shard(self, shard: int) -> None:
        if not _is_int(shard) or not 0 <= shard < self.total + self.children:
            raise ValueError(f"shard {shard!r} is out of range [0, {self.total + self.children})")


# -- helpers --------------------------------------------------------------------------------------------


def _running_item(e: InFlight) -> dict[str, Any]:
    item: dict[str, Any] = {"w": e.worker, "a": e.attempt}
    _put(item, "f", e.failures, 0)
    _put(item, "c", copy.deepcopy(e.checkpoint), None)
    item["t"] = e.assigned_at
    item["u"] = e.updated_at
    _put(item, "v", e.verify, "")
    _put(item, "i", e.issued if e.issued > e.attempt else 0, 0)
    return item


def _running_entry(item: dict[str, Any], where: str) -> InFlight:
    return InFlight(
        worker=_field(item, "w", _is_str, "a string", where=where),
        attempt=_field(item, "a", _is_int, "an int", where=where),
        failures=_field(item, "f", _is_int, "an int", where=where, default=0),
        checkpoint=_checkpoint_field(item, where),
        assigned_at=_time_field(item, "t", where),
        updated_at=_time_field(item, "u", where),
        verify=_field(item, "v", _is_str, "a string", where=where, default=""),
        issued=_field(item, "i", _is_int, "an int", where=where, default=0),
    )


def _is_int(value: object) -> bool:
    # bool is an int subclass, but True as a shard or attempt number is always a bug.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _check_worker(worker: str) -> None:
    if not isinstance(worker, str) or not worker:
        raise ValueError(f"worker must be a non-empty string, got {worker!r}")


def _time(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _seconds(name: str, value: float) -> float:
    seconds = _time(name, value)
    if seconds < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return seconds


def _reason(reason: str) -> str:
    text = reason if isinstance(reason, str) else str(reason)
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 1] + "…"
    return text


def checkpoint_problem(checkpoint: object) -> str | None:
    """Why ``record_checkpoint`` would refuse this checkpoint, or None if it is acceptable."""
    return _normalise_checkpoint(checkpoint)[1]


def _normalise_checkpoint(checkpoint: object) -> tuple[Checkpoint | None, str | None]:
    """A private JSON-exact copy (so the status serialises and round-trips exactly), or the problem."""
    if not isinstance(checkpoint, dict):
        return None, f"checkpoint must be a JSON object, got {type(checkpoint).__name__}"
    try:
        text = json.dumps(checkpoint, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        return None, f"checkpoint is not JSON-serialisable: {error}"
    size = len(text.encode())
    if size > MAX_CHECKPOINT_BYTES:
        return None, f"checkpoint is {size} bytes of JSON, more than the {MAX_CHECKPOINT_BYTES} allowed"
    result: Checkpoint = json.loads(text)
    return result, None


def _check_entry(ok: bool, shard: int, problem: str) -> None:
    if not ok:
        raise ValueError(f"ledger: shard {shard}: {problem}")


def _check_counts(shard: int, attempts: int, failures: int) -> None:
    _check_entry(_is_int(attempts) and attempts >= 1, shard, "attempts must be >= 1")
    _check_entry(_is_int(failures) and 0 <= failures <= attempts, shard, "failures must be in [0, attempts]")


def _put(item: dict[str, Any], key: str, value: Any, default: Any) -> None:
    if value != default:
        item[key] = value


_MISSING = object()


def _field(
    data: dict[str, Any],
    key: str,
    check: Any,
    expected: str,
    *,
    where: str = "",
    default: Any = _MISSING,
) -> Any:
    value = data.get(key, default)
    label = f"{where}.{key}" if where else key
    if value is _MISSING:
        raise ValueError(f"ledger: {label} is missing")
    if not check(value):
        raise ValueError(f"ledger: {label} must be {expected}, got {value!r}")
    return value


def _time_field(item: dict[str, Any], key: str, where: str, default: Any = _MISSING) -> float:
    value = _field(
        item,
        key,
        lambda v: not isinstance(v, bool) and isinstance(v, int | float),
        "a number",
        where=where,
        default=default,
    )
    if not math.isfinite(value):
        raise ValueError(f"ledger: {where}.{key} must be finite, got {value!r}")
    return float(value)


def _checkpoint_field(item: dict[str, Any], where: str) -> Checkpoint | None:
    value = item.get("c")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"ledger: {where}.c must be an object, got {type(value).__name__}")
    try:
        # No size limit here: a limit lowered in a later version must not make old status unreadable.
        result: Checkpoint = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"ledger: {where}.c is not JSON: {error}") from None
    return result


def _entries(data: dict[str, Any], key: str) -> Iterable[tuple[int, dict[str, Any]]]:
    section = data.get(key, {})
    if not isinstance(section, dict):
        raise ValueError(
            f"ledger: {key} must be an object keyed by shard number, got {type(section).__name__}"
        )
    for raw, item in section.items():
        if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit() or str(int(raw)) != raw:
            raise ValueError(f"ledger: {key} key {raw!r} is not a shard number")
        if not isinstance(item, dict):
            raise ValueError(f"ledger: {key}[{raw}] must be an object, got {type(item).__name__}")
        yield int(raw), item
