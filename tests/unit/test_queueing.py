"""Reading and writing a DataJob's Kueue Workload, as Kueue's job integrations do (pure)."""

from __future__ import annotations

from typing import Any

from datajob_core.cluster.queueing import (
    PriorityRef,
    admission_of,
    adoption,
    deactivated_on_dispatch,
    dispatched_by_multikueue,
    finished_status,
    flavor_placement,
    needs_new_workload,
    queue_name,
    queue_position,
    released_status,
    workload_manifest,
    workload_name_of,
)

JOB: dict[str, Any] = {
    "metadata": {"name": "etl", "labels": {"kueue.x-k8s.io/queue-name": "team-a"}},
    "spec": {"workers": 4, "minWorkers": 2},
}
POD = {"spec": {"containers": [{"name": "worker", "resources": {"requests": {"cpu": "1"}}}], "nodeName": "x"}}


def workload(
    *conditions: tuple[str, str, str], admission: dict[str, Any] | None = None, **meta: Any
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "conditions": [
            {
                "type": t,
                "status": s,
                "reason": r,
                "message": f"{t} {r}",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
            for t, s, r in conditions
        ]
    }
    if admission:
        status["admission"] = admission
    return {
        "metadata": {"name": meta.get("name", "datajob-etl"), "generation": 1, **meta},
        "spec": {"queueName": "team-a"},
        "status": status,
    }


ADMISSION = {
    "clusterQueue": "cq",
    "podSetAssignments": [{"name": "workers", "count": 3, "flavors": {"cpu": "spot", "memory": "spot"}}],
}


def test_the_workload_has_one_pod_set_of_worker_pods_with_priority_and_partial_admission() -> None:
    assert queue_name(JOB) == "team-a" and queue_name({"metadata": {}}) is None
    manifest = workload_manifest(
        JOB,
        POD,
        labels={"datajob.dev/job": "etl"},
        owner={"uid": "u"},
        priority=PriorityRef("kueue.x-k8s.io", "WorkloadPriorityClass", "high", 100),
    )
    [pod_set] = manifest["spec"]["podSets"]
    assert (pod_set["name"], pod_set["count"], pod_set["minCount"]) == ("workers", 4, 2)
    assert "nodeName" not in pod_set["template"]["spec"]
    assert manifest["spec"]["queueName"] == "team-a" and manifest["spec"]["priority"] == 100
    assert not needs_new_workload(manifest, JOB)
    assert needs_new_workload(manifest, {**JOB, "spec": {"workers": 5}})
    assert needs_new_workload(
        manifest, {**JOB, "metadata": {"name": "etl", "labels": {"kueue.x-k8s.io/queue-name": "b"}}}
    )


def test_admission_eviction_and_waiting_are_read_from_the_workload() -> None:
    assert not admission_of(None, 4).admitted
    waiting = admission_of(workload(("QuotaReserved", "False", "Pending")), 4)
    assert not waiting.admitted and waiting.reason == "Pending" and "QuotaReserved" in waiting.message
    admitted = admission_of(
        workload(
            ("QuotaReserved", "True", "QuotaReserved"), ("Admitted", "True", "Admitted"), admission=ADMISSION
        ),
        4,
    )
    assert admitted.admitted and admitted.workers == 3 and admitted.flavors == ("spot",)
    evicted = admission_of(
        workload(("Admitted", "True", "Admitted"), ("Evicted", "True", "Preempted"), admission=ADMISSION), 4
    )
    assert evicted.evicted and not evicted.admitted and "Preempted" in evicted.message


def test_releasing_an_evicted_workload_clears_its_admission_and_requeues_it() -> None:
    evicted = workload(
        ("Admitted", "True", "Admitted"),
        ("QuotaReserved", "True", "QuotaReserved"),
        ("Evicted", "True", "Preempted"),
        admission=ADMISSION,
    )
    status = released_status(evicted, "2026-01-02T00:00:00Z")
    kinds = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert "admission" not in status
    assert kinds["QuotaReserved"] == ("False", "Pending") and kinds["Admitted"][0] == "False"
    assert kinds["Requeued"] == ("True", "Preempted")
    finished = finished_status(evicted, True, "done", "2026-01-02T00:00:00Z")
    assert {c["type"]: c["status"] for c in finished["conditions"]}["Finished"] == "True"


def test_queue_position_orders_by_priority_then_age_and_flavors_place_pods() -> None:
    def pending(name: str, priority: int, created: str) -> dict[str, Any]:
        w = workload(("QuotaReserved", "False", "Pending"), name=name, creationTimestamp=created)
        w["spec"]["priority"] = priority
        return w

    a, b, c = (
        pending("a", 0, "2026-01-01T00:00:01Z"),
        pending("b", 10, "2026-01-01T00:00:02Z"),
        pending("c", 0, "2026-01-01T00:00:00Z"),
    )
    running = workload(("QuotaReserved", "True", "QuotaReserved"), name="r")
    assert queue_position(a, [a, b, c, running]) == (3, 3)
    assert queue_position(b, [a, b, c, running]) == (1, 3)
    assert queue_position(running, [a, running]) is None
    selector, tolerations = flavor_placement(
        [{"spec": {"nodeLabels": {"pool": "spot"}, "tolerations": [{"key": "spot", "operator": "Exists"}]}}]
    )
    assert selector == {"pool": "spot"} and tolerations == [{"key": "spot", "operator": "Exists"}]


def test_a_worker_cluster_copy_uses_the_workload_multikueue_made_and_adopts_it() -> None:
    copy = {"metadata": {"name": "etl", "labels": {"kueue.x-k8s.io/prebuilt-workload-name": "datajob-etl-x"}}}
    assert workload_name_of(copy) == "datajob-etl-x"
    assert workload_name_of({"metadata": {"name": "etl"}}) == "datajob-etl"
    owner = {
        "apiVersion": "datajob.dev/v1alpha1",
        "kind": "DataJob",
        "name": "etl",
        "uid": "u1",
        "controller": True,
    }
    patch = adoption({"metadata": {"name": "datajob-etl-x"}}, owner)
    assert patch == {"metadata": {"ownerReferences": [owner], "labels": {"kueue.x-k8s.io/job-uid": "u1"}}}
    assert adoption({"metadata": {"ownerReferences": [owner]}}, owner) is None
    theirs = {**owner, "uid": "other"}
    assert adoption({"metadata": {"ownerReferences": [theirs]}}, owner) is None  # never taken over


def test_only_the_multikueue_managed_copy_is_dispatched() -> None:
    assert dispatched_by_multikueue({"spec": {"managedBy": "kueue.x-k8s.io/multikueue"}})
    assert not dispatched_by_multikueue({"spec": {"managedBy": "datajob.dev/operator"}})
    assert not dispatched_by_multikueue({"spec": {}})


def _worker_copy(evicted_at: str, reserved_at: str, reason: str) -> dict[str, Any]:
    return {
        "status": {
            "conditions": [
                {"type": "QuotaReserved", "status": "True", "lastTransitionTime": reserved_at},
                {"type": "Evicted", "status": "True", "reason": reason, "lastTransitionTime": evicted_at},
            ]
        }
    }


def test_only_a_copy_deactivated_as_it_was_dispatched_is_taken_for_kueues_race() -> None:
    manager = "DeactivatedDueToEvictedOnManagerCluster"
    assert deactivated_on_dispatch(_worker_copy("2026-12-05T05:26:56Z", "2026-12-05T05:26:55Z", manager))
    # A real eviction on the manager (preemption, suspend) comes long after the admission here.
    assert not deactivated_on_dispatch(_worker_copy("2026-12-05T05:40:00Z", "2026-12-05T05:26:55Z", manager))
    assert not deactivated_on_dispatch(
        _worker_copy("2026-12-05T05:26:56Z", "2026-12-05T05:26:55Z", "Preempted")
    )
