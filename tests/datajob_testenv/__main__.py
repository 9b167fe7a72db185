"""``python -m datajob_testenv up|down|status``: the test cluster for people (``make cluster-up``)."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from .cluster import TestCluster
from .controlplane import ClusterState, stop_from_state
from .kueue import Kueue
from .objectstore import EXAMPLE_PORT, REGION, ObjectStore
from .processes import pid_alive, port_free

DEFAULT_DIR = Path(".cluster")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datajob_testenv", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where state, logs and kubeconfigs go")
    parser.add_argument("--kueue", action="store_true", help="also start Kueue (make cluster-up KUEUE=1)")
    args = parser.parse_args(argv)
    directory: Path = args.dir.resolve()

    if args.command == "up":
        if directory.exists():
            stop_from_state(directory)
            shutil.rmtree(directory)
        cluster = TestCluster(directory, die_with_parent=False)
        state = cluster.start()
        if args.kueue:
            Kueue(cluster.control_plane, directory / "kueue").start()
            print("Kueue is up (its CRDs, its webhooks and the controller manager)")
        store = ObjectStore(directory / "objectstore", die_with_parent=False)
        store.start(EXAMPLE_PORT if port_free(EXAMPLE_PORT) else None)
        assert store.pid is not None
        state.pids["minio"] = store.pid
        state.save()
        print(f"cluster is up; logs in {directory / 'logs'}")
        print(f"  export KUBECONFIG={state.kubeconfig}")
        print("  kubectl get nodes -L nvidia.com/gpu.product")
        print(f"S3 (MinIO) is up at {store.endpoint}, region {REGION}; for spec.storage:")
        print(f"  storage: {{endpoint: {store.endpoint}, credentialsSecret: s3-credentials}}")
        print(
            "  kubectl create secret generic s3-credentials "
            f"--from-literal=AWS_ACCESS_KEY_ID={store.access_key} "
            f"--from-literal=AWS_SECRET_ACCESS_KEY={store.secret_key}"
        )
        print(f"  export AWS_ACCESS_KEY_ID={store.access_key} AWS_SECRET_ACCESS_KEY={store.secret_key}")
        print("stop it with: make cluster-down")
        return 0
    if args.command == "down":
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
