"""Fixtures for the real-container tests: the images built here and a control plane with a real node.

Prerequisites (root, Docker running, Debian's containerd/runc/CNI plugins/nftables):
`hack/container-host.sh up`, which `make test-containers` and `.ci/run` call. Missing ones fail the
session with what to run, never skip: these tests only run when asked for (--containers).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from datajob_testenv.kube import Kubectl
from datajob_testenv.realnode import ContainerCluster
from datajob_testenv.tools import REPO_ROOT

OPERATOR_IMAGE = "datajob-operator:dev"
WORKER_IMAGE = "datajob-worker:dev"


def _require(condition: bool, message: str) -> None:
    if not condition:
        pytest.fail(
            f"real-container tests: {message} (run `bash hack/container-host.sh up` as root)", pytrace=False
        )


@pytest.fixture(scope="session")
def images() -> list[str]:
    """The operator and worker images, built from images/*.Dockerfile with no registry (idempotent)."""
    _require(os.geteuid() == 0, "need root")
    _require(
        subprocess.run(["docker", "info"], check=False, capture_output=True).returncode == 0,
        "Docker is not running",
    )
    for binary in ("containerd", "runc", "ctr", "nft", "nsenter"):
        _require(shutil.which(binary) is not None, f"{binary} is not installed")
    _require(Path("/usr/lib/cni/bridge").exists(), "Debian's containernetworking-plugins are not installed")
    # The node's kubelet and kube-proxy (built once, cached; linked into the tools directory).
    subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "build-tools.sh")],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "DATAJOB_NODE_TOOLS": "1"},
    )
    subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "build-images.sh"), OPERATOR_IMAGE, WORKER_IMAGE],
        check=True,
        env={**os.environ, "PYTHON": str(REPO_ROOT / ".venv" / "bin" / "python")}
        if (REPO_ROOT / ".venv" / "bin" / "python").exists()
        else None,
    )
    return [OPERATOR_IMAGE, WORKER_IMAGE]


@pytest.fixture(scope="session")
def container_cluster(
    images: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ContainerCluster]:
    cluster = ContainerCluster(tmp_path_factory.mktemp("containers"))
    cluster.start(images)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def real_kubectl(container_cluster: ContainerCluster) -> Kubectl:
    return Kubectl(container_cluster.kubeconfig)


def _privileged_containers_work() -> bool:
    """Whether this dockerd can run --privileged containers (kind's nodes are); see hack/kind/docker."""
    probe = subprocess.run(
        ["docker", "run", "--rm", "--privileged", "--network", "none", "datajob-local/pause:3.10.2", "-v"],
        check=False,
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.fixture(scope="session")
def kind_cluster(images: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A kind cluster made by the README's commands, `make kind-up kind-load deploy e2e-kind`, with
    OFFLINE=1 (kind, its node image and the images built here; no registry). Yields its kubeconfig."""
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    env = {**os.environ, "OFFLINE": "1", "KUBECONFIG": str(kubeconfig)}
    if not _privileged_containers_work():
        env["KIND_DOCKER_SHIM"] = "1"

    def make(*targets: str, check: bool = True) -> None:
        started = time.monotonic()
        subprocess.run(
            ["make", "-C", str(REPO_ROOT), *targets], env=env, check=check, stdout=subprocess.DEVNULL
        )
        print(f"make {' '.join(targets)}: {time.monotonic() - started:.0f}s")

    make("kind-down", check=False)
    try:
        make("kind-up")
        make("kind-load", "deploy")
        make("e2e-kind")
        yield str(kubeconfig)
    finally:
        make("kind-down", check=False)
