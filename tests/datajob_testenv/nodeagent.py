"""A node agent for tests: a stand-in for kubelet + container runtime that runs pods as local processes.

kubelet and a container runtime cannot run on the test machines (no container engine, no root cgroups
to spare), and kwok only pretends pods run. This agent registers one Node, keeps its lease, and for every
pod the real scheduler binds to that node it runs each container's ``command`` + ``args`` as a local
process with the pod's env (including downward-API values), materialises the pod's volumes under a
per-pod root directory, and reports status (Running, then Succeeded/Failed with exit codes) through the
API like kubelet does. Deleting a pod sends SIGTERM, then SIGKILL after the grace period. The annotation
``nodeagent.datajob.dev/signal: KILL`` (or TERM, INT, ...; any new value, e.g. ``KILL/2``, signals
again) sends that signal to the pod's processes on demand.

It also serves the kubelet's container-log endpoint (kubelet_logs), so `kubectl logs` works on its pods.

What it does not do: images are ignored (the command runs on the host's PATH), there is no isolation and
no resource limits; volume mount paths are rebased under ``$NODE_AGENT_ROOT`` (an env var the process
gets), because processes share the host's filesystem. See docs/testing.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from .kubelet_logs import LogServer
from .nodes import AGENT_SHAPE, NodeShape

log = structlog.get_logger("nodeagent")

SIGNAL_ANNOTATION = "nodeagent.datajob.dev/signal"
ROOT_ENV = "NODE_AGENT_ROOT"
# Images under this registry "cannot be pulled": their containers wait in ImagePullBackOff forever.
UNPULLABLE_PREFIX = "unpullable.invalid/"
LEASE_SECONDS = 40
_VAR_REF = re.compile(r"\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion for env values, command and args ($$ escapes)."""
    parts = value.split("$$")
    return "$".join(_VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), part) for part in parts)


@dataclass
class ContainerRun:
    name: str
    image: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    restarts: int = 0
    exit_code: int | None = None
    finished_at: str = ""
    restart_at: float = 0.0
    termination_path: Path | None = None  # terminationMessagePath, rebased under the pod's root
    fallback_to_logs: bool = False  # terminationMessagePolicy: FallbackToLogsOnError
    pull_failed: bool = False

    def termination_message(self) -> str:
        """What kubelet would put in the terminated state's message: the file, else (on error, with
        FallbackToLogsOnError) the tail of the log; kubelet caps both (4 KiB, 80 lines / 2 KiB)."""
        text = ""
        if self.termination_path is not None:
            with contextlib.suppress(OSError):
                text = self.termination_path.read_text()[-4096:]
        if not text.strip() and self.fallback_to_logs and self.exit_code:
            with contextlib.suppress(OSError):
                text = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-80:])[-2048:]
        return text

    def start(self) -> None:
        if self.image.startswith(UNPULLABLE_PREFIX):
            # Stands in for a registry that does not have the image: kubelet's ImagePullBackOff.
            self.pull_failed = True
            return
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.started_at = _now()
        self.exit_code = None

    def poll(self) -> bool:
        """True when the process has just exited."""
        if self.process is None or self.exit_code is not None:
            return False
        code = self.process.poll()
        if code is None:
            return False
        # A process killed by a signal reports 128+N, as container runtimes do.
        self.exit_code = 128 - code if code < 0 else code
        self.finished_at = _now()
        return True

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.exit_code is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def status(self) -> dict[str, Any]:
        state: dict[str, Any]
        if self.exit_code is None and self.process is not None:
            state = {"running": {"startedAt": self.started_at}}
        elif self.exit_code is not None:
            state = {
                "terminated": {
                    "exitCode": self.exit_code,
                    "reason": "Completed" if self.exit_code == 0 else "Error",
                    "startedAt": self.started_at,
                    "finishedAt": self.finished_at,
                }
            }
            message = self.termination_message()
            if message:
                state["terminated"]["message"] = message
        elif self.pull_failed:
            state = {
                "waiting": {
                    "reason": "ImagePullBackOff",
                    "message": f'Back-off pulling image "{self.image}": not found',
                }
            }
        else:
            state = {"waiting": {"reason": "ContainerCreating"}}
        running = "running" in state
        return {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "containerID": f"nodeagent://{self.process.pid}" if self.process else "",
            "ready": running,
            "started": running,
            "restartCount": self.restarts,
            "state": state,
        }


@dataclass
class PodRun:
    namespace: str
    name: str
    uid: str
    restart_policy: str
    containers: list[ContainerRun]
    grace_seconds: int
    signals_applied: set[str] = field(default_factory=set)
    terminating_since: float | None = None
    reported_phase: str = ""
    # A status the API server has not taken yet (it was down): sent again every tick, as kubelet's status
    # manager does, or a started pod would stay Pending in the API forever. With the start time, if so.
    unreported: bool = False
    start_unreported: bool = False

    def all_exited(self) -> bool:
        return all(c.exit_code is not None or c.pull_failed for c in self.containers)

    def phase(self) -> str:
        if any(c.pull_failed for c in self.containers):
            return "Pending"
        if not self.all_exited():
            return "Running"
        return "Succeeded" if all(c.exit_code == 0 for c in self.containers) else "Failed"

    def signal(self, sig: signal.Signals) -> None:
        for container in self.containers:
            container.signal(sig)


class NodeAgent:
    def __init__(
        self,
        api: client.CoreV1Api,
        node_name: str,
        work_dir: Path,
        server_host: str,
        server_port: int,
        *,
        shape: NodeShape = AGENT_SHAPE,
    ):
        self.shape = shape
        self.api = api
        self.coordination = client.CoordinationV1Api(api.api_client)
        self.node_name = node_name
        self.work_dir = work_dir
        self.server_host = server_host
        self.server_port = server_port
        self.pods: dict[str, PodRun] = {}
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.stopping = threading.Event()
        self.logs = LogServer(work_dir / "pods", work_dir / "kubelet")

    # -- node registration and heartbeat --------------------------------------------------------
    def register(self) -> None:
        manifest = self.shape.manifest(fake=False)
        manifest["metadata"]["name"] = self.node_name
        manifest["metadata"]["labels"]["kubernetes.io/hostname"] = self.node_name
        status = manifest.pop("status")
        try:
            self.api.create_node(manifest)
        except ApiException as error:
            if error.status != 409:
                raise
        self._report_node_status(status)

    def _report_node_status(self, base: dict[str, Any] | None = None) -> None:
        now = _now()
        status: dict[str, Any] = dict(base or {})
        status["conditions"] = [
            {
                "type": "Ready",
                "status": "True",
                "reason": "NodeAgentReady",
                "message": "datajob test node agent is running pods as local processes",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        ]
        status["addresses"] = [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": self.node_name},
        ]
        # Where the API server fetches container logs (kubectl logs): the agent's log endpoint.
        status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": self.logs.port}}
        status["nodeInfo"] = {
            "architecture": "amd64",
            "operatingSystem": "linux",
            "kubeletVersion": "nodeagent",
            "containerRuntimeVersion": "nodeagent://local-process",
            "kernelVersion": os.uname().release,
            "osImage": "host",
            "bootID": "",
            "machineID": "",
            "systemUUID": "",
            "kubeProxyVersion": "",
        }
        self.api.patch_node_status(self.node_name, {"status": status})

    def _renew_lease(self) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": self.node_name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": now,
            },
        }
        try:
            self.coordination.patch_namespaced_lease(self.node_name, "kube-node-lease", body)
        except ApiException as error:
            if error.status != 404:
                raise
            self.coordination.create_namespaced_lease("kube-node-lease", body)

    def _heartbeat_loop(self) -> None:
        beats = 0
        while not self.stopping.wait(0 if beats == 0 else 10):
            try:
                self._renew_lease()
                if beats % 3 == 0:
                    self._report_node_status()
            except Exception as error:  # noqa: BLE001 - keep beating through API hiccups
                log.warning("heartbeat failed", error=str(error))
            beats += 1

    # -- watching pods ----------------------------------------------------------------------------
    def _watch_loop(self) -> None:
        selector = f"spec.nodeName={self.node_name}"
        while not self.stopping.is_set():
            try:
                listing = self.api.list_pod_for_all_namespaces(field_selector=selector)
                for pod in listing.items:
                    self.events.put(("SYNC", self.api.api_client.sanitize_for_serialization(pod)))
                stream = watch.Watch().stream(
                    self.api.list_pod_for_all_namespaces,
                    field_selector=selector,
                    resource_version=listing.metadata.resource_version,
                    timeout_seconds=300,
                    _request_timeout=330,
                )
                for event in stream:
                    pod = self.api.api_client.sanitize_for_serialization(event["object"])
                    self.events.put((event["type"], pod))
                    if self.stopping.is_set():
                        return
            except Exception as error:  # noqa: BLE001 - relist after any watch failure
                if not self.stopping.is_set():
                    log.warning("pod watch failed; relisting", error=str(error))
                    time.sleep(1)

    # -- pod lifecycle ----------------------------------------------------------------------------
    def handle(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        run = self.pods.get(uid)
        if kind == "DELETED":
            if run is not None:
                run.signal(signal.SIGKILL)
                self.pods.pop(uid, None)
            return
        if meta.get("deletionTimestamp"):
            self._begin_termination(pod, run)
            return
        if run is None:
            phase = pod.get("status", {}).get("phase", "Pending")
            if phase in ("Succeeded", "Failed"):
                return
            if phase == "Running":
                # Started by an earlier agent whose processes are gone: report what a rebooted node would.
                self._fail_orphan(pod)
                return
            run = self._start(pod)
            if run is None:
                return
        wanted = (meta.get("annotations") or {}).get(SIGNAL_ANNOTATION)
        if wanted and wanted not in run.signals_applied:
            run.signals_applied.add(wanted)
            name = wanted.split("/")[0].upper()
            sig = signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
            log.info("signalling pod on request", pod=run.name, signal=sig.name)
            run.signal(sig)

    def _pod_env(self, pod: dict[str, Any], container: dict[str, Any], root: Path) -> dict[str, str]:
        meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
        env: dict[str, str] = {
            # The worker image puts its Python (with the project installed) first on PATH; the agent's own
            # Python is that here, so `python -m datajob_worker` (the operator's default command) runs.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(root),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOSTNAME": meta["name"],
            "KUBERNETES_SERVICE_HOST": self.server_host,
            "KUBERNETES_SERVICE_PORT": str(self.server_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.server_port),
            ROOT_ENV: str(root),
        }
        # Lets tests run worker code from the checkout without installing it into the image.
        if "PYTHONPATH" in os.environ:
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        fields = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": self.node_name,
            "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
            "status.podIP": status.get("podIP") or "127.0.0.1",
            "status.hostIP": "127.0.0.1",
        }
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = self._config_map(meta["namespace"], source["configMapRef"]["name"])
                env.update({prefix + k: v for k, v in data.items()})
        for item in container.get("env") or []:
            value = item.get("value")
            ref = item.get("valueFrom") or {}
            if "fieldRef" in ref:
                path = ref["fieldRef"]["fieldPath"]
                match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
                if match:
                    value = (meta.get(match.group(1)) or {}).get(match.group(2), "")
                else:
                    value = fields.get(path, "")
            elif "configMapKeyRef" in ref:
                key_ref = ref["configMapKeyRef"]
                value = self._config_map(meta["namespace"], key_ref["name"]).get(key_ref["key"], "")
            elif "secretKeyRef" in ref:
                key_ref = ref["secretKeyRef"]
                secret = self._secret(meta["namespace"], key_ref["name"])
                if key_ref["key"] not in secret and key_ref.get("optional"):
                    continue  # as kubelet: an optional key that is absent sets no variable
                value = secret.get(key_ref["key"], "")
            elif "resourceFieldRef" in ref:
                resource = ref["resourceFieldRef"]["resource"]
                kind, _, name = resource.partition(".")
                value = str(((container.get("resources") or {}).get(kind) or {}).get(name, ""))
            env[item["name"]] = expand(value or "", env)
        return env

    def _config_map(self, namespace: str, name: str) -> dict[str, str]:
        return dict(self.api.read_namespaced_config_map(name, namespace).data or {})

    def _secret(self, namespace: str, name: str) -> dict[str, str]:
        data = self.api.read_namespaced_secret(name, namespace).data or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def _materialise_volumes(self, pod: dict[str, Any], root: Path) -> dict[str, Path]:
        """Writes each volume's files to disk; returns volume name -> directory."""
        meta, spec = pod["metadata"], pod["spec"]
        volumes: dict[str, Path] = {}
        for volume in spec.get("volumes") or []:
            target = root.parent / "volumes" / volume["name"]
            target.mkdir(parents=True, exist_ok=True)
            volumes[volume["name"]] = target
            if "configMap" in volume:
                for key, value in self._config_map(meta["namespace"], volume["configMap"]["name"]).items():
                    (target / key).write_text(value)
            elif "secret" in volume:
                for key, value in self._secret(meta["namespace"], volume["secret"]["secretName"]).items():
                    (target / key).write_text(value)
            elif "projected" in volume:
                for source in volume["projected"].get("sources") or []:
                    self._project(pod, source, target)
        return volumes

    def _project(self, pod: dict[str, Any], source: dict[str, Any], target: Path) -> None:
        meta = pod["metadata"]
        if "serviceAccountToken" in source:
            token_source = source["serviceAccountToken"]
            audience = token_source.get("audience")
            request = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(
                    audiences=[audience] if audience else [],
                    expiration_seconds=token_source.get("expirationSeconds", 3607),
                    bound_object_ref=client.V1BoundObjectReference(
                        api_version="v1", kind="Pod", name=meta["name"], uid=meta["uid"]
                    ),
                )
            )
            token = self._with_authorizer_lag(
                lambda: self.api.create_namespaced_service_account_token(
                    pod["spec"].get("serviceAccountName", "default"), meta["namespace"], request
                )
            )
            (target / token_source["path"]).write_text(token.status.token)
        elif "configMap" in source:
            data = self._config_map(meta["namespace"], source["configMap"]["name"])
            for item in source["configMap"].get("items") or [{"key": k, "path": k} for k in data]:
                (target / item["path"]).write_text(data.get(item["key"], ""))
        elif "downwardAPI" in source:
            for item in source["downwardAPI"].get("items") or []:
                path = item.get("fieldRef", {}).get("fieldPath")
                value = meta["namespace"] if path == "metadata.namespace" else meta.get("name", "")
                (target / item["path"]).write_text(value)

    @staticmethod
    def _with_authorizer_lag(call: Callable[[], Any]) -> Any:
        """The Node authorizer learns of a new pod's ServiceAccount a moment after the pod is bound;
        kubelet retries volume set-up through that window, and so do we."""
        for _ in range(20):
            try:
                return call()
            except ApiException as error:
                if error.status != 403:
                    raise
                time.sleep(0.25)
        return call()

    def _start(self, pod: dict[str, Any]) -> PodRun | None:
        meta, spec = pod["metadata"], pod["spec"]
        sandbox = self.work_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
        root = sandbox / "root"
        root.mkdir(parents=True, exist_ok=True)
        try:
            volumes = self._materialise_volumes(pod, root)
            containers: list[ContainerRun] = []
            for container in spec["containers"]:
                command = (container.get("command") or []) + (container.get("args") or [])
                if not container.get("command"):
                    raise ValueError(
                        f"container {container['name']!r} has no command; the node agent cannot run images"
                    )
                for mount in container.get("volumeMounts") or []:
                    link = root / mount["mountPath"].lstrip("/")
                    link.parent.mkdir(parents=True, exist_ok=True)
                    if not link.exists():
                        link.symlink_to(volumes[mount["name"]], target_is_directory=True)
                env = self._pod_env(pod, container, root)
                working_dir = container.get("workingDir")
                cwd = str(root / working_dir.lstrip("/")) if working_dir else str(root)
                Path(cwd).mkdir(parents=True, exist_ok=True)
                containers.append(
                    ContainerRun(
                        name=container["name"],
                        image=container.get("image", ""),
                        argv=[expand(part, env) for part in command],
                        env=env,
                        cwd=cwd,
                        log_path=sandbox / f"{container['name']}.log",
                        termination_path=root
                        / container.get("terminationMessagePath", "/dev/termination-log").lstrip("/"),
                        fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
                    )
                )
        except Exception as error:  # noqa: BLE001 - a pod we cannot start fails, the agent does not
            log.warning("cannot start pod", pod=meta["name"], error=str(error))
            self._patch_status(
                meta, {"phase": "Failed", "reason": "NodeAgentStartError", "message": str(error)}
            )
            return None
        run = PodRun(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            restart_policy=spec.get("restartPolicy", "Always"),
            containers=containers,
            grace_seconds=int(spec.get("terminationGracePeriodSeconds", 30)),
        )
        for container_run in containers:
            container_run.start()
        self.pods[meta["uid"]] = run
        log.info(
            "started pod",
            namespace=run.namespace,
            pod=run.name,
            pids=[c.process.pid for c in containers if c.process],
        )
        self._report(run, start_time=True)
        return run

    def _fail_orphan(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        now = _now()
        statuses = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "Error", "finishedAt": now}},
            }
            for c in pod["spec"]["containers"]
        ]
        self._patch_status(
            meta,
            {
                "phase": "Failed",
                "reason": "NodeAgentRestarted",
                "message": "the node agent restarted and the pod's processes are gone",
                "containerStatuses": statuses,
            },
        )

    def _begin_termination(self, pod: dict[str, Any], run: PodRun | None) -> None:
        meta = pod["metadata"]
        if run is None or run.all_exited():
            self._final_delete(meta)
            if run is not None:
                self.pods.pop(run.uid, None)
            return
        if run.terminating_since is None:
            run.terminating_since = time.monotonic()
            grace = meta.get("deletionGracePeriodSeconds")
            if grace is not None:
                run.grace_seconds = int(grace)
            log.info("terminating pod", pod=run.name, grace=run.grace_seconds)
            run.signal(signal.SIGTERM)

    def _final_delete(self, meta: dict[str, Any]) -> None:
        try:
            self.api.delete_namespaced_pod(
                meta["name"],
                meta["namespace"],
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=meta["uid"])
                ),
            )
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    def tick(self) -> None:
        """Reaps exited processes, restarts per restartPolicy, enforces grace periods, reports status."""
        for run in list(self.pods.values()):
            changed = False
            for container in run.containers:
                if container.poll():
                    changed = True
                    log.info(
                        "container exited", pod=run.name, container=container.name, code=container.exit_code
                    )
                    restart = run.terminating_since is None and (
                        run.restart_policy == "Always"
                        or (run.restart_policy == "OnFailure" and container.exit_code != 0)
                    )
                    if restart:
                        # Crash-loop backoff, as kubelet does, capped low for tests.
                        container.restart_at = time.monotonic() + min(2**container.restarts, 10)
                if (
                    container.exit_code is not None
                    and container.restart_at
                    and time.monotonic() >= container.restart_at
                ):
                    container.restart_at = 0.0
                    container.restarts += 1
                    container.start()
                    changed = True
            if run.terminating_since is not None:
                if time.monotonic() - run.terminating_since > run.grace_seconds:
                    run.signal(signal.SIGKILL)
                if run.all_exited():
                    self._report(run)
                    self._final_delete({"name": run.name, "namespace": run.namespace, "uid": run.uid})
                    self.pods.pop(run.uid, None)
                continue
            if changed or run.unreported:
                self._report(run, start_time=run.start_unreported)

    def _report(self, run: PodRun, *, start_time: bool = False) -> None:
        phase = run.phase()
        if any(c.restart_at for c in run.containers):
            phase = "Running"
        ready = (
            "True"
            if phase == "Running" and not any(c.exit_code is not None for c in run.containers)
            else "False"
        )
        now = _now()
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                {"type": "Ready", "status": ready, "lastTransitionTime": now},
            ],
            "containerStatuses": [c.status() for c in run.containers],
        }
        if start_time:
            status["startTime"] = now
        sent = self._patch_status({"name": run.name, "namespace": run.namespace, "uid": run.uid}, status)
        run.unreported, run.start_unreported = not sent, start_time and not sent
        run.reported_phase = phase

    def _patch_status(self, meta: dict[str, Any], status: dict[str, Any]) -> bool:
        """False if the API server did not take it (down, or refusing): the caller sends it again."""
        try:
            self.api.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status})
        except ApiException as error:
            if error.status == 404:
                return True  # the pod is gone: nothing left to report
            log.warning("status update failed", pod=meta["name"], error=error.reason)
            return bool(error.status < 500 and error.status != 429)  # a refusal is final; an overload is not
        except Exception as error:  # noqa: BLE001 - connection refused while the API server restarts
            log.warning("status update failed", pod=meta["name"], error=str(error))
            return False
        return True

    # -- main loop ------------------------------------------------------------------------------------
    def run(self) -> None:
        self.logs.start()
        self.register()
        threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True).start()
        threading.Thread(target=self._watch_loop, name="watch", daemon=True).start()
        log.info("node agent ready", node=self.node_name)
        while not self.stopping.is_set():
            try:
                kind, pod = self.events.get(timeout=0.1)
                self.handle(kind, pod)
            except queue.Empty:
                pass
            except Exception as error:
                log.exception("pod event failed", error=str(error))
            try:
                self.tick()
            except Exception as error:
                log.exception("tick failed", error=str(error))
        for run in self.pods.values():
            run.signal(signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", default=AGENT_SHAPE.name)
    parser.add_argument("--work-dir", required=True, type=Path)
    parser.add_argument("--label", action="append", default=[], help="key=value, a node label (repeatable)")
    parser.add_argument("--gpus", type=int, default=0, help="nvidia.com/gpu capacity (the node is tainted)")
    parser.add_argument("--gpu-product", default=None, help="the nvidia.com/gpu.product label")
    args = parser.parse_args(argv)
    shape = NodeShape(
        args.node_name,
        cpu=AGENT_SHAPE.cpu,
        memory=AGENT_SHAPE.memory,
        gpus=args.gpus,
        gpu_product=args.gpu_product,
        labels=dict(label.split("=", 1) for label in args.label),
    )
    config.load_kube_config(args.kubeconfig)
    api = client.CoreV1Api()
    host_port = api.api_client.configuration.host.rsplit("//", 1)[1]
    host, _, port = host_port.partition(":")
    agent = NodeAgent(api, args.node_name, args.work_dir, host, int(port or 443), shape=shape)
    signal.signal(signal.SIGTERM, lambda *_: agent.stopping.set())
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
