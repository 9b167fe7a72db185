"""A real Kubernetes node on this machine: containerd + runc + a kubelet + kube-proxy, in a network
namespace of its own, joined to the test control plane. Pods on it are real containers from images
built here (hack/build-images.sh), so the operator and workers run exactly as they do on a user's cluster.

Layout (all traffic stays inside this machine):

    host (root netns)                         node netns "<name>"
    kube-apiserver on 10.97.0.1  <-- veth -->  10.97.0.2: kubelet, kube-proxy, containerd
    route 10.98.0.0/24 via 10.97.0.2           bridge djbr0 10.98.0.1 -- pods 10.98.0.x

The daemons are started with ``nsenter --net`` (not ``ip netns exec``, which remounts /sys and hides the
cgroup hierarchy), so kubelet and kube-proxy program iptables/nftables only inside the node's namespace.
Pods reach the API server through the ``kubernetes`` Service (kube-proxy, nftables mode) whose endpoint
is the host end of the veth pair. There is no CoreDNS: pods resolve nothing under ``*.svc``.

Needs root, Debian's containerd, runc, containernetworking-plugins and nftables, the kubelet and
kube-proxy from hack/build-tools.sh (DATAJOB_NODE_TOOLS=1), and a cgroup v1 or v2 host.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog
import yaml

from .controlplane import ControlPlane
from .processes import pid_alive, stop_group, wait_for
from .tools import tool

log = structlog.get_logger(__name__)

HOST_ADDRESS = "10.97.0.1"
NODE_ADDRESS = "10.97.0.2"
POD_SUBNET = "10.98.0.0/24"
# Keeps the test suite's own pods (scheduled onto kwok nodes or the node agent) off the real node; the
# real-container tests tolerate it and select the node by its label.
REAL_NODE_TAINT = {"key": "datajob.dev/real-node", "value": "true", "effect": "NoSchedule"}
REAL_NODE_LABEL = "datajob.dev/real-node"
PAUSE_IMAGE = "datajob-local/pause:3.10.2"  # made by hack/build-images.sh
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins


def run(
    argv: list[str], *, check: bool = True, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(argv, input=stdin, capture_output=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.decode().strip()}")
    return result


@dataclass(frozen=True)
class NodeNetwork:
    """The node's network namespace and the veth pair joining it to the host."""

    namespace: str
    host_interface: str
    node_interface: str

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.namespace}"

    def enter(self) -> list[str]:
        """The prefix that runs a command inside the node's network namespace only."""
        return ["nsenter", f"--net={self.netns_path}", "--"]

    def create(self) -> None:
        self.delete()
        run(["ip", "netns", "add", self.namespace])
        run(["ip", "link", "add", self.host_interface, "type", "veth", "peer", "name", self.node_interface])
        run(["ip", "link", "set", self.node_interface, "netns", self.namespace])
        run(["ip", "addr", "add", f"{HOST_ADDRESS}/30", "dev", self.host_interface])
        run(["ip", "link", "set", self.host_interface, "up"])
        inside = ["ip", "netns", "exec", self.namespace]
        run([*inside, "ip", "link", "set", "lo", "up"])
        run([*inside, "ip", "addr", "add", f"{NODE_ADDRESS}/30", "dev", self.node_interface])
        run([*inside, "ip", "link", "set", self.node_interface, "up"])
        run([*inside, "ip", "route", "add", "default", "via", HOST_ADDRESS])
        # The node routes between its pods' bridge and the veth; the host routes replies to pods back to it.
        run([*self.enter(), "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        # replace, not add: a session killed before its teardown leaves its route behind.
        run(["ip", "route", "replace", POD_SUBNET, "via", NODE_ADDRESS, "dev", self.host_interface])

    def delete(self) -> None:
        # Deleting the namespace deletes the veth pair (both ends) and with it the host route.
        run(["ip", "netns", "delete", self.namespace], check=False)
        run(["ip", "link", "delete", self.host_interface], check=False)


def pod_processes(pod_uid: str, within: str = "") -> list[int]:
    """Host pids of a pod's container processes (pause excluded), found by the pod's cgroup: cgroupfs
    names it ``pod<uid>``, the systemd driver (kind's nodes) ``pod<uid with underscores>``. Containers are
    processes of this machine's kernel however deeply nested (kind: a pod in a node container)."""
    markers = ("pod" + pod_uid, "pod" + pod_uid.replace("-", "_"))
    return [
        pid
        for pid, cgroup, command in host_processes()
        if any(m in cgroup for m in markers) and within in cgroup and not command.startswith(b"/pause")
    ]


def host_processes() -> Iterator[tuple[int, str, bytes]]:
    """(pid, /proc/<pid>/cgroup, command line) of every process on this machine still there to read."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "cgroup").read_text(), (entry / "cmdline").read_bytes()
            except OSError:
                continue


def node_network(name: str = "real-0") -> NodeNetwork:
    """Names unique to this process (a second test session on the machine gets its own)."""
    # Interface names are limited to 15 characters.
    tag = format(os.getpid() % 100000, "05d")
    return NodeNetwork(f"datajob-{name}-{tag}", f"djh{tag}", f"djn{tag}")


class ContainerCluster:
    """The test control plane, listening on the host end of the node's veth pair, and one real node."""

    __test__ = False

    def __init__(self, directory: Path, *, die_with_parent: bool = True) -> None:
        self.network = node_network()
        self.control_plane = ControlPlane(directory, die_with_parent=die_with_parent, address=HOST_ADDRESS)
        self.directory = self.control_plane.directory
        self.node = RealNode(self.control_plane, self.network)

    @property
    def kubeconfig(self) -> str:
        assert self.control_plane.state is not None
        return self.control_plane.state.kubeconfig

    def start(self, images: list[str]) -> None:
        started = time.monotonic()
        self.network.create()
        try:
            self.control_plane.start()
            self.node.start(images)
        except BaseException:
            self.stop()
            raise
        log.info("container cluster ready", seconds=round(time.monotonic() - started, 1))

    def stop(self) -> None:
        self.node.stop()
        self.control_plane.stop()
        self.network.delete()


class RealNode:
    """Starts containerd, the kubelet and kube-proxy for one node named ``name`` and stops them again,
    leaving no container, mount, cgroup or network behind."""

    def __init__(self, control_plane: ControlPlane, network: NodeNetwork, name: str = "real-0") -> None:
        self.control_plane = control_plane
        self.network = network
        self.name = name
        self.directory = control_plane.directory / "realnode"
        self.cgroup_root = f"/{network.namespace}"
        self.containerd_socket = self.directory / "containerd" / "containerd.sock"
        self.pids: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, images: list[str], timeout: float = 120.0) -> None:
        """``images`` (local Docker images) are imported into the node's containerd before pods start."""
        started = time.monotonic()
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._make_cgroups()
            self._start_containerd()
            self.import_images([PAUSE_IMAGE, *images])
            self._start_kubelet()
            self._start_kube_proxy()
            wait_for(self._ready, timeout, f"real node {self.name} Ready")
        except BaseException:
            self.stop()
            raise
        log.info("real node ready", node=self.name, seconds=round(time.monotonic() - started, 1))

    def stop(self) -> None:
        for name in ("kube-proxy", "kubelet"):
            self._stop(name)
        self._kill_containers()
        self._stop("containerd")
        self._unmount_all()
        self._remove_cgroups()
        self.network.delete()

    # -- images ----------------------------------------------------------------------------------
    def import_images(self, images: list[str]) -> None:
        """``docker save`` each image into the node's containerd (namespace k8s.io, where the CRI looks)."""
        for image in images:
            t0 = time.monotonic()
            saved = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
            assert saved.stdout is not None
            loaded = subprocess.run(
                ["ctr", f"--address={self.containerd_socket}", "-n", "k8s.io", "images", "import", "-"],
                stdin=saved.stdout,
                capture_output=True,
                check=False,
            )
            saved.stdout.close()
            if saved.wait() != 0 or loaded.returncode != 0:
                raise RuntimeError(f"importing {image} failed: {loaded.stderr.decode().strip()}")
            log.info("image imported", image=image, seconds=round(time.monotonic() - t0, 1))

    def container_pids(self, pod_uid: str) -> list[int]:
        return pod_processes(pod_uid, within=self.cgroup_root)

    # -- daemons ---------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> None:
        self.control_plane.spawn_component(f"realnode-{name}", [*self.network.enter(), *argv])
        assert self.control_plane.state is not None
        self.pids[name] = self.control_plane.state.pids[f"realnode-{name}"]

    def _stop(self, name: str) -> None:
        pid = self.pids.pop(name, None)
        if pid is not None:
            stop_group(pid)
            state = self.control_plane.state
            if state is not None:
                state.pids.pop(f"realnode-{name}", None)
                state.save()

    def _make_cgroups(self) -> None:
        """The kubelet wants its cgroupRoot present in every hierarchy (v1) or the unified one (v2)."""
        base = Path("/sys/fs/cgroup")
        if (base / "cgroup.controllers").exists():  # v2
            (base / self.cgroup_root.lstrip("/")).mkdir(exist_ok=True)
            return
        for hierarchy in base.iterdir():
            if not hierarchy.is_dir() or hierarchy.is_symlink():
                continue
            directory = hierarchy / self.cgroup_root.lstrip("/")
            directory.mkdir(exist_ok=True)
            # A new cpuset has no CPUs or memory nodes until given its parent's.
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / name).exists():
                    (directory / name).write_text((hierarchy / name).read_text())

    def _start_containerd(self) -> None:
        root = self.directory / "containerd"
        (root / "cni").mkdir(parents=True, exist_ok=True)
        cni_conf = root / "cni" / "10-datajob.conflist"
        cni_conf.write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "datajob",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": "djbr0",
                            "isGateway": True,
                            # Pod traffic leaves with the pod's address; the host has a route back.
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_SUBNET}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(root / "ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                }
            )
        )
        config = root / "config.toml"
        config.write_text(
            f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{self.containerd_socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # runc cannot raise oom_score_adj here (root lacks CAP_SYS_RESOURCE in this machine's sandbox).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{root / "cni"}"
"""
        )
        self._spawn("containerd", ["containerd", f"--config={config}"])
        wait_for(
            lambda: (
                run(["ctr", f"--address={self.containerd_socket}", "version"], check=False).returncode == 0
            ),
            30,
            "containerd",
        )

    def _start_kubelet(self) -> None:
        cp = self.control_plane
        assert cp.state is not None
        kubeconfig = cp.client_kubeconfig(
            f"kubelet-{self.name}", f"system:node:{self.name}", ("system:nodes",)
        )
        kubelet_dir = self.directory / "kubelet"
        kubelet_dir.mkdir(exist_ok=True)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This machine has cgroup v1 and swap; a recent kubelet refuses both unless told.
            "failCgroupV1": False,
            "failSwapOn": False,
            "cgroupDriver": "cgroupfs",
            # Its own cgroup subtree, so it never touches another kubelet's or the host's.
            "cgroupRoot": self.cgroup_root,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "address": NODE_ADDRESS,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            # Only clients with a certificate from the cluster CA (the API server) may talk to it.
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": cp.state.ca_file},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "podLogsDir": str(self.directory / "pod-logs"),
            "registerWithTaints": [REAL_NODE_TAINT],
            "maxPods": 30,
            # A shared development machine's disk and memory must not make the kubelet evict test pods, nor
            # garbage-collect images that cannot be pulled again.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "resolvConf": "/etc/resolv.conf",
            "shutdownGracePeriod": "0s",
        }
        config_path = kubelet_dir / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self._spawn(
            "kubelet",
            [
                tool("kubelet"),
                f"--config={config_path}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={kubelet_dir / 'root'}",
                f"--cert-dir={kubelet_dir / 'pki'}",
                f"--node-ip={NODE_ADDRESS}",
                f"--hostname-override={self.name}",
                f"--node-labels={REAL_NODE_LABEL}=true",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self) -> None:
        cp = self.control_plane
        kubeconfig = cp.client_kubeconfig(f"kube-proxy-{self.name}", "system:kube-proxy")
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "nftables",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "hostnameOverride": self.name,
            "clusterCIDR": POD_SUBNET,
            # Leave the host's conntrack sysctls alone (they are not per-namespace everywhere).
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
        }
        path = self.directory / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        self._spawn("kube-proxy", [tool("kube-proxy"), f"--config={path}", "--v=1"])

    def _ready(self) -> bool:
        for name, pid in self.pids.items():
            if not pid_alive(pid):
                raise RuntimeError(f"{name} exited; see {self.control_plane.logs / f'realnode-{name}.log'}")
        assert self.control_plane.state is not None
        ready = run(
            [
                tool("kubectl"),
                f"--kubeconfig={self.control_plane.state.kubeconfig}",
                "get",
                "node",
                self.name,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            ],
            check=False,
        )
        return ready.stdout.decode() == "True"

    # -- teardown --------------------------------------------------------------------------------
    def _kill_containers(self) -> None:
        """SIGKILL every process in the node's cgroups and the containerd shims serving them."""
        address = str(self.containerd_socket).encode()
        for pid, cgroup, command in host_processes():
            if self.cgroup_root in cgroup or (b"containerd-shim" in command and address in command):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)

    def _unmount_all(self) -> None:
        # Container root filesystems, volumes (service-account tokens are tmpfs) and sandbox /dev/shm.
        for _ in range(3):
            mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
            ours = [m for m in mounts if m.startswith(str(self.directory))]
            if not ours:
                break
            for mount in sorted(ours, key=len, reverse=True):
                run(["umount", "-l", mount], check=False)
        # Pod network namespaces made by the CRI for this node's sandboxes.
        for netns in Path("/run/netns").glob("cni-*") if Path("/run/netns").exists() else []:
            if not self._netns_in_use(netns):
                run(["umount", "-l", str(netns)], check=False)
                with contextlib.suppress(OSError):
                    netns.unlink()

    @staticmethod
    def _netns_in_use(path: Path) -> bool:
        try:
            inode = path.stat().st_ino
        except OSError:
            return False
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if (entry / "ns" / "net").stat().st_ino == inode:
                        return True
        return False

    def _remove_cgroups(self) -> None:
        base = Path("/sys/fs/cgroup")
        roots = [base / c / self.cgroup_root.lstrip("/") for c in os.listdir(base)] + [
            base / self.cgroup_root.lstrip("/")
        ]
        for root in roots:
            if not root.is_dir():
                continue
            for directory in sorted(
                (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            ):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            with contextlib.suppress(OSError):
                root.rmdir()


def remove_directory(path: Path) -> None:
    """Deletes a stopped node's directory (overlay snapshots are owned by root and may be read-only)."""
    shutil.rmtree(path, ignore_errors=True)
