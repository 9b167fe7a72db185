"""The whole test cluster: control plane, kwok with fake nodes of several shapes, and the node agent."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import structlog
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from .controlplane import ClusterState, ControlPlane
from .nodes import AGENT_NODE, FAKE_NODES, KWOK_ANNOTATION
from .processes import wait_for
from .tools import tool

log = structlog.get_logger(__name__)

KWOK_STAGES = Path(__file__).with_name("kwok-stages.yaml")


class TestCluster:
    __test__ = False  # not a pytest test class, despite the name
    """Starts everything in ``directory``; ``stop()`` leaves no process behind."""

    def __init__(self, directory: Path, *, die_with_parent: bool = True) -> None:
        self.control_plane = ControlPlane(directory, die_with_parent=die_with_parent)
        self.directory = self.control_plane.directory

    @property
    def state(self) -> ClusterState:
        assert self.control_plane.state is not None
        return self.control_plane.state

    @property
    def kubeconfig(self) -> str:
        return self.state.kubeconfig

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(self.kubeconfig)

    def start(self) -> ClusterState:
        started = time.monotonic()
        self.control_plane.start()
        try:
            api = client.CoreV1Api(self.api_client())
            self._start_kwok(api)
            self.start_node_agent(AGENT_NODE)
        except BaseException:
            self.stop()
            raise
        log.info(
            "test cluster ready", seconds=round(time.monotonic() - started, 1), kubeconfig=self.kubeconfig
        )
        return self.state

    def stop(self) -> None:
        self.control_plane.stop()

    def _start_kwok(self, api: client.CoreV1Api) -> None:
        kubeconfig = self.control_plane.client_kubeconfig("kwok", "kwok", ("system:masters",))
        self.control_plane.spawn_component(
            "kwok",
            [
                tool("kwok"),
                f"--kubeconfig={kubeconfig}",
                f"--config={KWOK_STAGES}",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                "--node-ip=10.244.0.1",
                "--cidr=10.244.0.0/16",
                "--node-lease-duration-seconds=40",
                "--server-address=127.0.0.1:0",
            ],
        )
        for shape in FAKE_NODES:
            try:
                api.create_node(shape.manifest(fake=True))
            except ApiException as error:
                if error.status != 409:
                    raise
        wait_for(lambda: all(_node_ready(api, s.name) for s in FAKE_NODES), 60, "kwok nodes Ready")

    def start_node_agent(
        self,
        node: str,
        *,
        labels: dict[str, str] | None = None,
        gpus: int = 0,
        gpu_product: str | None = None,
    ) -> None:
        """Starts a node agent registering ``node`` (one more node that runs real processes), with extra
        ``labels`` and ``gpus`` (nvidia.com/gpu capacity, tainted like a GPU node), and waits until the node
        is Ready."""
        shape = [f"--label={k}={v}" for k, v in sorted((labels or {}).items())]
        if gpus:
            shape.append(f"--gpus={gpus}")
        if gpu_product:
            shape.append(f"--gpu-product={gpu_product}")
        kubeconfig = self.control_plane.client_kubeconfig(
            f"node-agent-{node}", f"system:node:{node}", ("system:nodes",)
        )
        self.control_plane.spawn_component(
            _agent_component(node),
            [
                sys.executable,
                "-m",
                "datajob_testenv.nodeagent",
                f"--kubeconfig={kubeconfig}",
                f"--node-name={node}",
                f"--work-dir={self.directory / _agent_component(node)}",
                *shape,
            ],
        )
        api = client.CoreV1Api(self.api_client())
        wait_for(lambda: _node_ready(api, node), 60, f"node agent's node {node} Ready")

    def stop_node_agent(self, node: str) -> None:
        """Stops the agent of ``node`` (its processes die with it) and deletes the Node."""
        self.control_plane.stop_component(_agent_component(node))
        with contextlib.suppress(ApiException):
            client.CoreV1Api(self.api_client()).delete_node(node)


def _agent_component(node: str) -> str:
    return "node-agent" if node == AGENT_NODE else f"node-agent-{node}"


def _node_ready(api: client.CoreV1Api, name: str) -> bool:
    node: Any = api.read_node(name)
    conditions = node.status.conditions or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)
