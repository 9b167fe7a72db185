"""``python -m datajob_testenv up|down|status``: the test cluster for people (``make cluster-up``).

``up`` starts the control plane with kwok nodes and a node agent (a node that runs real processes), MinIO,
installs the DataJob CRD and starts the operator, so that
``kubectl apply -f examples/wordcount/datajob-s3.yaml`` runs right away: the example's buckets, input and
credentials Secret are made too, and the fake (kwok) nodes are cordoned, so workers land on the node that
runs them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .cluster import TestCluster
from .controlplane import STATE_FILE, ClusterState, stop_from_state
from .kube import Kubectl
from .kueue import Kueue
from .multikueue import FEATURE_GATES, QUEUE, MultiKueueClusters
from .nodes import FAKE_NODES
from .objectstore import EXAMPLE_PORT, REGION, ObjectStore
from .operator_process import storage_access
from .processes import pid_alive, port_free, spawn
from .tools import REPO_ROOT

DEFAULT_DIR = Path(".cluster")


def _example_data(store: ObjectStore, kubectl: Kubectl) -> int:
    """The buckets, input and Secret examples/wordcount/datajob-s3.yaml expects; how many files were put."""
    uploaded = _example_input(store)
    kubectl(
        "create",
        "secret",
        "generic",
        "s3-credentials",
        *(f"--from-literal={key}={value}" for key, value in store.credentials.items()),
    )
    return uploaded


def _example_input(store: ObjectStore) -> int:
    """The buckets corpus and results, the word count's input in s3://corpus/wordcount/; how many files."""
    corpus = REPO_ROOT / "examples" / "wordcount" / "data"
    if not list(corpus.glob("*.txt")):
        subprocess.run([sys.executable, str(corpus.parent / "generate.py")], check=True, capture_output=True)
    fs = store.filesystem()
    for bucket in ("corpus", "results"):
        fs.mkdir(bucket)
    files = sorted(corpus.glob("*.txt"))
    for path in files:
        fs.put_file(str(path), f"corpus/wordcount/{path.name}")
    return len(files)


def _multi_up(directory: Path) -> int:
    """``make cluster-up MULTI=1``: datajob_testenv.multikueue's clusters and a MinIO they share."""
    if directory.exists():
        main(["down", "--dir", str(directory)])
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    store = ObjectStore(directory / "objectstore", die_with_parent=False)
    store.start(EXAMPLE_PORT if port_free(EXAMPLE_PORT) else None)
    assert store.pid is not None
    clusters = MultiKueueClusters(directory / "clusters", REPO_ROOT / "examples", die_with_parent=False)
    state = ClusterState(str(directory), server="", kubeconfig="", ca_file="", pids={"minio": store.pid})
    state.save()  # each process is in a state as soon as it runs: `down` stops it whatever fails next
    try:
        clusters.start()
    finally:
        state.pids.update(clusters.pids())
        state.save()
    state.kubeconfig = clusters.kubeconfig("manager")
    state.save()
    clusters.make_namespace("default", {"s3-credentials": store.credentials})
    uploaded = _example_input(store)
    print(
        f"MultiKueue clusters are up (Kueue gates {', '.join(FEATURE_GATES)}); logs in {directory}/clusters"
    )
    for name in clusters.names():
        print(f"  {name:9} export KUBECONFIG={clusters.kubeconfig(name)}")
    print(f"LocalQueue {QUEUE} in namespace default of each cluster, the Secret s3-credentials too;")
    print(f"S3 (MinIO) at {store.endpoint}; s3://corpus/wordcount/ holds {uploaded} input files. Submit to")
    print("the manager (only there) a DataJob with")
    print(f"  metadata.labels: {{kueue.x-k8s.io/queue-name: {QUEUE}}}")
    print("  spec.managedBy: kueue.x-k8s.io/multikueue and spec.output.resume: true, e.g.")
    print("  KUBECONFIG=<manager> kubectl apply -f examples/multicluster/datajob.yaml")
    print("then watch kubectl get dj in the manager and in the workers. To lose a worker cluster:")
    for name in clusters.workers:
        print(f"  python -m datajob_testenv down --dir {directory / 'clusters' / name}   # {name}")
    print("stop it all with: make cluster-down")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datajob_testenv", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where state, logs and kubeconfigs go")
    parser.add_argument("--kueue", action="store_true", help="also start Kueue (make cluster-up KUEUE=1)")
    parser.add_argument(
        "--multi", action="store_true", help="a MultiKueue manager and two worker clusters (MULTI=1)"
    )
    args = parser.parse_args(argv)
    directory: Path = args.dir.resolve()

    if args.command == "up" and args.multi:
        return _multi_up(directory)
    if args.command == "up":
        if directory.exists():
            stop_from_state(directory)
            shutil.rmtree(directory)
        cluster = TestCluster(directory, die_with_parent=False)
        state = cluster.start()
        kubectl = Kubectl(state.kubeconfig)
        kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds" / "datajob.dev_datajobs.yaml"))
        kubectl.wait_established("datajobs.datajob.dev")
        for node in FAKE_NODES:
            kubectl("cordon", node.name)
        if args.kueue:
            Kueue(cluster.control_plane, directory / "kueue").start()
            print("Kueue is up (its CRDs, its webhooks and the controller manager)")
        store = ObjectStore(directory / "objectstore", die_with_parent=False)
        store.start(EXAMPLE_PORT if port_free(EXAMPLE_PORT) else None)
        assert store.pid is not None
        state.pids["minio"] = store.pid
        state.save()  # each process is in the state as soon as it runs: `down` stops it whatever fails next
        operator = spawn(
            [sys.executable, "-m", "datajob_operator", *storage_access(REPO_ROOT / "examples")],
            directory / "logs" / "operator.log",
            env={**os.environ, "KUBECONFIG": state.kubeconfig},
            die_with_parent=False,
        )
        state.pids["operator"] = operator.pid
        state.save()
        uploaded = _example_data(store, kubectl)
        print(f"cluster is up; logs in {directory / 'logs'}")
        print(f"  export KUBECONFIG={state.kubeconfig}")
        print(
            "  kubectl get nodes -L nvidia.com/gpu.product   (the kwok nodes are cordoned: they run nothing)"
        )
        print(f"the DataJob CRD is installed; the operator runs (log: {directory / 'logs' / 'operator.log'})")
        print(f"s3://corpus/wordcount/ holds the example's {uploaded} input files; try:")
        if store.endpoint == f"http://127.0.0.1:{EXAMPLE_PORT}":
            print("  kubectl apply -f examples/wordcount/datajob-s3.yaml && kubectl get dj -w")
        else:  # port 9000 was taken: the example must name this MinIO
            print(
                f"  sed 's|http://127.0.0.1:{EXAMPLE_PORT}|{store.endpoint}|' "
                "examples/wordcount/datajob-s3.yaml | kubectl apply -f - && kubectl get dj -w"
            )
        print("  kubectl datajob report wordcount-s3 > report.html")
        print(f"S3 (MinIO) is up at {store.endpoint}, region {REGION}; for spec.storage:")
        print(f"  storage: {{endpoint: {store.endpoint}, credentialsSecret: s3-credentials}}")
        print(
            "  (the Secret s3-credentials in namespace default holds its credentials; for another namespace:)"
        )
        print(
            "  kubectl create secret generic s3-credentials "
            f"--from-literal=AWS_ACCESS_KEY_ID={store.access_key} "
            f"--from-literal=AWS_SECRET_ACCESS_KEY={store.secret_key}"
        )
        print(f"  export AWS_ACCESS_KEY_ID={store.access_key} AWS_SECRET_ACCESS_KEY={store.secret_key}")
        print("stop it with: make cluster-down")
        return 0
    if args.command == "down":
        for member in sorted(p.parent for p in directory.glob(f"clusters/*/{STATE_FILE}")):
            stop_from_state(member)  # a MultiKueue set's clusters (cluster-up MULTI=1)
        if not stop_from_state(directory):
            print(f"no cluster state in {directory}")
            return 0
        print("cluster stopped")
        return 0
    try:
        state = ClusterState.load(directory)
    except FileNotFoundError:
        print("no cluster")
        return 1
    for name, pid in state.pids.items():
        print(f"{name:26} pid {pid:>7} {'running' if pid_alive(pid) else 'DEAD'}")
    print(f"KUBECONFIG={state.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
