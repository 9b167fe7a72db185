"""Cluster dispatch at scale: the real operator on the test control plane, with kwok nodes and a fake worker
fleet that speaks the real Lease protocol, against a batch/v1 Indexed Job on the same nodes.

kwok pods run no code, so this process stands in for every worker (``Fleet``): it watches the job's
Leases and pods, and for each Running pod named in an assignment it reports exactly what a worker would
(``datajob_core.protocol.ReportMessage`` in the report annotation, ``spec.renewTime`` as heartbeat, every
5 s). In ``hold`` mode a worker keeps its first shard forever (a job at rest); in ``fast`` mode it
completes every assigned shard at once (dispatch as fast as the operator can go).

Prints, each measured in this run:
1. time to bring N workers of one DataJob to Running (and to all holding a shard), beside an Indexed Job
   of N pods;
2. with the N workers at rest: operator CPU seconds per minute and RSS, and API requests per minute by verb
   and resource (``apiserver_request_total``), per worker;
3. failover: a worker pod deleted → its replacement pod created, p50/p99 over F failures with W workers,
   beside the Indexed Job controller replacing a deleted pod of a W-pod Indexed Job;
4. 50 DataJobs of 20 workers at rest: operator CPU and RSS;
5. DataJob object size and operator RSS while 100,000 shards run on 1,000 workers (fast mode).

Run: .venv/bin/python benchmarks/cluster_dispatch.py [--workers 1000] [--failover-workers 200]
     [--failures 50] [--shards 100000] [--quick]   (make bench-cluster)
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import operator
import os
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from datajob_core.protocol import (
    ASSIGNMENT_ANNOTATION,
    ENV_REPORT_ANNOTATION,
    REPORT_ANNOTATION,
    AssignmentMessage,
    CurrentShard,
    ReportMessage,
    ShardOutcome,
)
from datajob_testenv.cluster import TestCluster
from datajob_testenv.datajobs import GROUP, PLURAL, VERSION, job_manifest
from datajob_testenv.kube import Kubectl, request_counts
from datajob_testenv.nodes import KWOK_ANNOTATION
from datajob_testenv.operator_process import OperatorProcess, storage_access
from datajob_testenv.processes import wait_for

REPO = Path(__file__).resolve().parents[1]
JOB_LABEL = "datajob.dev/job"
SLOT_LABEL = "datajob.dev/slot"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
BENCH_LABEL = "datajob.dev/bench-node"
HEARTBEAT_SECONDS = 5.0
NAMESPACE = "bench"


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- the fake worker fleet ------------------------------------------------------------------------------
@dataclass
class FakeWorker:
    pod: str
    lease: str
    seq: int = 0
    done: list[ShardOutcome] = field(default_factory=list)
    current: CurrentShard | None = None
    finished: set[tuple[int, int]] = field(default_factory=set)
    last_sent: str = ""
    last_beat: float = 0.0


class Fleet:
    """Every kwok worker pod of the namespace, as a worker process would behave (see the module doc)."""

    def __init__(self, api: client.ApiClient, mode: str) -> None:
        self.core = client.CoreV1Api(api)
        self.leases = client.CoordinationV1Api(api)
        self.mode = mode  # "hold" or "fast"
        self.running: set[str] = set()  # Running pods
        self.assignments: dict[str, AssignmentMessage] = {}  # by lease
        self.workers: dict[str, FakeWorker] = {}  # by pod
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(16, thread_name_prefix="fleet")
        self.stopping = threading.Event()
        self.holding: set[str] = set()  # pods that reported a current shard
        self.keys: dict[str, str] = {}  # the report annotation the operator gave each pod (its env)
        self.completed = 0
        self.threads = [
            threading.Thread(target=self._watch, args=("pods",), daemon=True),
            threading.Thread(target=self._watch, args=("leases",), daemon=True),
            threading.Thread(target=self._heartbeats, daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _watch(self, kind: str) -> None:
        call = self.core.list_namespaced_pod if kind == "pods" else self.leases.list_namespaced_lease
        while not self.stopping.is_set():
            try:
                listing = json.loads(call(NAMESPACE, label_selector=JOB_LABEL, _preload_content=False).data)
                for item in listing["items"]:
                    self._event(kind, "ADDED", item)
                version = listing["metadata"]["resourceVersion"]
                while not self.stopping.is_set():
                    stream = call(
                        NAMESPACE,
                        label_selector=JOB_LABEL,
                        watch=True,
                        resource_version=version,
                        timeout_seconds=60,
                        _preload_content=False,
                    )
                    for line in stream:
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            raise RuntimeError(event["object"].get("message"))
                        version = event["object"]["metadata"]["resourceVersion"]
                        self._event(kind, event["type"], event["object"])
            except Exception as error:  # noqa: BLE001 - relist, as an informer would
                if not self.stopping.is_set():
                    print(f"  (fleet {kind} watch: {error}; relisting)", file=sys.stderr)
                    time.sleep(0.5)

    def _event(self, kind: str, event: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if kind == "pods":
            running = event != "DELETED" and (obj.get("status") or {}).get("phase") == "Running"
            running = running and not obj["metadata"].get("deletionTimestamp")
            env = ((obj.get("spec") or {}).get("containers") or [{}])[0].get("env") or []
            key = next((e.get("value") for e in env if e.get("name") == ENV_REPORT_ANNOTATION), None)
            with self.lock:
                if key:
                    self.keys[name] = key
                (self.running.add if running else self.running.discard)(name)
                if not running:
                    self.workers.pop(name, None)
                    self.holding.discard(name)
            if running:
                with self.lock:
                    lease = next((key for key, a in self.assignments.items() if a.pod == name), None)
                if lease:
                    self.pool.submit(self._act, lease)
            return
        raw = (
            ((obj["metadata"].get("annotations") or {}).get(ASSIGNMENT_ANNOTATION))
            if event != "DELETED"
            else None
        )
        if raw:
            message = AssignmentMessage.model_validate_json(raw)
            with self.lock:
                changed = self.assignments.get(name) != message
                self.assignments[name] = message
            if changed:
                self.pool.submit(self._act, name)

    def _act(self, lease: str) -> None:
        with self.lock:
            message = self.assignments.get(lease)
            if message is None or not message.pod or message.pod not in self.running:
                return
            worker = self.workers.setdefault(message.pod, FakeWorker(message.pod, lease))
            worker.done = [o for o in worker.done if o.seq > message.ack]
            todo = [t for t in message.shards if (t.shard, t.attempt) not in worker.finished]
            if message.stop:
                todo = []
            if self.mode == "fast":
                for task in todo:
                    worker.seq += 1
                    worker.finished.add((task.shard, task.attempt))
                    worker.done.append(
                        ShardOutcome(shard=task.shard, attempt=task.attempt, seq=worker.seq, records=10)
                    )
                    self.completed += 1
                worker.current = None
            elif todo:
                worker.current = CurrentShard(shard=todo[0].shard, attempt=todo[0].attempt)
                self.holding.add(worker.pod)
            report = ReportMessage(
                pod=worker.pod, seq=worker.seq, done=list(worker.done), current=worker.current
            )
            text = report.model_dump_json()
            if text == worker.last_sent:
                return
            worker.last_sent = text
        self._send(worker, text)

    def _send(self, worker: FakeWorker, text: str) -> None:
        key = self.keys.get(worker.pod, REPORT_ANNOTATION)
        body = {"metadata": {"annotations": {key: text}}, "spec": {"renewTime": now_iso()}}
        try:
            self.leases.patch_namespaced_lease(worker.lease, NAMESPACE, body)
            worker.last_beat = time.monotonic()
        except ApiException as error:
            if error.status != 404:
                print(f"  (fleet report failed: {error.status})", file=sys.stderr)

    def _heartbeats(self) -> None:
        """A worker's heartbeat thread: the same report with a new renewTime, every 5 s."""
        while not self.stopping.wait(0.5):
            now = time.monotonic()
            with self.lock:
                due = [
                    (w, w.last_sent)
                    for w in self.workers.values()
                    if w.last_sent and now - w.last_beat >= HEARTBEAT_SECONDS
                ]
                for worker, _ in due:
                    worker.last_beat = now  # claimed; the PATCH follows
            for worker, text in due:
                self.pool.submit(self._send, worker, text)


# -- observation helpers --------------------------------------------------------------------------------
class PodClock:
    """When each pod of the namespace (matching ``selector``) was first seen, and first seen Running."""

    def __init__(self, core: client.CoreV1Api, selector: str) -> None:
        self.core, self.selector = core, selector
        self.added: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.labels: dict[str, dict[str, str]] = {}
        self.gone: set[str] = set()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                listing = json.loads(
                    self.core.list_namespaced_pod(
                        NAMESPACE, label_selector=self.selector, _preload_content=False
                    ).data
                )
                listed = {item["metadata"]["name"] for item in listing["items"]}
                self.gone |= set(self.added) - listed  # deleted while the watch was down
                version = listing["metadata"]["resourceVersion"]
                while not self.stopping.is_set():
                    version = self._follow(version)
            except Exception:  # noqa: BLE001 - the stream ended badly: start again from a list
                time.sleep(0.2)

    def _follow(self, version: str) -> str:
        stream = self.core.list_namespaced_pod(
            NAMESPACE,
            label_selector=self.selector,
            watch=True,
            resource_version=version,
            timeout_seconds=60,
            _preload_content=False,
        )
        for line in stream:
            now = time.time()
            event = json.loads(line)
            obj = event["object"]
            if event["type"] == "ERROR":
                raise RuntimeError(obj.get("message"))
            name = obj["metadata"]["name"]
            version = obj["metadata"]["resourceVersion"]
            self.added.setdefault(name, now)
            self.labels[name] = obj["metadata"].get("labels") or {}
            if event["type"] == "DELETED":
                self.gone.add(name)
            elif (obj.get("status") or {}).get("phase") == "Running":
                self.running.setdefault(name, now)
        return version

    def stop(self) -> None:
        self.stopping.set()

    def live_running(self) -> list[str]:
        return [p for p in self.running if p not in self.gone]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def process_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = next(
        int(line.split()[1]) * 1024
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return cpu, rss


# -- the benchmark --------------------------------------------------------------------------------------
class Bench:
    def __init__(self, work: Path, rest_seconds: float) -> None:
        self.work = work
        self.rest_seconds = rest_seconds
        self.graceful = False  # failover: delete pods with their grace period
        self.cluster = TestCluster(work / "cluster")
        self.cluster.start()
        try:
            self._set_up(work)
        except BaseException:
            self.cluster.stop()
            raise

    def _set_up(self, work: Path) -> None:
        (work / "logs").mkdir()
        self.operator = OperatorProcess(self.cluster.kubeconfig, work / "logs", *storage_access(work))
        self.api = self.cluster.api_client()
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.batch = client.BatchV1Api(self.api)
        kubectl = Kubectl(self.cluster.kubeconfig)
        kubectl("apply", "--server-side", "-f", str(REPO / "crds" / "datajob.dev_datajobs.yaml"))
        kubectl.wait_established("datajobs.datajob.dev")
        self.operator.start()
        self.core.create_namespace({"metadata": {"name": NAMESPACE}})
        wait_for(self._default_account, 60, "default service account")
        self.data = work / "input.txt"
        self.data.write_text("".join(f"record {n:08d}\n" for n in range(200_000)))
        self.fleet = Fleet(self.api, "hold")
        self.fleet.start()
        self.clock = PodClock(self.core, JOB_LABEL)
        self.job_clock = PodClock(self.core, "job-name")

    def _default_account(self) -> bool:
        try:
            self.core.read_namespaced_service_account("default", NAMESPACE)
            return True
        except ApiException:
            return False

    def close(self) -> None:
        self.fleet.stop()
        self.clock.stop()
        self.job_clock.stop()
        self.operator.stop()
        self.cluster.stop()

    def add_nodes(self, count: int) -> None:
        capacity = {"cpu": "64", "memory": "256Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        for index in range(count):
            self.core.create_node(
                {
                    "metadata": {
                        "name": f"bench-{index}",
                        "labels": {BENCH_LABEL: "true", "kubernetes.io/hostname": f"bench-{index}"},
                        "annotations": {KWOK_ANNOTATION: "fake"},
                    },
                    "status": {"capacity": capacity, "allocatable": capacity},
                }
            )

        def ready() -> bool:
            nodes = self.core.list_node(label_selector=BENCH_LABEL).items
            return len(nodes) == count and all(
                any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
                for n in nodes
            )

        wait_for(ready, 120, "bench nodes Ready")

    def create_job(self, name: str, workers: int, shards: int) -> float:
        spec = {
            "image": "bench/worker:none",
            "input": {"uris": [str(self.data)], "partitioning": {"mode": "count", "shards": shards}},
            "output": {"uri": str(self.work / "out" / name)},
            "processor": {"builtin": "wordcount"},
            "workers": workers,
            "nodeSelector": {BENCH_LABEL: "true"},
            "resources": {"cpu": "10m", "memory": "16Mi"},
            "retryPolicy": {"maxWorkerRestarts": 10000, "maxShardAttempts": 100},
            "checkpoint": {"intervalSeconds": 30},
        }
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "DataJob",
            "metadata": {"name": name},
            "spec": spec,
        }
        started = time.time()
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)
        return started

    def create_indexed_job(self, name: str, pods: int) -> float:
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "completionMode": "Indexed",
                "completions": pods,
                "parallelism": pods,
                "backoffLimit": 100000,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "nodeSelector": {BENCH_LABEL: "true"},
                        "containers": [
                            {
                                "name": "worker",
                                "image": "bench/worker:none",
                                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                            }
                        ],
                    }
                },
            },
        }
        started = time.time()
        self.batch.create_namespaced_job(NAMESPACE, body)
        return started

    def pods_of(self, clock: PodClock, key: str, value: str) -> list[str]:
        return [p for p in clock.live_running() if clock.labels.get(p, {}).get(key) == value]

    def delete_all(self) -> None:
        for job in self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, job["metadata"]["name"], propagation_policy="Background"
            )
        for job in self.batch.list_namespaced_job(NAMESPACE).items:
            self.batch.delete_namespaced_job(job.metadata.name, NAMESPACE, propagation_policy="Background")

        def empty() -> bool:
            pods = self.core.list_namespaced_pod(NAMESPACE, _preload_content=False)
            return not json.loads(pods.data)["items"]

        wait_for(empty, 300, "all pods gone", interval=1.0)
        wait_for(
            lambda: not self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"],
            120,
            "DataJobs gone",
            interval=1.0,
        )

    def wait_running(self, clock: PodClock, key: str, value: str, count: int, timeout: float) -> float:
        wait_for(
            lambda: len(self.pods_of(clock, key, value)) >= count,
            timeout,
            f"{count} pods of {value} Running",
            interval=0.05,
        )
        return time.time()

    # -- phases --------------------------------------------------------------------------------------
    def bring_up(self, workers: int) -> None:
        print(f"\n1. {workers} workers to Running", flush=True)
        started = self.create_job("scale", workers, workers * 2)
        running = self.wait_running(self.clock, JOB_LABEL, "scale", workers, 900)
        wait_for(
            lambda: len([p for p in self.fleet.holding if p.startswith("scale-")]) >= workers,
            300,
            "all holding a shard",
            interval=0.1,
        )
        holding = time.time()
        print(
            f"   DataJob: all {workers} Running after {running - started:.1f} s; "
            f"all holding a shard after {holding - started:.1f} s",
            flush=True,
        )
        self.at_rest(f"DataJob with {workers} workers at rest", workers)
        self.delete_all()
        started = self.create_indexed_job("indexed-scale", workers)
        running = self.wait_running(self.job_clock, "job-name", "indexed-scale", workers, 900)
        print(f"   Indexed Job: all {workers} Running after {running - started:.1f} s", flush=True)
        self.delete_all()

    def at_rest(self, label: str, workers: int) -> None:
        pid = self.operator.process.pid if self.operator.process else 0
        before, cpu0 = request_counts(self.api), process_usage(pid)[0]
        time.sleep(self.rest_seconds)
        after, (cpu1, rss) = request_counts(self.api), process_usage(pid)
        minutes = self.rest_seconds / 60
        print(f"2. {label}, over {self.rest_seconds:.0f} s:")
        print(f"   operator: {(cpu1 - cpu0) / minutes:.1f} CPU s/min, RSS {rss / 2**20:.0f} MiB")
        rows = sorted(((after[k] - before[k], k) for k in after), reverse=True)
        print(f"   {'verb':8} {'resource':28} {'per min':>8} {'per worker per min':>19}")
        for count, (verb, resource) in rows:
            if count <= 0 or (verb in ("WATCH",) and count < 2):
                continue
            print(f"   {verb:8} {resource:28} {count / minutes:8.0f} {count / minutes / workers:19.2f}")
        total = sum(max(0, after[k] - before[k]) for k in after)
        print(f"   all requests: {total / minutes / workers:.2f} per worker per minute", flush=True)

    def failover(self, workers: int, failures: int, job_failures: int, graceful: bool = False) -> None:
        how = "deleted with its grace period" if graceful else "force-deleted"
        print(f"\n3. failover: a worker pod {how} -> replacement pod created ({workers} workers)", flush=True)
        self.graceful = graceful
        self.create_job("failover", workers, workers * 2)
        self.wait_running(self.clock, JOB_LABEL, "failover", workers, 600)
        wait_for(
            lambda: len([p for p in self.fleet.holding if p.startswith("failover-")]) >= workers,
            300,
            "holding",
            interval=0.1,
        )
        ours = self._failures(self.clock, JOB_LABEL, "failover", SLOT_LABEL, failures)
        self.delete_all()
        self.create_indexed_job("indexed-failover", workers)
        self.wait_running(self.job_clock, "job-name", "indexed-failover", workers, 600)
        theirs = self._failures(self.job_clock, "job-name", "indexed-failover", INDEX_LABEL, job_failures)
        self.delete_all()
        print(f"   {'':24} {'n':>4} {'p50':>9} {'p99':>9} {'max':>9}")
        for label, values in (("DataJob", ours), ("Indexed Job", theirs)):
            if values:
                p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
                print(f"   {label:24} {len(values):4} {p50:7.0f}ms {p99:7.0f}ms {max(values) * 1000:7.0f}ms")
        if ours and theirs:
            print(
                f"   Indexed Job p50 / DataJob p50: {percentile(theirs, 0.5) / percentile(ours, 0.5):.0f}x",
                flush=True,
            )

    def _failures(self, clock: PodClock, key: str, value: str, slot_label: str, count: int) -> list[float]:
        rng = random.Random(1)
        seconds = []
        for _ in range(count):
            victim = rng.choice(self.pods_of(clock, key, value))
            slot = clock.labels[victim].get(slot_label)
            t0 = time.time()
            if self.graceful:  # it terminates first (kwok plays the kubelet), as an eviction or a drain does
                self.core.delete_namespaced_pod(victim, NAMESPACE)
            else:
                self.core.delete_namespaced_pod(victim, NAMESPACE, grace_period_seconds=0)
            pod = self._replacement(clock, (key, value), (slot_label, slot), victim, t0)
            if pod is None:
                print(f"   (no replacement for {victim} within 180 s)")
                continue
            seconds.append(clock.added[pod] - t0)
            running = functools.partial(operator.contains, clock.running, pod)
            wait_for(running, 60, "replacement Running", interval=0.01)
            time.sleep(0.1)
        return seconds

    @staticmethod
    def _replacement(
        clock: PodClock, job: tuple[str, str], slot: tuple[str, str | None], victim: str, since: float
    ) -> str | None:
        """The first pod of the same job and slot (or index) created after ``since``, waited for."""
        deadline = time.time() + 180
        while time.time() < deadline:
            for pod, added in list(clock.added.items()):
                labels = clock.labels.get(pod, {})
                same = labels.get(job[0]) == job[1] and labels.get(slot[0]) == slot[1]
                if pod != victim and added > since and same:
                    return pod
            time.sleep(0.002)
        return None

    def failover_real(self, workers: int, failures: int) -> None:
        """Real worker processes (the node agent's node): a pod deleted with its grace period gets SIGTERM,
        checkpoints and exits, and only then is it gone. Deletion -> replacement created, and -> old gone."""
        print(
            f"\n3b. failover with real workers: a pod deleted with its grace period ({workers} workers)",
            flush=True,
        )
        inputs = self.work / "real-input"
        inputs.mkdir(exist_ok=True)
        for n in range(workers * 3):
            (inputs / f"f{n:03d}.txt").write_text("".join(f"word{i % 50} line {i}\n" for i in range(3000)))
        manifest = job_manifest(
            "real",
            inputs,
            self.work / "real-output",
            workers=workers,
            processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.005"}},
        )
        manifest["metadata"]["namespace"] = NAMESPACE
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, manifest)
        self.wait_running(self.clock, JOB_LABEL, "real", workers, 300)
        rng = random.Random(1)
        created, gone = [], []
        for _ in range(failures):
            time.sleep(1.0)  # into its shards
            victim = rng.choice(self.pods_of(self.clock, JOB_LABEL, "real"))
            slot = self.clock.labels[victim].get(SLOT_LABEL)
            t0 = time.time()
            self.core.delete_namespaced_pod(victim, NAMESPACE)
            pod = self._replacement(self.clock, (JOB_LABEL, "real"), (SLOT_LABEL, slot), victim, t0)
            if pod is None:
                print(f"   (no replacement for {victim} within 180 s)")
                continue
            created.append(self.clock.added[pod] - t0)
            wait_for(
                functools.partial(operator.contains, self.clock.gone, victim),
                120,
                "old pod gone",
                interval=0.005,
            )
            gone.append(time.time() - t0)
            wait_for(functools.partial(operator.contains, self.clock.running, pod), 60, "replacement Running")
        self.delete_all()
        print(f"   {'':34} {'n':>4} {'p50':>9} {'p99':>9} {'max':>9}")
        for label, values in (
            ("deletion -> replacement created", created),
            ("deletion -> old pod gone", gone),
        ):
            if values:
                p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
                print(f"   {label:34} {len(values):4} {p50:7.0f}ms {p99:7.0f}ms {max(values) * 1000:7.0f}ms")

    def many_jobs(self, jobs: int, workers: int) -> None:
        print(f"\n4. {jobs} DataJobs of {workers} workers", flush=True)
        started = time.time()
        for index in range(jobs):
            self.create_job(f"many-{index:02d}", workers, workers * 2)
        wait_for(
            lambda: len([p for p in self.fleet.holding if p.startswith("many-")]) >= jobs * workers,
            900,
            "all holding",
            interval=0.2,
        )
        print(f"   all {jobs * workers} workers holding a shard after {time.time() - started:.1f} s")
        self.at_rest(f"{jobs} DataJobs x {workers} workers at rest", jobs * workers)
        self.delete_all()

    def object_size(self, shards: int, workers: int, seconds: float) -> None:
        print(
            f"\n5. {shards:,} shards on {workers} workers, shards completed at once (fast mode)", flush=True
        )
        self.fleet.mode = "fast"
        started = self.create_job("big", workers, shards)
        pid = self.operator.process.pid if self.operator.process else 0
        largest = rss_max = 0
        done = 0
        deadline = time.time() + seconds
        biggest: dict[str, Any] = {}
        while time.time() < deadline:
            # As stored (managedFields included): etcd's limit is on the whole object.
            job = json.loads(
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, NAMESPACE, PLURAL, "big", _preload_content=False
                ).data
            )
            if len(json.dumps(job)) > largest:
                largest, biggest = len(json.dumps(job)), job
            rss_max = max(rss_max, process_usage(pid)[1])
            shards_status = (job.get("status") or {}).get("shards") or {}
            done = int(shards_status.get("succeeded") or 0)
            if (job.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                break
            time.sleep(2)
        elapsed = time.time() - started
        parts = {
            "metadata.managedFields": biggest.get("metadata", {}).get("managedFields"),
            **{f"status.ledger.{k}": v for k, v in (biggest.get("status") or {}).get("ledger", {}).items()},
        }
        sizes = sorted(((len(json.dumps(v)), k) for k, v in parts.items()), reverse=True)[:5]
        print("   largest parts: " + ", ".join(f"{k} {n / 1024:.0f} KiB" for n, k in sizes))
        print(
            f"   largest DataJob object: {largest / 1024:.1f} KiB; "
            f"operator peak RSS {rss_max / 2**20:.0f} MiB"
        )
        print(f"   {done:,} shards succeeded in {elapsed:.0f} s ({done / elapsed:.0f} shards/s)", flush=True)
        self.fleet.mode = "hold"
        self.delete_all()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--failover-workers", type=int, default=200)
    parser.add_argument("--failures", type=int, default=50)
    parser.add_argument(
        "--job-failures",
        type=int,
        default=4,
        help="for the Indexed Job: its controller's replacement delay doubles per failure (10 s, 20 s, ...)",
    )
    parser.add_argument(
        "--graceful", action="store_true", help="failover: delete pods with their grace period, not force"
    )
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--shards", type=int, default=100_000)
    parser.add_argument("--rest-seconds", type=float, default=60)
    parser.add_argument("--quick", action="store_true", help="small sizes, to try the harness")
    parser.add_argument(
        "--only", default="", help="comma-separated phases: scale,failover,failover-real,many,size"
    )
    args = parser.parse_args()
    if args.quick:
        args.workers, args.failover_workers, args.failures, args.job_failures = 50, 20, 5, 3
        args.jobs, args.shards, args.rest_seconds = 5, 5000, 15
    phases = (
        set(args.only.split(",")) if args.only else {"scale", "failover", "failover-real", "many", "size"}
    )
    work = Path(tempfile.mkdtemp(prefix="datajob-bench-cluster-"))
    bench = Bench(work, args.rest_seconds)
    try:
        bench.add_nodes(max(args.workers, args.jobs * 20, args.failover_workers) // 100 + 2)
        if "scale" in phases:
            bench.bring_up(args.workers)
        if "failover" in phases:
            bench.failover(args.failover_workers, args.failures, args.job_failures, args.graceful)
        if "failover-real" in phases:
            bench.failover_real(8, 10)
        if "many" in phases:
            bench.many_jobs(args.jobs, 20)
        if "size" in phases:
            bench.object_size(args.shards, args.workers, 120)
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
