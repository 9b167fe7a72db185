"""kopf wiring: one long-lived reconcile loop (a kopf daemon) per DataJob. No decisions are made here."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import kopf
import structlog
import yaml
from kubernetes import client, config

from . import metrics
from .controller import JobController, JobRuntime
from .kube import GROUP, PLURAL, VERSION, JobClient, NodeDirectory

log = structlog.get_logger("datajob.operator")

ERROR_BACKOFF_SECONDS = 5.0


@dataclass
class OperatorOptions:
    """Process-wide settings from the command line (see __main__)."""

    peering_lifetime: int = 30
    worker_account: dict[str, Any] = field(default_factory=dict)


OPTIONS = OperatorOptions()


def load_account_template(path: str) -> dict[str, Any]:
    """The chart's worker ServiceAccount template: only metadata labels/annotations and imagePullSecrets."""
    with open(path) as handle:
        template = yaml.safe_load(handle) or {}
    allowed = {"metadata", "imagePullSecrets", "automountServiceAccountToken"}
    unknown = set(template) - allowed
    if unknown:
        raise SystemExit(f"{path}: unsupported keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    return dict(template)


_api: client.ApiClient | None = None
_api_lock = threading.RLock()


def api_client() -> client.ApiClient:
    global _api  # noqa: PLW0603 - one connection pool for all job threads
    with _api_lock:
        if _api is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            _api = client.ApiClient()
        return _api


_nodes: NodeDirectory | None = None


def node_directory() -> NodeDirectory:
    global _nodes  # noqa: PLW0603 - one node listing shared by all job threads
    with _api_lock:
        if _nodes is None:
            _nodes = NodeDirectory(_api or api_client())
        return _nodes


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    prefix = "datajob.dev"
    settings.persistence.finalizer = f"{prefix}/operator"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    settings.watching.server_timeout = 120
    settings.peering.lifetime = OPTIONS.peering_lifetime
    settings.posting.level = 30  # kopf's own events: warnings and errors only; the controller posts the rest


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
def run_job(*, name: str, namespace: str | None, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Reconciles the job about once a second until it is deleted or the operator stops.

    Level-triggered: each pass observes everything afresh, so a missed event or an operator restart costs
    at most one pass.
    """
    assert namespace is not None  # DataJob is namespaced
    api = api_client()
    controller = JobController(
        JobClient(api, namespace, name), JobRuntime(), node_directory(), worker_account=OPTIONS.worker_account
    )
    while not stopped:
        started = time.monotonic()
        try:
            delay = controller.reconcile_once()
            metrics.PASSES.labels("ok").inc()
        except Exception as error:  # one job's trouble must not stop its loop or the others
            log.exception("reconcile failed; retrying", namespace=namespace, job=name, error=str(error))
            metrics.PASSES.labels("error").inc()
            delay = ERROR_BACKOFF_SECONDS
            try:
                controller.record_error(error)
            except Exception as report_error:  # noqa: BLE001 - the API may be what is failing
                log.warning("cannot record the error in the status", error=str(report_error))
        metrics.PASS_SECONDS.observe(time.monotonic() - started)
        if controller.last_status is not None:
            metrics.observe(namespace, name, controller.last_status)
        stopped.wait(delay)
    if stopped.reason and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED:
        metrics.forget(namespace, name)
