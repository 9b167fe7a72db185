"""DataJobs end to end: the real operator process, real worker processes run by the node agent."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from datajob_testenv.nodeagent import SIGNAL_ANNOTATION
from datajob_testenv.nodes import AGENT_NODE
from datajob_testenv.operator_process import OperatorProcess
from datajob_testenv.processes import wait_for

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

    def pods(self, name: str) -> list[Any]:
        return list(
            self.core.list_namespaced_pod(self.namespace, label_selector=f"datajob.dev/job={name}").items
        )


@pytest.fixture
def jobs(api_client: client.ApiClient, namespace: str, operator: OperatorProcess) -> Jobs:
    return Jobs(api_client, namespace)


def committed(output: Path) -> dict[int, dict[str, Any]]:
    return {int(p.stem.split("-")[1]): json.loads(p.read_text()) for p in sorted(output.glob("part-*.json"))}


def test_more_shards_than_workers_completes_with_every_shard_committed_once(
    jobs: Jobs, tmp_path: Path
) -> None:
    total_lines = write_inputs(tmp_path / "in", files=12, lines=40)
    jobs.create(job_manifest("many", tmp_path / "in", tmp_path / "out", workers=3))
    status = jobs.wait_phase("many", "Succeeded", timeout=180)
    assert status["shards"]["total"] == 12
    assert status["shards"]["succeeded"] == 12
    assert status["shards"]["summary"] == "12/12"
    assert status["completionTime"]
    results = committed(tmp_path / "out")
    assert sorted(results) == list(range(12))
    assert sum(r["lines"] for r in results.values()) == total_lines
    assert not list((tmp_path / "out" / "_temporary").glob("*")), "attempt scratch files left behind"
    # Finished jobs do not keep workers around.
    wait_for(lambda: not jobs.pods("many"), 60, "worker pods cleaned up")


def test_killed_worker_is_replaced_and_resumes_from_checkpoint(jobs: Jobs, tmp_path: Path) -> None:
    total_lines = write_inputs(tmp_path / "in", files=2, lines=400)
    manifest = job_manifest(
        "resume",
        tmp_path / "in",
        tmp_path / "out",
        workers=2,
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.01"}},
        checkpoint={"intervalSeconds": 1, "intervalRecords": 25},
    )
    jobs.create(manifest)

    def checkpointed(status: dict[str, Any]) -> bool:
        in_flight = ((status.get("ledger") or {}).get("shards") or {}).get("running") or {}
        return any((entry.get("c") or {}).get("lines") for entry in _entries(in_flight))

    jobs.wait(manifest["metadata"]["name"], checkpointed, 60, "a shard checkpointed")
    victim = next(p for p in jobs.pods("resume") if p.status.phase == "Running")
    killed_at = time.monotonic()
    jobs.core.patch_namespaced_pod(
        victim.metadata.name, jobs.namespace, {"metadata": {"annotations": {SIGNAL_ANNOTATION: "KILL"}}}
    )
    slot = victim.metadata.labels["datajob.dev/slot"]

    def replaced() -> bool:
        return any(
            p.metadata.labels["datajob.dev/slot"] == slot
            and p.metadata.name != victim.metadata.name
            and p.status.phase == "Running"
            for p in jobs.pods("resume")
        )

    wait_for(replaced, 60, "replacement pod running")
    replacement_seconds = time.monotonic() - killed_at
    status = jobs.wait_phase("resume", "Succeeded", timeout=180)
    assert status["restarts"] >= 1
    results = committed(tmp_path / "out")
    assert sum(r["lines"] for r in results.values()) == total_lines
    resumed = [r for r in results.values() if r["attempt"] > 1]
    assert resumed, f"no shard needed a second attempt: {results}"
    assert all((r["resumedFrom"] or {}).get("lines", 0) > 0 for r in resumed), resumed
    print(f"replacement pod running {replacement_seconds:.1f}s after the kill")


def _entries(section: Any) -> list[dict[str, Any]]:
    if isinstance(section, dict):
        return [v for v in section.values() if isinstance(v, dict)]
    if isinstance(section, list):
        return [v for v in section if isinstance(v, dict)]
    return []
