"""DataJobs on a cluster: submit, wait with a progress callback, read status, events, result and report.

The client talks to the API server with the caller's kubeconfig (or the pod's service account), like
kubectl. The output is read with the job's credentials Secret when the caller may read it, else with the
caller's own credentials (AWS_* variables, ~/.aws), as ``kubectl datajob report`` does: never anyone else's.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from datajob_core.api.crd import PLURAL
from datajob_core.api.models import GROUP, VERSION, DataJob
from datajob_core.data.locations import CREDENTIAL_KEYS, StorageConfig, is_remote
from datajob_core.data.storage_access import own_credentials_refused
from datajob_core.report import files as report_files
from datajob_core.report import page as report_page
from datajob_core.storage.committer import RESULT, Committer
from datajob_core.storage.stores import StorageError, Store

from .errors import DataJobError, JobFailedError, JobRejectedError, JobTimeoutError
from .validation import validated

FINISHED = ("Succeeded", "Failed")


@dataclass(frozen=True)
class JobStatus:
    """A DataJob's status, as the operator last wrote it (``raw`` is all of it)."""

    phase: str
    shards_total: int = 0
    shards_succeeded: int = 0
    shards_failed: int = 0
    records: int = 0
    restarts: int = 0
    progress_percent: int | None = None
    records_per_second: int | None = None
    eta: str | None = None
    message: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED

    @classmethod
    def of(cls, job: dict[str, Any]) -> JobStatus:
        status = job.get("status") or {}
        shards = status.get("shards") or {}
        progress = status.get("progress") or {}
        return cls(
            phase=str(status.get("phase") or "Pending"),
            shards_total=int(shards.get("total") or 0),
            shards_succeeded=int(shards.get("succeeded") or 0),
            shards_failed=int(shards.get("failed") or 0),
            records=int((status.get("processed") or {}).get("records") or 0),
            restarts=int(status.get("restarts") or 0),
            progress_percent=progress.get("percent"),
            records_per_second=progress.get("recordsPerSecond"),
            eta=progress.get("eta"),
            message=str(status.get("message") or ""),
            raw=status,
        )


@dataclass(frozen=True)
class JobEvent:
    reason: str
    note: str
    type: str
    time: str  # ISO 8601


class Client:
    def __init__(self, api: client.ApiClient, namespace: str = "default") -> None:
        self.api = api
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.events = client.EventsV1Api(api)

    @classmethod
    def from_kubeconfig(
        cls, path: str | None = None, *, context: str | None = None, namespace: str | None = None
    ) -> Client:
        """As kubectl: KUBECONFIG or ~/.kube/config, the context's namespace unless one is given."""
        api = config.new_client_from_config(config_file=path, context=context)
        contexts, current = config.list_kube_config_contexts(config_file=path)
        chosen = next((c for c in contexts if c["name"] == context), current) if context else current
        return cls(api, namespace or (chosen.get("context") or {}).get("namespace") or "default")

    @classmethod
    def in_cluster(cls, namespace: str | None = None) -> Client:
        """In a pod, with its service account (and its namespace unless one is given)."""
        config.load_incluster_config()
        if namespace is None:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as file:
                namespace = file.read().strip()
        return cls(client.ApiClient(), namespace)

    def submit(self, job: DataJob | dict[str, Any]) -> JobHandle:
        """Creates the DataJob; JobRejectedError naming the fields if the spec is invalid."""
        manifest = validated(job)
        name = (manifest.get("metadata") or {}).get("name")
        if not name:
            raise JobRejectedError("metadata.name: a DataJob needs a name", ["metadata.name"])
        try:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, manifest)
        except ApiException as error:
            raise _rejected(error) from None
        return JobHandle(self, str(name))

    def job(self, name: str) -> JobHandle:
        handle = JobHandle(self, name)
        handle.get()  # DataJobError if there is none
        return handle


class JobHandle:
    """One DataJob on the cluster."""

    def __init__(self, owner: Client, name: str) -> None:
        self.client = owner
        self.name = name
        self.namespace = owner.namespace

    def get(self) -> dict[str, Any]:
        try:
            job: dict[str, Any] = self.client.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            )
        except ApiException as error:
            if error.status == 404:
                raise DataJobError(
                    f'datajob "{self.name}" not found in namespace "{self.namespace}"'
                ) from None
            raise
        return job

    def status(self) -> JobStatus:
        return JobStatus.of(self.get())

    def events(self) -> list[JobEvent]:
        """The job's events, oldest first (the API server keeps them about an hour)."""
        response = self.client.events.list_namespaced_event(
            self.namespace,
            field_selector=f"regarding.name={self.name},regarding.kind=DataJob",
            _preload_content=False,  # the client's models refuse old-style events without an eventTime
        )
        items = json.loads(response.data).get("items") or []
        uid = self.get()["metadata"].get("uid")  # not an earlier DataJob of the same name's
        items = [i for i in items if (i.get("regarding") or {}).get("uid") in (None, uid)]
        events = [
            JobEvent(
                reason=str(item.get("reason") or ""),
                note=str(item.get("note") or ""),
                type=str(item.get("type") or ""),
                time=str(
                    item.get("eventTime")
                    or item.get("deprecatedLastTimestamp")
                    or (item.get("metadata") or {}).get("creationTimestamp")
                    or ""
                ),
            )
            for item in items
        ]
        return sorted(events, key=lambda e: e.time)

    def wait(
        self,
        timeout: float | None = None,
        *,
        on_progress: Callable[[JobStatus], None] | None = None,
        poll_seconds: float = 1.0,
        raise_on_failure: bool = True,
    ) -> JobStatus:
        """Until the job succeeds (its status) or fails (JobFailedError, unless ``raise_on_failure`` is
        False); ``on_progress`` is called with each new status. JobTimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: JobStatus | None = None
        while True:
            try:
                now = self.status()
            except (ApiException, urllib3.exceptions.HTTPError) as error:
                if (
                    isinstance(error, ApiException)
                    and error.status
                    and error.status < 500
                    and error.status != 429
                ):
                    raise DataJobError(f"datajob {self.name}: {error.status} {error.reason}") from None
                if deadline is not None and time.monotonic() >= deadline:
                    raise JobTimeoutError(
                        f"datajob {self.name}: the API server did not answer ({error})"
                    ) from None
                time.sleep(poll_seconds)  # the API server is away for a moment: keep waiting
                continue
            if on_progress is not None and now != last:
                on_progress(now)
            last = now
            if now.phase == "Succeeded" or (now.phase == "Failed" and not raise_on_failure):
                return now
            if now.phase == "Failed":
                raise JobFailedError(f"datajob {self.name} failed: {now.message}", now)
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeoutError(f"datajob {self.name} is still {now.phase} after {timeout}s")
            time.sleep(poll_seconds)

    def result(self, *, use_my_credentials: bool = False) -> bytes:
        """The merged ``result`` the job commit published (DataJobError before the job succeeded). Read with
        the job's Secret; with your own credentials only if you say so (see ``_store``)."""
        job = self.get()
        phase = JobStatus.of(job).phase
        if phase != "Succeeded":
            raise DataJobError(f"datajob {self.name} is {phase}: it has published no result")
        store = self._store(job, use_my_credentials)
        try:
            published = Committer(store, job["metadata"].get("uid")).published()
            if published is None:  # the output holds another job's publication, or none
                raise DataJobError(f"{store.url} holds no result published by datajob {self.name}")
            return store.read_bytes(RESULT)
        except (OSError, StorageError) as error:
            raise DataJobError(f"cannot read the result of datajob {self.name}: {error}") from error

    def report(self, *, use_my_credentials: bool = False) -> str:
        """The run report (HTML), drawn now from the job's output, as `kubectl datajob report` draws it."""
        job = self.get()
        status = JobStatus.of(job)
        summary = {
            "phase": status.phase,
            "records committed": f"{status.records:,}",
            "restarts": status.restarts,
        }
        try:
            history = report_files.history_of(
                self._store(job, use_my_credentials),
                job["metadata"].get("uid"),
                self.name,
                finished=status.phase == "Failed",
                summary=summary,
            )
        except (OSError, StorageError) as error:
            raise DataJobError(f"cannot read the output of datajob {self.name}: {error}") from error
        return report_page.render(history, {"metadata": {"name": self.name}, "spec": job.get("spec") or {}})

    def delete(self) -> None:
        self.client.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)

    def _store(self, job: dict[str, Any], use_my_credentials: bool) -> Store:
        """The output, read with the job's Secret when you may read it; with your own credentials only
        where the job relies on the ambient identity too, or when you say so (the location and endpoint
        are the job author's choice: datajob_core.data.storage_access.own_credentials_refused)."""
        spec = job.get("spec") or {}
        storage = spec.get("storage") or {}
        credentials = None
        if storage.get("credentialsSecret"):
            credentials = self._secret(storage["credentialsSecret"])
        refused = own_credentials_refused(storage, credentials is not None, use_my_credentials)
        if refused:
            raise DataJobError(refused.replace("--use-my-credentials", "use_my_credentials=True"))
        uri = (spec.get("output") or {}).get("uri", "")
        if not is_remote(uri) and not os.path.isdir(uri):
            raise DataJobError(f"the output {uri} is a path on the cluster's volumes, not on this machine")
        try:
            return Store(uri, StorageConfig.from_spec(storage), credentials)
        except (OSError, StorageError, ValueError) as error:
            raise DataJobError(f"cannot reach the output {uri}: {error}") from error

    def _secret(self, name: str) -> dict[str, str] | None:
        try:
            found = self.client.core.read_namespaced_secret(name, self.namespace)
        except ApiException as error:
            if error.status in (403, 404):
                return None  # the caller's own credentials, then
            raise
        data = found.data or {}
        return {k: base64.b64decode(data[k]).decode() for k in CREDENTIAL_KEYS if k in data} or None


def _rejected(error: ApiException) -> DataJobError:
    """The API server's refusal as a typed error: 422 (admission, naming the fields) or 409 (name taken)."""
    try:
        body = json.loads(error.body or "{}")
    except ValueError:
        body = {}
    message = str(body.get("message") or error.reason)
    if error.status == 422:
        causes = (body.get("details") or {}).get("causes") or []
        return JobRejectedError(message, [str(c.get("field")) for c in causes if c.get("field")])
    if error.status == 409:
        return DataJobError(message)
    return DataJobError(f"{error.status} {error.reason}: {message}")
