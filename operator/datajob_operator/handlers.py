"""kopf wiring: one long-lived reconcile loop (a kopf daemon) per DataJob. No decisions are made here."""

from __future__ import annotations

import threading
from typing import Any

import kopf
import structlog
from kubernetes import client, config

from .controller import JobController, JobRuntime
from .kube import GROUP, PLURAL, VERSION, JobClient, NodeDirectory

log = structlog.get_logger("datajob.operator")

ERROR_BACKOFF_SECONDS = 5.0
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
    settings.posting.level = 30  # kopf's own events: warnings and errors only; the controller posts the rest


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
def run_job(*, name: str, namespace: str | None, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Reconciles the job about once a second until it is deleted or the operator stops.

    Level-triggered: each pass observes everything afresh, so a missed event or an operator restart costs
    at most one pass.
    """
    assert namespace is not None  # DataJob is namespaced
    api = api_client()
    controller = JobController(JobClient(api, namespace, name), JobRuntime(), node_directory())
    while not stopped:
        try:
            delay = controller.reconcile_once()
        except Exception as error:  # one job's trouble must not stop its loop or the others
            log.exception("reconcile failed; retrying", namespace=namespace, job=name, error=str(error))
            delay = ERROR_BACKOFF_SECONDS
        stopped.wait(delay)
