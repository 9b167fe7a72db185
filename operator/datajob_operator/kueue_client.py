"""Kueue API access for one DataJob: its Workload, the admitted ResourceFlavors, its priority (see
datajob_core.cluster.queueing for what they mean)."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from datajob_core.cluster.queueing import GROUP, PLURAL, PRIORITY_LABEL, VERSION, PriorityRef

from .kube import ConflictError


class KueueClient:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)
        self.scheduling = client.SchedulingV1Api(api)

    def read_workload(self, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            )
            return found
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def create_workload(self, manifest: dict[str, Any]) -> None:
        try:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, manifest)
        except ApiException as error:
            if error.status != 409:  # made by an earlier pass; the cache has not shown it yet
                raise

    def delete_workload(self, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as error:
            if error.status != 404:
                raise

    def patch_workload(self, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, patch)

    def set_active(self, name: str, active: bool) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": {"active": active}}
        )

    def replace_workload_status(self, workload: dict[str, Any], status: dict[str, Any]) -> None:
        """Only if the Workload is unchanged since it was read (Kueue writes it too)."""
        body = {**workload, "status": status}
        try:
            self.custom.replace_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURAL, workload["metadata"]["name"], body
            )
        except ApiException as error:
            if error.status == 409:
                raise ConflictError(str(error.reason)) from error
            raise

    def workloads(self) -> list[dict[str, Any]]:
        """Every Workload of the namespace (for a queue position)."""
        listing: dict[str, Any] = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL
        )
        return list(listing.get("items") or [])

    def flavors(self, names: tuple[str, ...]) -> list[dict[str, Any]]:
        found = []
        for name in names:
            try:
                flavor: dict[str, Any] = self.custom.get_cluster_custom_object(
                    GROUP, VERSION, "resourceflavors", name
                )
            except ApiException as error:
                if error.status == 404:
                    continue
                raise
            found.append(flavor)
        return found

    def priority(self, job: dict[str, Any]) -> PriorityRef | None:
        """A Kueue WorkloadPriorityClass (label kueue.x-k8s.io/priority-class) or the pods' PriorityClass
        (spec.priorityClassName), with its value, as Kueue's integrations resolve it."""
        label = (job["metadata"].get("labels") or {}).get(PRIORITY_LABEL)
        if label:
            found: dict[str, Any] = self.custom.get_cluster_custom_object(
                GROUP, VERSION, "workloadpriorityclasses", label
            )
            return PriorityRef(GROUP, "WorkloadPriorityClass", label, int(found.get("value", 0)))
        name = job["spec"].get("priorityClassName")
        if name:
            pc: Any = self.scheduling.read_priority_class(name)
            return PriorityRef("scheduling.k8s.io", "PriorityClass", name, int(pc.value or 0))
        return None
