"""A seeded chaos run of a DataJob on the real control plane (``benchmarks/chaos.py``, ``test_chaos.py``).

While the job runs: worker processes are SIGKILLed (each shard a worker starts is, with probability
``kill_fraction``, the one it dies in, at a random moment of it), the operator is SIGKILLed and restarted
``operator_restarts`` times, and kube-apiserver ``apiserver_restarts`` times. The job must still end
Succeeded with zero failed shards, and its output must be byte-identical to a failure-free local-mode run of
the same manifest. Work amplification is records read (counted by a probe processor in every worker
process, killed ones included) over records in the input.
"""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from datajob_core.protocol import REPORT_ANNOTATIONS, ReportMessage
from datajob_worker.cli import main as datajob

from .cluster import TestCluster
from .datajobs import GROUP, PLURAL, VERSION, data_digest
from .kube import Kubectl
from .localjobs import shard_records
from .nodeagent import SIGNAL_ANNOTATION
from .nodes import AGENT_NODE
from .operator_process import OperatorProcess, storage_access
from .processes import wait_for
from .tools import REPO_ROOT

PROBE_DIR = Path(__file__).with_name("probe")
LINES_PER_SHARD = 64


@dataclass
class ChaosConfig:
    shards: int = 1000
    workers: int = 4
    seed: int = 1
    kill_fraction: float = 0.2
    operator_restarts: int = 3
    apiserver_restarts: int = 1
    delay_per_record: float = 0.004  # makes a shard take ~0.25 s, so kills land mid-shard
    timeout: float = 3600.0
    # Fixed (seconds after creation, "operator" | "apiserver") kills instead of seeded ones: replays a run.
    disruptions: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class ChaosResult:
    phase: str
    seconds: float
    shards: int
    failed_shards: int
    records_in_input: int
    records_read: int
    worker_kills: int
    operator_restarts: int
    apiserver_restarts: int
    worker_restarts: int
    identical_to_local: bool
    events: dict[str, int] = field(default_factory=dict)

    @property
    def amplification(self) -> float:
        return self.records_read / max(self.records_in_input, 1)

    @property
    def ok(self) -> bool:
        return self.phase == "Succeeded" and self.failed_shards == 0 and self.identical_to_local

    def lines(self) -> list[str]:
        return [
            f"phase {self.phase} in {self.seconds:.0f}s: {self.shards} shards, {self.failed_shards} failed",
            f"output identical to a failure-free local-mode run: {self.identical_to_local}",
            f"chaos: {self.worker_kills} worker processes killed, operator killed {self.operator_restarts}x, "
            f"kube-apiserver killed {self.apiserver_restarts}x; {self.worker_restarts} worker pods replaced",
            f"work amplification: {self.records_read:,} records read / {self.records_in_input:,} in the "
            f"input = {self.amplification:.3f}",
            "events: " + ", ".join(f"{k} {v}" for k, v in sorted(self.events.items())),
        ]


def write_input(directory: Path, shards: int) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    for shard in range(shards):
        lines = "".join(f"s{shard} r{n} w{(shard * 7 + n) % 31}\n" for n in range(LINES_PER_SHARD))
        (directory / f"in-{shard:05d}.txt").write_text(lines)
    return shards * LINES_PER_SHARD


def manifest(config: ChaosConfig, inputs: Path, output: Path, reads: Path, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "image": "datajob-worker:dev",
        "command": [sys.executable, "-m", "datajob_worker"],
        "input": {"uris": [f"{inputs}/*.txt"]},
        "output": {"uri": str(output)},
        # The probe counts every record any worker process reads, and passes it through unchanged.
        "processor": {
            "function": "chaos_probe:passthrough",
            "options": {"delayPerRecord": str(config.delay_per_record)},
        },
        "env": [
            {"name": "PYTHONPATH", "value": str(PROBE_DIR)},
            {"name": "CHAOS_READS_DIR", "value": str(reads)},
        ],
        "workers": config.workers,
        "resources": {"cpu": "100m", "memory": "64Mi"},
        "nodeSelector": {"kubernetes.io/hostname": AGENT_NODE},
        "checkpoint": {"intervalSeconds": 1, "intervalRecords": 16},
        # 20% of shard attempts die: ten in a row for one shard is a 1e-7 event.
        "retryPolicy": {
            "maxShardAttempts": 10,
            "maxWorkerRestarts": 10_000,
            "backoff": {"initialSeconds": 1, "maxSeconds": 2},
        },
    }
    body.update(spec)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DataJob",
        "metadata": {"name": "chaos"},
        "spec": body,
    }


def records_read(reads: Path) -> int:
    return sum(p.stat().st_size for p in reads.glob("*"))


class WorkerKiller(threading.Thread):
    """Watches the workers' reports; each shard a worker starts is, with probability p, where it dies."""

    def __init__(
        self, api: client.ApiClient, namespace: str, rng: random.Random, config: ChaosConfig
    ) -> None:
        super().__init__(daemon=True, name="worker-killer")
        self.leases = client.CoordinationV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace, self.rng, self.config = namespace, rng, config
        self.seen: set[tuple[str, int, int]] = set()
        self.pending: list[tuple[float, str]] = []
        self.kills = 0
        self.stop = threading.Event()

    def run(self) -> None:
        shard_seconds = LINES_PER_SHARD * self.config.delay_per_record
        while not self.stop.wait(0.1):
            try:
                leases = self.leases.list_namespaced_lease(
                    self.namespace, label_selector="datajob.dev/job=chaos"
                )
            except Exception:  # noqa: BLE001 - the API server is being restarted too
                continue
            now = time.monotonic()
            for lease, annotation in ((item, k) for item in leases.items for k in REPORT_ANNOTATIONS):
                raw = (lease.metadata.annotations or {}).get(annotation)
                report = ReportMessage.model_validate_json(raw) if raw else None
                if report is None or report.current is None:
                    continue
                key = (report.pod, report.current.shard, report.current.attempt)
                if key in self.seen:
                    continue
                self.seen.add(key)
                if self.rng.random() < self.config.kill_fraction:
                    self.pending.append((now + self.rng.uniform(0, shard_seconds), report.pod))
            due = [p for p in self.pending if p[0] <= now]
            self.pending = [p for p in self.pending if p[0] > now]
            for _, pod in due:
                try:
                    self.core.patch_namespaced_pod(
                        pod,
                        self.namespace,
                        {"metadata": {"annotations": {SIGNAL_ANNOTATION: f"KILL/{uuid.uuid4().hex[:6]}"}}},
                    )
                    self.kills += 1
                except Exception:  # noqa: BLE001 - gone already, or the API is down: that kill is skipped
                    pass


def diagnosis(
    status: dict[str, Any], operator: OperatorProcess, core: client.CoreV1Api, namespace: str, logs: Path
) -> str:
    """What a run that did not finish leaves to read: the job's status, its pods, whether the operator is
    alive, and the last lines of every component's log (CI keeps only what the test prints)."""
    lines = ["the job did not finish; its status (ledger left out):"]
    lines += [f"  {key}: {value}" for key, value in status.items() if key != "ledger"]
    alive = operator.process is not None and operator.process.poll() is None
    lines.append(f"operator process alive: {alive}")
    try:
        for pod in core.list_namespaced_pod(namespace).items:
            lines.append(f"pod {pod.metadata.name}: {pod.status.phase} {pod.status.reason or ''}")
    except Exception as error:  # noqa: BLE001 - the API server itself may be what is wrong
        lines.append(f"pods cannot be listed: {error}")
    for path in sorted(logs.glob("*.log")):
        tail = path.read_text(errors="replace").splitlines()[-25:]
        lines += [f"--- last lines of {path.name}", *tail]
    return "\n".join(lines)


def run_chaos(config: ChaosConfig, work: Path | None = None, log: Any = print) -> ChaosResult:
    """Runs the whole experiment in its own control plane; returns the figures."""
    work = Path(work or tempfile.mkdtemp(prefix="datajob-chaos-"))
    rng = random.Random(config.seed)
    inputs, output, reads = work / "in", work / "out", work / "reads"
    reads.mkdir(parents=True, exist_ok=True)
    total = write_input(inputs, config.shards)

    # The reference: the same manifest, failure-free, in local mode.
    reference, reference_reads = work / "local-out", work / "local-reads"
    reference_reads.mkdir()
    local = manifest(config, inputs, reference, reference_reads)
    (work / "local.yaml").write_text(yaml.safe_dump(local))
    log(f"local-mode reference run of {config.shards} shards ...")
    if datajob(["run", str(work / "local.yaml")]) != 0:
        raise RuntimeError("the failure-free local-mode reference run failed")

    cluster = TestCluster(work / "cluster")
    cluster.start()
    operator: OperatorProcess | None = None
    killer: WorkerKiller | None = None
    try:
        Kubectl(cluster.kubeconfig)(
            "apply", "--server-side", "-f", str(REPO_ROOT / "crds" / "datajob.dev_datajobs.yaml")
        )
        Kubectl(cluster.kubeconfig).wait_established("datajobs.datajob.dev")
        operator = OperatorProcess(cluster.kubeconfig, cluster.directory / "logs", *storage_access(work))
        operator.start()
        api = cluster.api_client()
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        namespace = "chaos"
        core.create_namespace({"metadata": {"name": namespace}})
        wait_for(
            lambda: core.read_namespaced_service_account("default", namespace) is not None, 60, "default SA"
        )
        started = time.monotonic()
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, manifest(config, inputs, output, reads)
        )
        # Spread the operator and API server kills over the expected run time (dispatch ~5 shards/s),
        # drawn before the killer thread shares the generator so that a seed always gives the same times.
        expected = max(30.0, config.shards / 5)
        disruptions = sorted(
            config.disruptions
            or [(rng.uniform(0.1, 0.8) * expected, "operator") for _ in range(config.operator_restarts)]
            + [(rng.uniform(0.2, 0.7) * expected, "apiserver") for _ in range(config.apiserver_restarts)]
        )
        log("disruptions: " + ", ".join(f"{what} at {at:.1f}s" for at, what in disruptions))
        killer = WorkerKiller(api, namespace, rng, config)
        killer.start()
        operator_kills = apiserver_kills = 0
        status: dict[str, Any] = {}
        while time.monotonic() - started < config.timeout:
            elapsed = time.monotonic() - started
            if disruptions and elapsed >= disruptions[0][0]:
                _, what = disruptions.pop(0)
                if what == "operator":
                    log(f"{elapsed:.0f}s: SIGKILL the operator")
                    operator.kill()
                    time.sleep(rng.uniform(1, 3))
                    operator.start()
                    operator_kills += 1
                else:
                    log(f"{elapsed:.0f}s: SIGKILL kube-apiserver")
                    cluster.control_plane.restart_apiserver(down_seconds=rng.uniform(1, 3))
                    apiserver_kills += 1
            try:
                job = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "chaos")
                status = job.get("status") or {}
            except Exception:  # noqa: BLE001 - the API server may be down right now
                time.sleep(0.5)
                continue
            if status.get("phase") in ("Succeeded", "Failed") and not disruptions:
                break
            time.sleep(0.5)
        seconds = time.monotonic() - started
        killer.stop.set()
        if status.get("phase") not in ("Succeeded", "Failed"):
            log(diagnosis(status, operator, core, namespace, cluster.directory / "logs"))
        events: dict[str, int] = {}
        for event in core.list_namespaced_event(namespace, field_selector="involvedObject.name=chaos").items:
            events[event.reason] = events.get(event.reason, 0) + (event.count or 1)
        return ChaosResult(
            phase=str(status.get("phase")),
            seconds=seconds,
            shards=config.shards,
            failed_shards=int((status.get("shards") or {}).get("failed", 0)),
            records_in_input=total,
            records_read=records_read(reads),
            worker_kills=killer.kills,
            operator_restarts=operator_kills,
            apiserver_restarts=apiserver_kills,
            worker_restarts=int(status.get("restarts", 0)),
            identical_to_local=(output / "result").exists()
            and data_digest(output) == data_digest(reference)
            and len(shard_records(output)) == config.shards
            and (output / "result").read_bytes() == (reference / "result").read_bytes(),
            events=events,
        )
    finally:
        if killer is not None:
            killer.stop.set()
        if operator is not None:
            operator.stop()
        cluster.stop()
        shutil.rmtree(inputs, ignore_errors=True)
