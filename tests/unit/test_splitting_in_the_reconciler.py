"""Splitting through the reconciler (the operator's and local mode's decisions), with real input files: who
is asked to stop, what a short end makes, and that shards split off a map shard are map shards everywhere
(maxFailedShards, counts, the job commit's wait), whatever a worker reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datajob_core.cluster import state_codec
from datajob_core.cluster.reconciler import (
    Decision,
    JobState,
    ObservedReport,
    ObservedWorker,
    Phase,
    policy_from_spec,
    reconcile,
)
from datajob_core.protocol import CurrentShard, ReportMessage, ShardOutcome, ShardProgress
from datajob_core.shards import splitting
from datajob_core.shards.stages import Layout

SPEC: dict[str, Any] = {
    "input": {"format": "text", "uris": ["x"]},
    "splitting": {"enabled": True, "minRemainder": "1Ki"},
    "retryPolicy": {"maxFailedShards": 5},
}


class Job:
    """The reconciler over a job of two 5,000-line files (one map shard each) and the job commit."""

    def __init__(self, tmp_path: Path, workers: int = 3, **spec: Any) -> None:
        self.spec = {**SPEC, "workers": workers, **spec}
        self.plan: list[dict[str, Any]] = []
        for f in range(2):
            path = tmp_path / f"f{f}.txt"
            path.write_text("".join(f"file {f} line {i}\n" for i in range(5000)))
            self.plan.append({"pieces": [{"path": str(path), "start": 0, "end": path.stat().st_size}]})
        self.policy = policy_from_spec(self.spec)
        self.state = JobState(Layout.for_spec(len(self.plan), self.spec).ledger())
        self.now = 0.0
        self.seq: dict[str, int] = {}
        self.reports: dict[int, ReportMessage] = {}
        self.step(with_workers=False)

    @property
    def pods(self) -> list[str]:
        return [s.pod for _, s in sorted(self.state.slots.items()) if s.pod]

    def report(self, slot: int, **fields: Any) -> None:
        pod = self.pods[slot]
        self.seq[pod] = self.seq.get(pod, 0) + 1
        self.reports[slot] = ReportMessage(pod=pod, seq=self.seq[pod], **fields)

    def outcome(self, slot: int, **fields: Any) -> ShardOutcome:
        pod = self.pods[slot]
        self.seq[pod] = self.seq.get(pod, 0) + 1
        return ShardOutcome(seq=self.seq[pod], **fields)

    def step(self, *, with_workers: bool = True) -> Decision:
        self.now += 1.0
        workers = [
            ObservedWorker(name=s.pod, slot=n, phase="Running", started_at=0.0)
            for n, s in self.state.slots.items()
            if s.pod and with_workers
        ]
        observed = {n: ObservedReport(n, r, self.now) for n, r in self.reports.items()}
        decision = reconcile(
            "job",
            self.policy,
            state=self.state,
            workers=workers,
            reports=observed,
            plan=self.plan,
            now=self.now,
        )
        self.reports = {}
        return decision

    def split_shard_0(self) -> list[int]:
        """Shard 0's worker reads, the others go idle; it is asked, stops at byte 2,000: the new shards."""
        self.step()
        self.report(
            0, current=CurrentShard(shard=0, attempt=1), progress={"0": ShardProgress(attempt=1, bytes=1000)}
        )
        self.report(1, done=[self.outcome(1, shard=1, attempt=1, records=5000, bytes=1)])
        decision = self.step()
        assert self.state.split_requests == [[0, 1]]
        assert [t.split for t in decision.assignments[0].shards] == [True]
        assert "SplitRequested" in {e.reason for e in decision.events}
        self.report(0, done=[self.outcome(0, shard=0, attempt=1, records=100, bytes=2000, end=[0, 2000])])
        decision = self.step()
        assert "ShardSplit" in {e.reason for e in decision.events}
        ledger = self.state.ledger
        return list(range(ledger.total, ledger.total + ledger.children))


def test_a_shard_asked_to_stop_has_its_rest_split_among_the_idle_workers(tmp_path: Path) -> None:
    job = Job(tmp_path)
    children = job.split_shard_0()
    ledger = job.state.ledger
    assert len(children) == 3  # three workers hold nothing once shard 0 stopped
    assert ledger.cuts[0].end == (0, 2000)
    assert ledger.cuts[children[0]].start == (0, 2000) and ledger.cuts[children[0]].exact
    assert ledger.cuts[children[-1]].end == (0, int(job.plan[0]["pieces"][0]["end"]))
    assert sorted(s for pod in job.pods for s in ledger.in_flight_for(pod)) == children
    assert job.state.split_requests == []
    # Counts in the status are of every map shard, the new ones included.
    counts = ledger.counts(0, Layout.of(ledger).map_shards)
    assert (counts.total, counts.succeeded, counts.running) == (5, 2, 3)
    # The job commit waits for them.
    assert ledger.stage_limit() == Layout.of(ledger).commit


def test_a_failed_split_off_shard_counts_against_max_failed_shards_not_as_a_failed_job_commit(
    tmp_path: Path,
) -> None:
    job = Job(tmp_path)
    children = job.split_shard_0()
    holder = next(n for n, pod in enumerate(job.pods) if children[0] in job.state.ledger.in_flight_for(pod))
    reason = "malformed record"
    job.report(
        holder, failed=[job.outcome(holder, shard=children[0], attempt=1, reason=reason, permanent=True)]
    )
    job.step()
    assert job.state.phase is not Phase.FAILED, job.state.message
    assert job.state.ledger.failed_count(0, 2) == 1


def test_an_end_outside_its_shard_splits_nothing_and_the_status_stays_readable(tmp_path: Path) -> None:
    job = Job(tmp_path)
    children = job.split_shard_0()
    child = children[1]
    holder = next(n for n, pod in enumerate(job.pods) if child in job.state.ledger.in_flight_for(pod))
    # Before the shard's own start: not a position in it.
    job.report(holder, done=[job.outcome(holder, shard=child, attempt=1, records=1, bytes=1, end=[0, 10])])
    job.step()
    assert job.state.ledger.children == len(children)
    state_codec.decode(state_codec.encode(job.state))  # a later pass can still read the status


def test_splits_stop_at_the_cut_limit_but_a_short_end_always_keeps_its_rest(tmp_path: Path) -> None:
    job = Job(tmp_path)
    job.split_shard_0()
    pieces = splitting.pieces_of(job.plan[1])
    split = splitting.split_rest(1, None, [0, 100], pieces, workers=50, least=1, made=splitting.MAX_CUTS)
    assert split is not None and len(split[1]) == 1  # at the limit: one part, never none
    split = splitting.split_rest(1, None, [0, 100], pieces, workers=50, least=1, made=splitting.MAX_CUTS - 3)
    assert split is not None and len(split[1]) == 3
