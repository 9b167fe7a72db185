"""Property-based tests of the ledger and the operator-worker protocol (hypothesis).

A small simulated cluster drives the real pure code (``reconcile``, the ``Ledger``, the checkpoint
garbage-collection decision, the worker's ``Reporter``) through random interleavings of worker steps,
reports, crashes, disruptions, zombies (workers presumed dead that keep writing), and operator restarts
from the persisted status. Whatever the interleaving:

- no shard is committed twice (the output keeps the first commit; the status counts each shard once);
- no succeeded shard is handed out again;
- no checkpoint the ledger names is ever deleted (every resume finds its file);
- no shard is charged a failure that was not its own (only crashes of a worker that reported processing
  it), and disruptions and zombies charge nothing;
- once failures stop, the job finishes with every shard committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from datajob_core.cluster.reconciler import JobState, ObservedReport, ObservedWorker, Phase, Policy, reconcile
from datajob_core.data.checkpoint_gc import ALL, Watermark, parse_state_name, plan_collection
from datajob_core.protocol import AssignmentMessage, CurrentShard, ShardProgress, ShardTask
from datajob_core.shards.ledger import Ledger, ShardState
from datajob_worker.agent import Reporter

SHARDS = 5
RECORDS = 3  # per shard
# Budgets are high: what is under test is fencing and charging, and the teardown expects every failure the
# machine injected to be survivable (hypothesis found runs of >10 crashes of one slot).
POLICY = Policy(
    workers=2,
    max_shard_attempts=50,
    max_worker_restarts=1000,
    backoff_initial=1.0,
    backoff_max=2.0,
    max_failed_shards=0,
)
PLAN: list[dict[str, Any]] = [
    {"pieces": [{"path": f"/in/{n}", "start": 0, "end": 10}]} for n in range(SHARDS)
]


@dataclass
class SimWorker:
    """A worker process: what it last read, what it is doing, what it has written."""

    name: str
    slot: int
    reporter: Reporter
    tasks: list[ShardTask] = field(default_factory=list)
    current: ShardTask | None = None
    position: int = 0
    saves: int = 0
    finished: set[tuple[int, int]] = field(default_factory=set)
    exit_code: int | None = None  # set when its process ended
    zombie: bool = False  # its pod is gone but the process runs on, cut off from the API


class Protocol(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.persisted = JobState(Ledger.new(SHARDS)).to_dict()  # the DataJob status
        self.state = JobState.from_dict(self.persisted)
        self.leases: dict[int, tuple[AssignmentMessage | None, ObservedReport | None]] = {}
        self.workers: dict[str, SimWorker] = {}  # processes by pod name, zombies included
        self.pods: dict[str, ObservedWorker] = {}  # what the API server shows
        self.files: set[tuple[int, int, int]] = set()  # checkpoint files: (shard, attempt, seq)
        self.commits: dict[int, int] = {}  # shard -> attempt whose output was published (link: first wins)
        self.gc_snapshot: dict[int, Watermark | None] | None = None
        self.succeeded_ever: set[int] = set()
        self.chargeable: dict[int, int] = {}  # shard -> crashes of a worker that reported processing it

    @initialize()
    def start(self) -> None:
        self.operator_pass()  # the workers exist from the first step on

    # -- the operator ------------------------------------------------------------------------------
    @rule()
    def operator_pass(self) -> None:
        self.now += 1.0
        reports = {slot: report for slot, (_, report) in self.leases.items() if report is not None}
        decision = reconcile(
            "job",
            POLICY,
            state=self.state,
            workers=list(self.pods.values()),
            reports=reports,
            plan=PLAN,
            now=self.now,
        )
        # Persist first (the status write), then act: the order the controller keeps.
        self.persisted = self.state.to_dict()
        durable = Ledger.from_dict(self.persisted["shards"])
        collection = plan_collection(self.gc_snapshot, durable)
        for shard, below in collection.targets.items():
            self.files = {f for f in self.files if f[0] != shard or (below != ALL and (f[1], f[2]) >= below)}
        self.gc_snapshot = collection.snapshot
        for slot, message in decision.assignments.items():
            assert all(task.shard not in self.succeeded_ever for task in message.shards), (
                "succeeded shard re-run"
            )
            self.leases[slot] = (message, self.leases.get(slot, (None, None))[1])
        for name, graceful in decision.delete:
            pod = self.pods.pop(name, None)
            if pod is not None and graceful and name in self.workers:
                self.workers[name].exit_code = 0
            elif name in self.workers and self.workers[name].exit_code is None:
                self.workers[name].exit_code = 137
        for slot, name in decision.create:
            self.pods[name] = ObservedWorker(name=name, slot=slot, phase="Running", started_at=self.now)
            self.workers[name] = SimWorker(name, slot, Reporter(name))
        self.succeeded_ever |= {s for s in range(SHARDS) if durable.state_of(s) is ShardState.SUCCEEDED}

    @rule()
    def operator_restart(self) -> None:
        """A new operator process: everything it knows comes from the persisted status."""
        self.state = JobState.from_dict(self.persisted)
        self.gc_snapshot = None

    # -- workers ----------------------------------------------------------------------------------
    def live(self) -> list[SimWorker]:
        return [w for w in self.workers.values() if w.exit_code is None]

    @precondition(lambda self: any(w.exit_code is None for w in self.workers.values()))
    @rule(data=st.data())
    def work(self, data: st.DataObject) -> None:
        """A worker reads its Lease (unless cut off), then works through a few records, checkpointing
        and reporting as it goes, in an order hypothesis chooses (a report may lag its checkpoint)."""
        worker = data.draw(st.sampled_from(sorted(self.live(), key=lambda w: w.name)))
        if not worker.zombie and data.draw(st.booleans()):
            self.read(worker)
            if worker.exit_code is not None:
                return
        for _ in range(data.draw(st.integers(1, 3))):
            self.advance(worker)
            if worker.current is not None and data.draw(st.booleans()):
                self.checkpoint(worker)
            if data.draw(st.booleans()):
                self.report(worker)

    def read(self, worker: SimWorker) -> None:
        message = self.leases.get(worker.slot, (None, None))[0]
        if message is None or message.pod != worker.name:
            return
        worker.reporter.acknowledge(message.ack)
        worker.tasks = list(message.shards)
        if message.stop:
            self.report(worker)
            worker.exit_code = 0
            if worker.name in self.pods:
                self.pods[worker.name] = ObservedWorker(worker.name, worker.slot, "Succeeded")

    def checkpoint(self, worker: SimWorker) -> None:
        task = worker.current
        assert task is not None
        worker.saves += 1
        self.files.add((task.shard, task.attempt, worker.saves))  # written before anything names it
        worker.reporter.progress[str(task.shard)] = ShardProgress(
            attempt=task.attempt,
            checkpoint={"records": worker.position, "state": f"{task.attempt}.{worker.saves}"},
        )

    def advance(self, worker: SimWorker) -> None:
        if worker.current is None:
            todo = [t for t in worker.tasks if (t.shard, t.attempt) not in worker.finished]
            if not todo:
                return
            task = todo[0]
            named = (task.checkpoint or {}).get("state")
            if named is not None:
                event("resumed from a named checkpoint")
                mark = parse_state_name(named)
                assert mark is not None and (task.shard, *mark) in self.files, (
                    f"named checkpoint {named} deleted"
                )
            worker.current, worker.position = task, int((task.checkpoint or {}).get("records", 0))
            worker.reporter.current = CurrentShard(shard=task.shard, attempt=task.attempt)
            self.report(worker)
            return
        worker.position += 1
        if worker.position < RECORDS:
            return
        task = worker.current
        self.commits.setdefault(task.shard, task.attempt)  # link(2): the first publisher wins
        worker.finished.add((task.shard, task.attempt))
        worker.reporter.outcome(task, records=RECORDS)
        worker.current = None
        self.report(worker)

    def report(self, worker: SimWorker) -> None:
        if worker.zombie:
            return  # cut off from the API: its writes to the Lease never arrive
        message = self.leases.get(worker.slot, (None, None))[0]
        self.leases[worker.slot] = (message, ObservedReport(worker.slot, worker.reporter.message(), self.now))

    # -- failures ---------------------------------------------------------------------------------
    @precondition(lambda self: any(w.exit_code is None and not w.zombie for w in self.workers.values()))
    @rule(data=st.data(), kind=st.sampled_from(["crash", "crash", "disruption", "zombie"]))
    def kill(self, data: st.DataObject, kind: str) -> None:
        candidates = sorted(
            (w for w in self.live() if not w.zombie and w.name in self.pods), key=lambda w: w.name
        )
        if not candidates:
            return
        worker = data.draw(st.sampled_from(candidates))
        if kind == "crash":
            worker.exit_code = 137
            self.pods[worker.name] = ObservedWorker(
                worker.name, worker.slot, "Failed", exit_code=137, reason="OOMKilled"
            )
            report = self.leases.get(worker.slot, (None, None))[1]
            current = (
                report.report.current
                if report and report.report and report.report.pod == worker.name
                else None
            )
            if current is not None:
                event("crash while processing")
                if current.shard != min(t.shard for t in worker.tasks):
                    event("crash while processing a shard that is not the lowest held")
                self.chargeable[current.shard] = self.chargeable.get(current.shard, 0) + 1
        elif kind == "disruption":
            worker.exit_code = 143
            self.pods[worker.name] = ObservedWorker(
                worker.name, worker.slot, "Failed", exit_code=143, disruption="EvictionByEvictionAPI: evicted"
            )
        else:
            # Its node vanished: the pod object is gone, the process is not (a network partition).
            worker.zombie = True
            del self.pods[worker.name]
            event("zombie")

    # -- invariants -------------------------------------------------------------------------------
    @invariant()
    def nothing_lost_or_double_counted(self) -> None:
        ledger = self.state.ledger
        ledger.check_invariant()
        for shard in range(SHARDS):
            if ledger.state_of(shard) is ShardState.SUCCEEDED:
                assert shard in self.commits, f"shard {shard} succeeded without committed output"
        assert self.state.records == RECORDS * len(ledger.succeeded), "a shard was counted twice"

    @invariant()
    def only_a_shards_own_failures_are_charged(self) -> None:
        ledger = self.state.ledger
        for shard in range(SHARDS):
            entry = ledger.in_flight.get(shard) or ledger.retry.get(shard) or ledger.failed.get(shard)
            charged = entry.failures if entry is not None else 0
            assert charged <= self.chargeable.get(shard, 0), (
                f"shard {shard} charged {charged} for others' failures"
            )

    def teardown(self) -> None:
        """With no more failures, the job finishes and every shard is committed exactly once."""
        for _ in range(400):
            if self.state.phase in (Phase.SUCCEEDED, Phase.FAILED):
                break
            self.operator_pass()
            for worker in sorted(self.live(), key=lambda w: w.name):
                if worker.zombie:
                    worker.exit_code = 137  # the partition heals and the node's kubelet kills it
                    continue
                self.read(worker)
                if worker.exit_code is not None:
                    continue
                self.advance(worker)
                self.advance(worker)
                self.report(worker)
        assert self.state.phase is Phase.SUCCEEDED, (self.state.phase, self.state.message)
        assert sorted(self.commits) == list(range(SHARDS))
        assert self.state.records == RECORDS * SHARDS


Protocol.TestCase.settings = settings(
    max_examples=300, stateful_step_count=80, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestProtocolProperties = Protocol.TestCase
