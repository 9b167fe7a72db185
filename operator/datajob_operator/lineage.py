"""OpenLineage run events for DataJobs, sent by the operator with the official openlineage-python client.

A job's run is its UID (a UUID, stable across operator restarts). The operator sends START when the job
first runs, COMPLETE when it succeeds and FAIL (with the reason, as an errorMessage facet) when it fails,
each with the job's input and output datasets, to the HTTP endpoint the administrator configured
(``--openlineage-url``; the chart's ``openlineage.url``).

At least once per transition, never blocking a pass: events go out from one background thread, and what
was sent is recorded on the DataJob (annotation ``datajob.dev/lineage``) only after the endpoint took
it. A pass that finds a transition not yet recorded sends it again (after an operator restart, or when
the endpoint was down: at most every RETRY_SECONDS per job), so a consumer may see an event twice and
should key on (runId, eventType), as OpenLineage consumers do.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import structlog
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import error_message_run, job_type_job, processing_engine_run
from openlineage.client.transport.http import HttpConfig, HttpTransport

log = structlog.get_logger("datajob.lineage")

ANNOTATION = "datajob.dev/lineage"  # the event types the endpoint took, e.g. "START,COMPLETE"
RETRY_SECONDS = 30.0
PRODUCER = "https://github.com/datajob-operator/datajob-operator"


def due(phase: str, sent: frozenset[str]) -> list[str]:
    """The event types a job in ``phase`` still owes, in order (a job that failed before it ran still
    gets its START first: OpenLineage runs begin with one)."""
    wanted = {"Running": ["START"], "Succeeded": ["START", "COMPLETE"], "Failed": ["START", "FAIL"]}
    return [kind for kind in wanted.get(phase, []) if kind not in sent]


def sent_of(job: dict[str, Any]) -> frozenset[str]:
    raw = ((job.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION, "")
    return frozenset(part for part in raw.split(",") if part)


def dataset(uri: str) -> tuple[str, str]:
    """(namespace, name) by OpenLineage's naming: ``s3://bucket`` and the key prefix; ``file`` and the path.
    A glob's pattern part is dropped: the dataset is the directory or prefix it lists."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, rest = "file", uri
    path = rest if scheme == "file" else rest.partition("/")[2]
    location = "file" if scheme == "file" else f"{scheme}://{rest.partition('/')[0]}"
    kept = []
    for part in path.split("/"):
        if any(c in part for c in "*?["):
            break
        kept.append(part)
    name = "/".join(kept).rstrip("/") or "/"
    return location, name


def run_event(job: dict[str, Any], kind: str, namespace: str, now: datetime.datetime) -> RunEvent:
    """The event, timed when it happened (the status's startTime or completionTime), not when it is sent:
    a retried send, or one after an operator restart, tells the same time."""
    meta, spec, status = job["metadata"], job.get("spec") or {}, job.get("status") or {}
    happened = status.get("startTime") if kind == "START" else status.get("completionTime")
    inputs = sorted({dataset(uri) for uri in (spec.get("input") or {}).get("uris") or []})
    output = (spec.get("output") or {}).get("uri")
    run_facets: dict[str, Any] = {
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=_version(),
            name="datajob-operator",
            openlineageAdapterVersion=_version("openlineage-python"),
        )
    }
    if kind == "FAIL":
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=str(status.get("message") or "failed"), programmingLanguage="PYTHON"
        )
    return RunEvent(
        eventType=RunState[kind],
        eventTime=str(happened or now.isoformat()),
        run=Run(runId=meta["uid"], facets=run_facets),
        job=Job(
            namespace=namespace,
            name=f"{meta['namespace']}.{meta['name']}",
            facets={
                "jobType": job_type_job.JobTypeJobFacet(
                    processingType="BATCH", integration="DATAJOB", jobType="DataJob"
                )
            },
        ),
        inputs=[InputDataset(namespace=ns, name=name) for ns, name in inputs],
        outputs=[
            OutputDataset(namespace=ns, name=name) for ns, name in ([dataset(output)] if output else [])
        ],
        producer=PRODUCER,
    )


def _version(package: str = "datajob-operator") -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class LineageConfig:
    url: str = ""  # empty: no lineage
    namespace: str = "datajob"  # the OpenLineage job namespace
    endpoint: str = "api/v1/lineage"
    timeout_seconds: float = 5.0

    @property
    def enabled(self) -> bool:
        return bool(self.url)


class LineageEmitter:
    """One per operator process: sends due events from one thread, then records them on the job."""

    def __init__(self, config: LineageConfig) -> None:
        self.config = config
        # The transport alone, not OpenLineageClient: the client also reads openlineage.yml, ~/.openlineage
        # and OPENLINEAGE_* variables, which could filter events (then recorded as sent), disable them or
        # add facets with the operator's environment. The transport raises on anything but 2xx.
        self.transport = HttpTransport(
            HttpConfig(
                url=config.url.rstrip("/") + "/",  # a base with a path keeps it: urljoin drops a last segment
                endpoint=config.endpoint,
                timeout=config.timeout_seconds,
                retry={"total": 2, "backoff_factor": 0.5, "allowed_methods": ["POST"]},
            )
        )
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lineage")
        self.lock = threading.Lock()
        self.busy: set[tuple[str, str]] = set()  # jobs with a send in flight
        self.failed_at: dict[tuple[str, str], float] = {}  # jobs whose last send failed, when
        # What this process sent, by job UID: a pass may read the job before the annotation recording it
        # lands, and must not send it again for that.
        self.sent: dict[str, frozenset[str]] = {}

    def owes(self, job: dict[str, Any]) -> bool:
        """Whether ``job`` still has events to send (its TTL deletion waits for them, a while)."""
        sent = sent_of(job) | self.sent.get(str(job["metadata"].get("uid")), frozenset())
        return bool(due(str((job.get("status") or {}).get("phase") or ""), sent))

    def follow(self, job: dict[str, Any], record: Callable[[str], None]) -> None:
        """Sends what ``job`` owes (if anything, and not already on its way); ``record`` writes the
        annotation's new value once the endpoint took the events."""
        meta = job["metadata"]
        if meta.get("deletionTimestamp"):
            return
        sent = sent_of(job) | self.sent.get(str(meta.get("uid")), frozenset())
        kinds = due(str((job.get("status") or {}).get("phase") or ""), sent)
        if not kinds:
            return
        key = (meta["namespace"], meta["name"])
        with self.lock:
            if key in self.busy or time.monotonic() - self.failed_at.get(key, -RETRY_SECONDS) < RETRY_SECONDS:
                return
            self.busy.add(key)
        self.pool.submit(self._send, job, kinds, sent, record, key)

    def _send(
        self,
        job: dict[str, Any],
        kinds: list[str],
        sent: frozenset[str],
        record: Callable[[str], None],
        key: tuple[str, str],
    ) -> None:
        try:
            for kind in kinds:
                now = datetime.datetime.now(datetime.UTC)
                self.transport.emit(run_event(job, kind, self.config.namespace, now))
                sent = sent | {kind}
                with self.lock:
                    uid = str(job["metadata"].get("uid"))
                    self.sent[uid] = self.sent.get(uid, frozenset()) | {kind}
            self.failed_at.pop(key, None)
        except Exception as error:  # noqa: BLE001 - a lineage endpoint down must not touch the job
            log.warning("lineage event not sent; will retry", job=key, error=str(error))
            self.failed_at[key] = time.monotonic()
        finally:
            try:
                if sent != sent_of(job):
                    record(",".join(kind for kind in ("START", "COMPLETE", "FAIL") if kind in sent))
            except Exception as error:  # noqa: BLE001 - recorded next time (the event may go twice)
                log.warning("lineage events sent but not recorded", job=key, error=str(error))
                self.failed_at[key] = time.monotonic()  # not sent again at once
            with self.lock:
                self.busy.discard(key)
