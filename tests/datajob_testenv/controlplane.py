"""A real control plane on loopback: etcd, kube-apiserver, kube-scheduler, kube-controller-manager."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import signal
import ssl
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import structlog
import yaml
from kubernetes import client, config

from . import certs
from .processes import free_port, pid_alive, spawn, stop_group, wait_for
from .tools import tool

log = structlog.get_logger(__name__)

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
STATE_FILE = "cluster.json"


def write_kubeconfig(path: Path, server: str, ca: Path, pair: certs.KeyPair, user: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "datajob-test", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {"name": user, "user": {"client-certificate": str(pair.cert), "client-key": str(pair.key)}}
        ],
        "contexts": [{"name": "datajob-test", "context": {"cluster": "datajob-test", "user": user}}],
        "current-context": "datajob-test",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class ClusterState:
    """What a running cluster is: enough to use it from another process and to tear it down."""

    directory: str
    server: str
    kubeconfig: str
    ca_file: str
    pids: dict[str, int] = field(default_factory=dict)
    kubeconfigs: dict[str, str] = field(default_factory=dict)

    def save(self) -> None:
        (Path(self.directory) / STATE_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> ClusterState:
        return cls(**json.loads((directory / STATE_FILE).read_text()))


class ControlPlane:
    """Starts the four control-plane processes in ``directory`` and stops them again."""

    def __init__(self, directory: Path, *, die_with_parent: bool = True, address: str = "127.0.0.1") -> None:
        self.directory = directory.resolve()
        # Where kube-apiserver listens and what it advertises (the `kubernetes` Service's endpoint): loopback,
        # or the host end of a real node's veth pair, which pods on that node can reach (realnode.py).
        self.address = address
        self.die_with_parent = die_with_parent
        self.logs = self.directory / "logs"
        self.pki = self.directory / "pki"
        self.state: ClusterState | None = None
        self._health_ports: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> ClusterState:
        self.logs.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        ca = certs.CertificateAuthority(self.pki)
        self._ca = ca
        api_port = free_port()
        server = f"https://{self.address}:{api_port}"
        admin = write_kubeconfig(
            self.directory / "admin.kubeconfig",
            server,
            ca.cert_path,
            ca.issue("admin", "datajob-admin", ("system:masters",)),
            "admin",
        )
        self.state = ClusterState(
            directory=str(self.directory), server=server, kubeconfig=str(admin), ca_file=str(ca.cert_path)
        )
        try:
            self._start_etcd()
            self._start_apiserver(api_port)
            self._start_controllers()
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.state.save()
        log.info("control plane ready", server=server, seconds=round(time.monotonic() - started, 1))
        return self.state

    def stop(self) -> None:
        if self.state is None:
            return
        # Reverse start order: clients before the API server, the API server before etcd.
        for name, pid in reversed(list(self.state.pids.items())):
            stop_group(pid)
            log.debug("stopped", component=name, pid=pid)
        self.state.pids.clear()
        self.state.save()

    def stop_component(self, name: str) -> None:
        """Stops one component started with spawn_component (and its process group)."""
        assert self.state is not None
        pid = self.state.pids.pop(name, None)
        if pid is not None:
            stop_group(pid)
            self.state.save()

    def restart_apiserver(self, down_seconds: float = 2.0) -> None:
        """Kills kube-apiserver (SIGKILL) and starts it again on the same port, as a crash and a restart by
        its supervisor would; clients see connection errors meanwhile. Returns once it is ready again."""
        assert self.state is not None
        pid = self.state.pids.pop("kube-apiserver")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        time.sleep(down_seconds)
        self._start_apiserver(int(self.state.server.rsplit(":", 1)[1]))

    def serving_cert(self, name: str, hosts: tuple[str, ...]) -> certs.KeyPair:
        """A serving certificate for ``hosts``, signed by this cluster's CA (see ca_bundle)."""
        return self._ca.issue(name, name, server_hosts=hosts)

    def ca_bundle(self) -> str:
        """The CA certificate, base64-encoded, as webhook configurations' caBundle wants it."""
        return base64.b64encode(self._ca.cert_path.read_bytes()).decode()

    def api_client(self) -> client.ApiClient:
        assert self.state is not None
        return config.new_client_from_config(self.state.kubeconfig)

    def client_kubeconfig(self, name: str, common_name: str, organizations: tuple[str, ...] = ()) -> Path:
        """A kubeconfig for a new identity signed by this cluster's CA."""
        assert self.state is not None
        path = write_kubeconfig(
            self.directory / f"{name}.kubeconfig",
            self.state.server,
            self._ca.cert_path,
            self._ca.issue(name, common_name, organizations),
            name,
        )
        self.state.kubeconfigs[name] = str(path)
        self.state.save()
        return path

    # -- components ------------------------------------------------------------------------------
    def spawn_component(self, name: str, argv: list[str]) -> None:
        assert self.state is not None
        process = spawn(argv, self.logs / f"{name}.log", die_with_parent=self.die_with_parent)
        self.state.pids[name] = process.pid
        self.state.save()

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self._etcd_url = f"http://127.0.0.1:{client}"
        self.spawn_component(
            "etcd",
            [
                tool("etcd"),
                "--name=default",
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls={self._etcd_url}",
                f"--advertise-client-urls={self._etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                # A test cluster trades durability across power loss for speed; process restarts keep data.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        wait_for(lambda: _http_ok(f"{self._etcd_url}/health"), 30, "etcd")

    def _start_apiserver(self, port: int) -> None:
        ca = self._ca
        serving = ca.issue(
            "apiserver",
            "kube-apiserver",
            server_hosts=(
                "127.0.0.1",
                *((self.address,) if self.address != "127.0.0.1" else ()),
                "localhost",
                "10.0.0.1",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
        )
        sa = certs.service_account_key(self.pki)
        self._sa = sa
        # How the API server authenticates to kubelets (logs, exec, port-forward) on a real node.
        kubelet_client = ca.issue(
            "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)
        )
        self.spawn_component(
            "kube-apiserver",
            [
                tool("kube-apiserver"),
                f"--etcd-servers={self._etcd_url}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                f"--kubelet-client-certificate={kubelet_client.cert}",
                f"--kubelet-client-key={kubelet_client.key}",
                # Node names are not in any DNS here; the node's InternalIP is.
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--secure-port={port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.cert_path}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                # PodSecurity is on by default; NodeRestriction keeps the node agent to its own node.
                "--enable-admission-plugins=NodeRestriction",
                # Privileged pods are allowed by the server so that Pod Security Admission is what decides.
                "--allow-privileged=true",
                f"--cert-dir={self.pki / 'apiserver'}",
                "--v=1",
            ],
        )
        assert self.state is not None
        wait_for(lambda: self._api_ok("/readyz"), 90, "kube-apiserver /readyz")

    def _start_controllers(self) -> None:
        ca = self._ca
        for name, common_name in (
            ("kube-scheduler", "system:kube-scheduler"),
            ("kube-controller-manager", "system:kube-controller-manager"),
        ):
            kubeconfig = self.client_kubeconfig(name, common_name)
            port = free_port()
            self._health_ports[name] = port
            argv = [
                tool(name),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--leader-elect=false",
                "--v=1",
            ]
            if name == "kube-controller-manager":
                argv += [
                    f"--service-account-private-key-file={self._sa.key}",
                    f"--root-ca-file={ca.cert_path}",
                    "--use-service-account-credentials=true",
                    f"--cluster-signing-cert-file={ca.cert_path}",
                    f"--cluster-signing-key-file={ca.key_path}",
                    # Faster reactions than production defaults, so failure tests finish quickly.
                    "--node-monitor-grace-period=20s",
                    "--node-monitor-period=2s",
                ]
            self.spawn_component(name, argv)

    def _wait_ready(self, timeout: float) -> None:
        assert self.state is not None
        for name, pid in self.state.pids.items():
            if not pid_alive(pid):
                raise RuntimeError(f"{name} exited; see {self.logs / (name + '.log')}")
        # The service-account controller creating `default` proves the controller-manager works.
        wait_for(
            lambda: self._api_ok("/api/v1/namespaces/default/serviceaccounts/default"),
            timeout,
            "the default ServiceAccount (kube-controller-manager)",
        )
        for name, port in self._health_ports.items():
            wait_for(functools.partial(_https_healthz, port), timeout, f"{name} /healthz")

    # -- HTTP --------------------------------------------------------------------------------------
    def _ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self._ca.cert_path))
        pki = self.pki
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return context

    def _api_ok(self, path: str) -> bool:
        assert self.state is not None
        with urllib.request.urlopen(self.state.server + path, context=self._ssl(), timeout=5) as response:
            return bool(response.status == 200)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def stop_from_state(directory: Path) -> bool:
    """Stops a cluster started by another process (``make cluster-down``)."""
    try:
        state = ClusterState.load(directory)
    except FileNotFoundError:
        return False
    for pid in reversed(list(state.pids.values())):
        if pid_alive(pid):
            stop_group(pid)
    state.pids.clear()
    state.save()
    return True


def _https_healthz(port: int) -> bool:
    # The scheduler and controller-manager serve /healthz anonymously with a self-signed certificate.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context, timeout=2) as response:
        return bool(response.status == 200)
