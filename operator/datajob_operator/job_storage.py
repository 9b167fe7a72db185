"""A job's storage as the operator reaches it: credentials from the job's Secret, the storage roots it may
act on (decisions: datajob_core.data.storage_access), claiming the output, and collecting checkpoints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kubernetes.client.rest import ApiException

from datajob_core.api.identity import output_owner
from datajob_core.cluster.reconciler import JobState, Phase
from datajob_core.data import storage_access
from datajob_core.data.locations import ACCESS_KEY, CREDENTIAL_KEYS, SECRET_KEY, StorageConfig, is_remote
from datajob_core.data.storage_access import StorageAccessError, StorageAccessPolicy
from datajob_core.storage import output_identity
from datajob_core.storage.checkpoint_store import CheckpointCollector, CheckpointStore
from datajob_core.storage.stores import Store

from .job_runtime import JobRuntime
from .kube import JobClient


class StorageCredentialsError(Exception):
    """spec.storage.credentialsSecret cannot be used (yet); the pass is retried."""


class JobStorage:
    """Every storage action the operator takes for one job, and with whose identity (docs/threat-model.md)."""

    def __init__(self, jobs: JobClient, runtime: JobRuntime, access: StorageAccessPolicy, log: Any) -> None:
        self.jobs, self.runtime, self.access, self.log = jobs, runtime, access, log

    def credentials_for(self, job: dict[str, Any]) -> tuple[StorageConfig, dict[str, str] | None]:
        """spec.storage and the job's credentials from its Secret (None: the operator's own identity), once
        every location the job names is one the operator may act on for it (storage_access); raises
        StorageAccessError otherwise, before any request is sent."""
        storage = job["spec"].get("storage") or {}
        config = StorageConfig.from_spec(storage)
        credentials, why = self._credentials(storage.get("credentialsSecret"))
        storage_access.check_job(
            self.access,
            self.jobs.namespace,
            job["spec"],
            has_credentials=credentials is not None,
            why_no_credentials=why,
        )
        return config, credentials

    def _credentials(self, secret: str | None) -> tuple[dict[str, str] | None, str]:
        """The job's Secret's AWS keys, or None and why there are none."""
        if not secret:
            return None, "spec.storage.credentialsSecret is not set"
        try:
            credentials = self.jobs.read_secret(secret, CREDENTIAL_KEYS)
        except ApiException as error:
            if error.status != 403:
                raise
            # Installed without access to Secrets (storage.operatorReadsSecrets=false): only the
            # administrator's storage roots are reachable, with the operator's own identity.
            return None, "this operator may not read Secrets (storage.operatorReadsSecrets=false)"
        # Raised, not failed: the Secret may come after the job (as for a pod); ReconcileFailing says so.
        if credentials is None:
            raise StorageCredentialsError(
                f"spec.storage.credentialsSecret: Secret {self.jobs.namespace}/{secret} does not exist"
            )
        missing = [k for k in (ACCESS_KEY, SECRET_KEY) if not credentials.get(k)]
        if missing:
            raise StorageCredentialsError(
                f"spec.storage.credentialsSecret: Secret {self.jobs.namespace}/{secret} has no "
                f"{' or '.join(missing)}"
            )
        return credentials, ""

    def confine(self, path: str, field: str, shown: str | None = "") -> None:
        """A local path the operator touches must stay under a storage root once symlinks are resolved:
        a link inside the job's root must not lead it into another namespace's directory. ``shown``: what
        the refusal may name ("": the path and where it leads; None: neither, for a listed file)."""
        if is_remote(path):
            return
        real = os.path.realpath(path.removeprefix("file://"))
        roots = [os.path.realpath(r) for r in self.access.roots_for(self.jobs.namespace) if not is_remote(r)]
        if any(storage_access.inside(real, root) for root in roots):
            return
        if shown is None:
            raise StorageAccessError(
                field, "a file it matches is, through a symbolic link, outside this namespace's storage roots"
            )
        raise StorageAccessError(
            field, f"{shown or path} resolves to {real}, outside this namespace's storage roots"
        )

    def output_store(self, job: dict[str, Any]) -> Store | None:
        """The job's output as the operator may reach it: an object store (with the job's credentials or,
        under a storage root, its own identity), or a directory mounted into the operator as into the
        workers; None if it cannot see it. Raises StorageAccessError where it may not act."""
        output = (job["spec"].get("output") or {}).get("uri", "")
        if is_remote(output):
            return Store(output, *self.credentials_for(job))
        # A path: no Secret is involved (nor read), only the administrator's roots.
        storage_access.check_location(self.access, self.jobs.namespace, "spec.output.uri", output)
        if not Path(output.removeprefix("file://")).parent.is_dir():
            return None
        self.confine(output, "spec.output.uri")
        return Store(output)

    def claim_output(self, job: dict[str, Any]) -> None:
        """Marks the output as this job's (api.identity.output_owner), or raises OutputInUseError.

        Only where the operator sees the output; workers check every commit record's owner in any case.
        """
        store = self.output_store(job)
        if store is None:
            return
        meta = job["metadata"]
        # Runs that share one output (a batch log, spec.output.resume) are one owner: the spec, not the UID.
        owner = {"job": meta["name"], "namespace": meta.get("namespace"), "id": output_owner(job)}
        output_identity.claim(store, owner, overwrite=bool(job["spec"]["output"].get("overwrite")))

    def collect(self, job: dict[str, Any], state: JobState) -> None:
        """Deletes checkpoint files the just-persisted ledger made redundant (fencing: docs/design.md).

        Best effort: checkpoints left behind are removed by the job commit, so no failure here may keep
        the pass from acting (a Secret gone, a store down, roots changed)."""
        try:
            if self.runtime.collector is None:
                store = self.output_store(job)
                if store is None or not store.exists(""):
                    return  # not reachable from the operator (or nothing written yet): files stay until then
                self.runtime.collector = CheckpointCollector(CheckpointStore(store))
            output = job["spec"]["output"]["uri"]
            # Again each pass before deleting: a worker may have made its output a symbolic link since.
            self.confine(output, "spec.output.uri")
            problem = self.runtime.collector.after_persist(state.ledger)
            if state.phase is Phase.SUCCEEDED:
                self.runtime.collector.store.remove_all()
        except Exception as error:  # noqa: BLE001 - see the docstring
            self.log.warning("not collecting checkpoints", error=str(error))
            return
        if problem:
            self.log.warning(problem)
