"""``python -m datajob_operator``: run the operator (in a pod, or locally against a kubeconfig)."""

from __future__ import annotations

import argparse
import logging
import os
import random
import socket
import sys

import kopf
import structlog
from kopf._core.engines.peering import Identity  # kopf.run takes it but does not re-export the type

from datajob_core.data.storage_access import StorageAccessPolicy

from . import handlers, metrics
from .lineage import LineageConfig, LineageEmitter


def configure_logging(level: str, fmt: str) -> None:
    """One format for kopf's stdlib logs and the operator's structlog events."""
    shared: list[structlog.types.Processor] = [
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def peering_identity() -> Identity:
    """Who this replica is in kopf's peering records: the pod's name when the chart passes it.

    kopf's own default asks the passwd database for the user name (``getpass.getuser()``), which
    raises in an image run as a numeric uid with no passwd entry (the chart runs uid 65532), so the
    operator crash-looped on any cluster. Host name and pid identify a replica as well, without it.
    """
    for variable in ("POD_ID", "POD_NAME"):
        if os.environ.get(variable):
            return Identity(os.environ[variable])
    return Identity(f"{socket.gethostname()}-{os.getpid()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="datajob-operator", description=__doc__)
    parser.add_argument("--namespace", "-n", action="append", default=[], help="watch only these namespaces")
    parser.add_argument(
        "--liveness", default=None, help="serve kopf's liveness probe, e.g. http://0.0.0.0:8081/healthz"
    )
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port"
    )
    parser.add_argument(
        "--peering",
        default=None,
        help="kopf peering name: run as one of several replicas, only one acting (default: standalone)",
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority; the highest acts. Default: random, so replicas never tie (a tie freezes all)",
    )
    parser.add_argument(
        "--peering-lifetime",
        type=int,
        default=30,
        help="seconds after which a silent (killed) peer is presumed dead and a standby takes over",
    )
    parser.add_argument(
        "--worker-account-template",
        default=None,
        help="YAML/JSON file merged into every job's worker ServiceAccount (annotations, imagePullSecrets)",
    )
    parser.add_argument(
        "--reconcile-threads",
        type=int,
        default=4,
        help="threads running reconcile passes, shared by all jobs (passes of one job never overlap)",
    )
    parser.add_argument(
        "--storage-root",
        action="append",
        default=[],
        metavar="ROOT",
        help="a directory (mounted into the operator) or object-store prefix where the operator may act "
        "with its own identity for a job: list input, claim output, delete checkpoints. '{namespace}' "
        "stands for the job's namespace, e.g. /data/{namespace}. Repeatable; default none",
    )
    parser.add_argument(
        "--storage-endpoint",
        action="append",
        default=[],
        metavar="PATTERN",
        help="an S3 endpoint the operator may call for a job's spec.storage.endpoint: scheme://host:port, "
        "matched exactly but for a leading '*.' in the host (one label) and a port '*', e.g. "
        "http://minio.storage.svc:9000. Repeatable; default none",
    )
    parser.add_argument(
        "--openlineage-url",
        default="",
        metavar="URL",
        help="send OpenLineage run events (START, COMPLETE, FAIL) to this HTTP endpoint, e.g. "
        "http://marquez:5000 (the path api/v1/lineage is added); default: none",
    )
    parser.add_argument(
        "--openlineage-namespace", default="datajob", help="the OpenLineage job namespace of DataJobs"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    parser.add_argument("--verbose", action="store_true", help="same as --log-level debug")
    args = parser.parse_args(argv)
    configure_logging("debug" if args.verbose else args.log_level, args.log_format)
    if args.worker_account_template:
        handlers.OPTIONS.worker_account = handlers.load_account_template(args.worker_account_template)
    handlers.OPTIONS.peering_lifetime = args.peering_lifetime
    handlers.OPTIONS.namespaces = list(args.namespace)
    handlers.OPTIONS.reconcile_threads = args.reconcile_threads
    handlers.OPTIONS.storage_access = StorageAccessPolicy(
        roots=tuple(args.storage_root), endpoints=tuple(args.storage_endpoint)
    )
    if args.openlineage_url:
        handlers.OPTIONS.lineage = LineageEmitter(
            LineageConfig(url=args.openlineage_url, namespace=args.openlineage_namespace)
        )
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    kopf.run(
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=args.priority if args.priority is not None else random.SystemRandom().randint(1, 2**31),
        namespaces=list(args.namespace),
        clusterwide=not args.namespace,
        liveness_endpoint=args.liveness,
        identity=peering_identity(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
