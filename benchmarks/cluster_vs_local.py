"""The columnar jobs in the cluster against local mode: the same manifests, two workers, on the test
control plane (a real kube-apiserver, the operator, worker processes on the node agent's node) and with
`datajob run`, outputs checked byte-identical.

Cluster time is from creating the DataJob to its Succeeded phase as the client sees it (pod start-up,
planning, the job commit and the status round trips included); local time is `datajob run` end to end.

Run: .venv/bin/python benchmarks/cluster_vs_local.py [--mb 100] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from datajob_testenv.cluster import TestCluster
from datajob_testenv.datajobs import GROUP, PLURAL, VERSION
from datajob_testenv.kube import Kubectl
from datajob_testenv.nodes import AGENT_NODE
from datajob_testenv.operator_process import OperatorProcess, storage_access
from datajob_testenv.processes import wait_for
from datajob_testenv.tools import REPO_ROOT

sys.path.insert(0, str(Path(__file__).parent))
import sales_engines
import wordcount_engines

from datajob_worker.cli import main as datajob


def jobs(work: Path, megabytes: int) -> dict[str, dict[str, Any]]:
    """The examples as a user runs them (their shard sizes), pointed at generated data of ``megabytes``."""
    sales_engines.make_orders(work / "orders", megabytes, fmt="parquet")
    wordcount_engines.corpus(work / "text", megabytes)
    sales = yaml.safe_load(sales_engines.manifest(work, work / "orders", 2, "sales").read_text())
    words = yaml.safe_load(wordcount_engines.manifest(work, work / "text", 2, "words").read_text())
    sql = yaml.safe_load((REPO_ROOT / "examples" / "sales" / "sql-by-region.yaml").read_text())
    sql["spec"]["input"].update(uris=[f"{work / 'orders'}/*.parquet"], format="parquet")
    return {"sales aggregate (Parquet)": sales, "sales SQL (Parquet)": sql, "word count (text)": words}


def in_cluster(job: dict[str, Any], output: Path) -> dict[str, Any]:
    spec = {
        **job["spec"],
        "image": "datajob-worker:dev",
        "command": [sys.executable, "-m", "datajob_worker"],
        "output": {"uri": str(output)},
        "resources": {"cpu": "100m", "memory": "256Mi"},
        "nodeSelector": {"kubernetes.io/hostname": AGENT_NODE},
    }
    return {**job, "spec": spec}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="datajob-cluster-vs-local-"))
    manifests = jobs(work, args.mb)
    cluster = TestCluster(work / "cluster")
    cluster.start()
    operator: OperatorProcess | None = None
    times: dict[str, dict[str, list[float]]] = {name: {"local": [], "cluster": []} for name in manifests}
    try:
        kubectl = Kubectl(cluster.kubeconfig)
        kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds" / "datajob.dev_datajobs.yaml"))
        kubectl.wait_established("datajobs.datajob.dev")
        operator = OperatorProcess(cluster.kubeconfig, cluster.directory / "logs", *storage_access(work))
        operator.start()
        api = cluster.api_client()
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        core.create_namespace({"metadata": {"name": "bench"}})
        wait_for(
            lambda: core.read_namespaced_service_account("default", "bench") is not None, 60, "default SA"
        )
        for round_ in range(args.rounds):
            for index, (name, job) in enumerate(manifests.items()):
                label = f"j{index}-r{round_}"
                local_out = work / f"local-{label}"
                local = {**job, "spec": {**job["spec"], "output": {"uri": str(local_out)}}}
                (work / f"{label}.yaml").write_text(yaml.safe_dump(local))
                started = time.perf_counter()
                assert datajob(["run", str(work / f"{label}.yaml")]) == 0
                times[name]["local"].append(time.perf_counter() - started)
                body = in_cluster(job, work / f"cluster-{label}")
                body["metadata"] = {"name": label}
                started = time.perf_counter()
                custom.create_namespaced_custom_object(GROUP, VERSION, "bench", PLURAL, body)

                def phase(label: str = label) -> str:
                    obj = custom.get_namespaced_custom_object(GROUP, VERSION, "bench", PLURAL, label)
                    return str((obj.get("status") or {}).get("phase", ""))

                wait_for(lambda: phase() in ("Succeeded", "Failed"), 600, f"{label} finished", interval=0.05)
                times[name]["cluster"].append(time.perf_counter() - started)
                assert phase() == "Succeeded", f"{label}: {phase()}"
                same = (work / f"cluster-{label}" / "result").read_bytes() == (
                    local_out / "result"
                ).read_bytes()
                assert same, f"{name}: the cluster's result differs from local mode's"
    finally:
        if operator is not None:
            operator.stop()
        cluster.stop()
    print(
        f"cluster (test control plane, 2 worker pods) vs local mode (2 workers), {args.mb} MB each, "
        f"median of {args.rounds}; results byte-identical"
    )
    for name, measured in times.items():
        here, remote = statistics.median(measured["local"]), statistics.median(measured["cluster"])
        print(f"{name:28} local {here:6.2f} s   cluster {remote:6.2f} s   {remote / here:5.2f}x")


if __name__ == "__main__":
    main()
