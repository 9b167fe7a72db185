"""Helpers for tests that run DataJobs: manifests, input files, waiting on status, reading output."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from datajob_core.cluster import state_codec
from datajob_worker.cli import main as datajob

from .localjobs import shard_records
from .nodeagent import SIGNAL_ANNOTATION
from .nodes import AGENT_NODE
from .processes import wait_for

GROUP, VERSION, PLURAL = "datajob.dev", "v1alpha1", "datajobs"


def write_inputs(directory: Path, files: int, lines: int) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(files):
        text = "".join(f"file {index} line {n} alpha beta\n" for n in range(lines))
        (directory / f"part-{index:03d}.txt").write_text(text)
    return files * lines


def job_manifest(name: str, inputs: Path, output: Path, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "image": "datajob-worker:dev",
        "command": [sys.executable, "-m", "datajob_worker"],
        "input": {"uris": [f"{inputs}/*.txt"], "format": "text"},
        "output": {"uri": str(output)},
        "workers": 2,
        "resources": {"cpu": "100m", "memory": "64Mi"},
        # Real processes run only on the node agent's node.
        "nodeSelector": {"kubernetes.io/hostname": AGENT_NODE},
        "checkpoint": {"intervalSeconds": 1},
        "retryPolicy": {"backoff": {"initialSeconds": 1, "maxSeconds": 5}},
    }
    body.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DataJob", "metadata": {"name": name}, "spec": body}


class Jobs:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace

    def create(self, manifest: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, manifest)

    def get(self, name: str) -> dict[str, Any]:
        job: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return job

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
        except client.ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def patch(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}
        )

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def wait(
        self, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        wait_for(lambda: predicate(self.status(name)), timeout, f"{name}: {what}")
        return self.status(name)

    def wait_phase(self, name: str, phase: str, timeout: float = 120) -> dict[str, Any]:
        return self.wait(name, lambda s: s.get("phase") == phase, timeout, f"phase {phase}")

    def events(self, name: str, *, wait_for_reason: str | None = None, timeout: float = 30) -> list[Any]:
        """The job's Events; with ``wait_for_reason``, first waits until one with that reason exists.

        Events are posted after the status write of the same pass, so a test that just saw a phase may
        be a moment early for the matching event.
        """

        def listed() -> list[Any]:
            selector = f"involvedObject.name={name}"
            return list(self.core.list_namespaced_event(self.namespace, field_selector=selector).items)

        if wait_for_reason:
            wait_for(lambda: any(e.reason == wait_for_reason for e in listed()), timeout, wait_for_reason)
        return listed()

    def kill_a_worker_mid_shard(self, name: str, timeout: float = 90) -> str:
        """Waits until a shard of job ``name`` has a checkpoint with progress, then SIGKILLs the worker
        holding it (through the node agent); returns the pod's name."""
        self.wait(name, a_shard_checkpointed, timeout, "a shard checkpointed")
        running = shards_ledger(self.get(name)["status"]).get("running") or {}
        checkpointed = {e["w"] for e in running.values() if (e.get("c") or {}).get("records")}
        victim = next(p for p in self.pods(name) if p.metadata.name in checkpointed)
        self.core.patch_namespaced_pod(
            victim.metadata.name, self.namespace, {"metadata": {"annotations": {SIGNAL_ANNOTATION: "KILL"}}}
        )
        return str(victim.metadata.name)

    def pods(self, name: str) -> list[Any]:
        return list(
            self.core.list_namespaced_pod(self.namespace, label_selector=f"datajob.dev/job={name}").items
        )


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    """The status condition of that type, or {} if there is none."""
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def shards_ledger(status: dict[str, Any]) -> dict[str, Any]:
    """The shard ledger in the job's status, decoded (datajob_core.cluster.state_codec): running, retry..."""
    stored = status.get("ledger")
    if not stored:
        return {}
    shards: dict[str, Any] = state_codec.decode(stored).to_dict()["shards"]
    return shards


def a_shard_checkpointed(status: dict[str, Any]) -> bool:
    """Whether some in-flight shard has a checkpoint with progress in the ledger (a kill now resumes)."""
    running = shards_ledger(status).get("running") or {}
    return any(isinstance(e, dict) and (e.get("c") or {}).get("records") for e in running.values())


def local_result(manifest: dict[str, Any], work: Path) -> bytes:
    """The result of ``manifest`` run in local mode (output ``work/local-out``), without its delays."""
    local = json.loads(json.dumps(manifest))
    local["spec"]["output"] = {**local["spec"]["output"], "uri": str(work / "local-out")}
    (local["spec"].get("processor") or {}).get("options", {}).pop("delayPerRecord", None)
    (work / "local.yaml").write_text(yaml.safe_dump(local))
    assert datajob(["run", str(work / "local.yaml")]) == 0
    return (work / "local-out" / "result").read_bytes()


def committed(output: Path) -> dict[int, dict[str, Any]]:
    """Each committed shard's record: from the _SUCCESS manifest once the job committed, else from the
    commit records the shards wrote so far."""
    return {int(r["shard"]): r for r in shard_records(output)}


# What a succeeded job leaves beside its parts besides result and _SUCCESS: its claim and its run report.
JOB_FILES_KEPT = ("_datajob/owner.json", "_datajob/report.html")


def published(names: list[str]) -> list[str]:
    """The names of an output's objects, but the attempt log (one record per shard attempt, kept as the
    report's data: docs/storage.md): what the job published and kept."""
    return sorted(n for n in names if not n.startswith("_datajob/attempts/"))


def data_digest(output: Path) -> str:
    """One hash over every committed data part, in shard order (markers excluded)."""
    parts = sorted(p for p in output.glob("part-*") if p.suffix != ".json")
    return hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest()
