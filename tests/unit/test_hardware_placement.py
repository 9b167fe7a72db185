"""Hardware profiles as pure decisions: which profile a worker gets, when it falls back, what pods ask for."""

from __future__ import annotations

import json
from typing import Any

import pytest

from datajob_core.api import pod_policy
from datajob_core.api.models import DataJob, DataJobSpec
from datajob_core.cluster import hardware, queueing, sizing
from datajob_core.cluster.fleet import fleet_status
from datajob_core.cluster.queueing import Admission
from datajob_core.cluster.reconciler import JobState, ObservedReport, ObservedWorker, Policy, Slot, reconcile
from datajob_core.protocol import ReportMessage, ShardOutcome
from datajob_core.shards.ledger import Ledger
from datajob_core.shards.stages import Layout

PLAN: list[dict[str, Any]] = [{"pieces": []} for _ in range(20)]
H100 = {
    "name": "h100",
    "resources": {"gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}},
    "waitSeconds": 60,
}
A100 = {
    "name": "a100",
    "resources": {"gpu": {"count": 1, "product": "NVIDIA-A100-SXM4-80GB"}},
    "waitSeconds": 120,
}
L4 = {"name": "l4", "resources": {"gpu": {"count": 1, "product": "NVIDIA-L4"}}}


def spec(**extra: Any) -> dict[str, Any]:
    return {"image": "w:1", "input": {"uris": ["/d/*"]}, "output": {"uri": "/out"}, **extra}


def policy(workers: int, *profiles: dict[str, Any]) -> Policy:
    return Policy(workers=workers, profiles=hardware.profiles(spec(hardware=list(profiles))))


def job_manifest(**extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "datajob.dev/v1alpha1",
        "kind": "DataJob",
        "metadata": {"name": "train", "namespace": "ml", "uid": "u-1"},
        "spec": spec(**extra),
    }


def pending(
    pods: list[str], unschedulable: str = "0/6 nodes are available: 6 Insufficient nvidia.com/gpu"
) -> list[ObservedWorker]:
    return [
        ObservedWorker(name=p, slot=i, phase="Pending", unschedulable=unschedulable)
        for i, p in enumerate(pods)
    ]


def step(state: JobState, rules: Policy, workers: list[ObservedWorker], now: float, **kw: Any) -> Any:
    return reconcile(
        "train", rules, state=state, workers=workers, reports=kw.pop("reports", {}), plan=PLAN, now=now, **kw
    )


def profiles_of(state: JobState) -> list[str]:
    return [state.slots[n].profile for n in sorted(state.slots)]


def test_workers_go_to_the_first_profile_while_it_schedules() -> None:
    state, rules = JobState(Ledger.new(len(PLAN))), policy(3, H100, A100, L4)
    decision = step(state, rules, [], now=0.0)
    assert len(decision.create) == 3
    assert profiles_of(state) == ["h100", "h100", "h100"]


def test_an_unschedulable_profile_falls_back_after_its_wait_with_the_schedulers_reason() -> None:
    state, rules = JobState(Ledger.new(len(PLAN))), policy(2, H100, A100, L4)
    pods = [pod for _, pod in step(state, rules, [], now=0.0).create]
    before = step(state, rules, pending(pods), now=59.0)
    assert not before.delete and "h100" not in state.given_up
    after = step(state, rules, pending(pods), now=61.0)
    assert sorted(name for name, _ in after.delete) == sorted(pods)  # both pending pods move
    assert "Insufficient nvidia.com/gpu" in state.given_up["h100"]
    assert [e.reason for e in after.events].count("HardwareFallback") == 1
    moved = [e.message for e in after.events if e.reason == "WorkerMoved"]
    assert moved == ["2 worker(s) move from profile h100 to a100 (slots 0, 1)"]  # one event, not one per pod
    # Once they are gone, their replacements are created on the next profile; nothing was charged.
    replaced = step(state, rules, [], now=62.0)
    assert len(replaced.create) == 2
    assert profiles_of(state) == ["a100", "a100"]
    assert state.restarts == 0 and all(s.restarts == 0 for s in state.slots.values())


def test_fallback_goes_on_down_the_list_and_waits_on_the_last_profile() -> None:
    state, rules = JobState(Ledger.new(len(PLAN))), policy(1, H100, A100, L4)
    pods = [pod for _, pod in step(state, rules, [], now=0.0).create]
    step(state, rules, pending(pods), now=61.0)
    pods = [pod for _, pod in step(state, rules, [], now=62.0).create]
    assert profiles_of(state) == ["a100"]
    step(state, rules, pending(pods), now=62.0 + 121)
    pods = [pod for _, pod in step(state, rules, [], now=184.0).create]
    assert profiles_of(state) == ["l4"]
    # The last profile has nowhere else to go: its pod keeps waiting (WorkersUnschedulable says why).
    stays = step(state, rules, pending(pods), now=10_000.0)
    assert not stays.delete and stays.unschedulable


def test_a_running_worker_never_moves_and_a_scheduled_pod_is_not_moved() -> None:
    state, rules = JobState(Ledger.new(len(PLAN))), policy(2, H100, A100)
    pods = [pod for _, pod in step(state, rules, [], now=0.0).create]
    workers = [
        ObservedWorker(name=pods[0], slot=0, phase="Running", started_at=1.0, node="gpu-h100-0"),
        ObservedWorker(name=pods[1], slot=1, phase="Pending", node="gpu-h100-0"),  # bound, starting
    ]
    decision = step(state, rules, workers, now=500.0, reports={0: ObservedReport(0, None, 499.0)})
    assert not decision.delete and not state.given_up


def test_a_mixed_fleet_fills_capped_profiles_first_and_the_rest_on_the_next() -> None:
    capped = {**H100, "workers": 4}
    state, rules = JobState(Ledger.new(len(PLAN))), policy(6, capped, A100)
    step(state, rules, [], now=0.0)
    assert profiles_of(state) == ["h100"] * 4 + ["a100"] * 2


def test_a_replacement_takes_the_freed_place_on_a_capped_profile() -> None:
    capped = {**H100, "workers": 1}
    state, rules = JobState(Ledger.new(len(PLAN))), policy(2, capped, A100)
    pods = [pod for _, pod in step(state, rules, [], now=0.0).create]
    workers = [ObservedWorker(name=p, slot=i, phase="Running", started_at=1.0) for i, p in enumerate(pods)]
    workers[0] = ObservedWorker(name=pods[0], slot=0, phase="Failed", exit_code=137, reason="OOMKilled")
    step(state, rules, workers, now=2.0)
    step(state, rules, workers[1:], now=100.0)  # after the crash-loop backoff
    assert profiles_of(state) == ["h100", "a100"]


def test_a_profile_removed_from_the_spec_is_no_longer_reported_as_given_up() -> None:
    state, rules = JobState(Ledger.new(len(PLAN))), policy(1, H100, A100)
    pods = [pod for _, pod in step(state, rules, [], now=0.0).create]
    step(state, rules, pending(pods), now=61.0)
    assert "h100" in state.given_up
    step(state, policy(1, A100), [], now=62.0)
    assert state.given_up == {}


def test_a_fallback_decided_before_an_operator_crash_is_carried_out_after_it() -> None:
    state, rules = JobState(Ledger.new(len(PLAN))), policy(1, H100, A100)
    pods = [pod for _, pod in step(state, rules, [], now=0.0).create]
    step(state, rules, pending(pods), now=61.0)  # decided and persisted; the delete never went out
    restored = JobState.from_dict(state.to_dict())
    again = step(restored, rules, pending(pods), now=70.0)
    assert again.delete == [(pods[0], True)]


def test_per_profile_and_per_worker_rates_come_from_committed_shards() -> None:
    capped = {**H100, "workers": 1}
    state, rules = JobState(Ledger.new(len(PLAN))), policy(2, capped, A100)
    pods = [pod for _, pod in step(state, rules, [], now=0.0).create]
    workers = [
        ObservedWorker(name=p, slot=i, phase="Running", started_at=1.0, node=f"n{i}")
        for i, p in enumerate(pods)
    ]
    step(state, rules, workers, now=1.0)
    held = {pod: state.ledger.in_flight_for(pod) for pod in pods}
    reports = {}
    for slot, pod in enumerate(pods):
        shard = sorted(held[pod])[0]
        done = ShardOutcome(seq=1, shard=shard, attempt=1, records=1000 * (2 - slot))
        reports[slot] = ObservedReport(slot, ReportMessage(pod=pod, seq=1, done=[done]), renewed_at=11.0)
    step(state, rules, workers, now=11.0, reports=reports)
    status = fleet_status(rules, state, workers, {pods[0]: ["gpu.example.com/n0/gpu-0"]})
    by_name = {p["name"]: p for p in status["profiles"]}
    assert by_name["h100"]["records"] == 2000 and by_name["a100"]["records"] == 1000
    assert by_name["h100"]["recordsPerSecond"] == 200 and by_name["a100"]["recordsPerSecond"] == 100
    assert status["workers"][0]["devices"] == ["gpu.example.com/n0/gpu-0"]
    assert status["workers"][1] == {
        "slot": 1,
        "pod": pods[1],
        "profile": "a100",
        "records": 1000,
        "node": "n1",
        "recordsPerSecond": 100,
    }
    assert status["summary"] == "h100:1 a100:1"


def test_a_worker_pod_carries_its_profiles_resources_selector_tolerations_and_label() -> None:
    spot_arm = {
        "name": "arm-spot",
        "resources": {"cpu": "4", "memory": "8Gi"},
        "architecture": "arm64",
        "capacityType": "spot",
        "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
    }
    job = job_manifest(hardware=[spot_arm, H100], nodeSelector={"team": "ml"})
    arm, gpu = hardware.profiles(job["spec"])
    pod = sizing.worker_pod(job, 0, "train-0-1", "lease", profile=arm)
    assert pod["spec"]["nodeSelector"] == {
        "team": "ml",
        "kubernetes.io/arch": "arm64",
        "karpenter.sh/capacity-type": "spot",
    }
    assert pod["metadata"]["labels"][hardware.PROFILE_LABEL] == "arm-spot"
    assert {"key": "spot", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    assert pod["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "4", "memory": "8Gi"}
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["DATAJOB_PROFILE"]["value"] == "arm-spot"
    assert env["DATAJOB_NODE"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    pod = sizing.worker_pod(job, 1, "train-1-1", "lease", profile=gpu)
    assert pod["spec"]["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_spec_resources_stays_the_one_profile_shorthand() -> None:
    job = job_manifest(resources={"cpu": "2", "memory": "4Gi", "gpu": {"count": 2, "product": "Tesla-T4"}})
    (only,) = hardware.profiles(job["spec"])
    assert only.name == hardware.SHORTHAND
    pod = sizing.worker_pod(job, 0, "p", "lease")
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "Tesla-T4"}
    assert pod["metadata"]["labels"][hardware.PROFILE_LABEL] == "default"


def test_a_dra_profile_gets_a_claim_template_with_its_alternatives_in_order() -> None:
    devices = {
        "firstAvailable": [
            {"deviceClassName": "h100.example.com", "selectors": ["device.attributes['x'].mem >= 80"]},
            {"deviceClassName": "a100.example.com", "count": 2},
        ]
    }
    job = job_manifest(hardware=[{"name": "dra", "devices": devices}])
    (profile,) = hardware.profiles(job["spec"])
    template = hardware.claim_template(job, profile, sizing.owner_reference(job))
    name = template["metadata"]["name"]
    assert name.startswith("train-dra-") and len(name) == len("train-dra-") + 8
    (request,) = template["spec"]["spec"]["devices"]["requests"]
    assert [o["deviceClassName"] for o in request["firstAvailable"]] == [
        "h100.example.com",
        "a100.example.com",
    ]
    assert request["firstAvailable"][0]["selectors"] == [
        {"cel": {"expression": "device.attributes['x'].mem >= 80"}}
    ]
    assert request["firstAvailable"][1]["count"] == 2
    pod = sizing.worker_pod(job, 0, "train-0-1", "lease", profile=profile)
    assert pod["spec"]["resourceClaims"] == [{"name": "devices", "resourceClaimTemplateName": name}]
    assert pod["spec"]["containers"][0]["resources"]["claims"] == [{"name": "devices"}]
    claim = {
        "spec": template["spec"]["spec"],
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {
                            "request": "devices/option-1",
                            "driver": "gpu.example.com",
                            "pool": "n1",
                            "device": "gpu-3",
                        }
                    ]
                }
            }
        },
    }
    assert hardware.allocated_devices(claim) == ["gpu.example.com/n1/gpu-3"]
    assert hardware.chosen_option(claim) == "a100.example.com"


def node(name: str, labels: dict[str, str], **allocatable: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi", **allocatable}},
    }


def test_profiles_no_node_can_run_are_named_with_the_reason() -> None:
    nodes = [
        node("a", {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}, **{"nvidia.com/gpu": "8"}),
        node("c", {"kubernetes.io/arch": "amd64"}),
    ]
    eight = {"name": "a100x16", "resources": {"gpu": {"count": 16, "product": "NVIDIA-A100-SXM4-80GB"}}}
    dra = {"name": "dra", "devices": {"deviceClassName": "nope.example.com"}}
    arm = {"name": "arm", "architecture": "arm64"}
    found = hardware.unavailable(
        hardware.profiles(spec(hardware=[H100, eight, dra, arm, A100])),
        None,
        nodes,
        frozenset({"gpu.example.com"}),
    )
    assert found["h100"] == "no node has the labels nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3"
    assert "nvidia.com/gpu 16 (the largest node has 8)" in found["a100x16"]
    assert found["dra"] == "DeviceClass nope.example.com does not exist"
    assert "kubernetes.io/arch=arm64" in found["arm"]
    assert "a100" not in found


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"hardware": [H100], "resources": {"cpu": "2"}},
            "spec.resources must not be set with spec.hardware",
        ),
        ({"hardware": [H100, {**H100}]}, "profile names must be unique"),
        (
            {"hardware": [{**H100, "workers": 1}, {**A100, "workers": 1}], "workers": 3},
            "leave the last profile uncapped",
        ),
        ({"hardware": [{"name": "x", "devices": {}}]}, "exactly one of deviceClassName and firstAvailable"),
        ({"hardware": [{"name": "Bad_Name"}]}, "spec.hardware[0].name"),
        (
            {"hardware": [{"name": "x", "resources": {"cpu": "0"}}]},
            "a hardware profile's resources.cpu must be greater than 0",
        ),
    ],
)
def test_impossible_hardware_specs_are_refused_naming_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        DataJob.load({"metadata": {"name": "j"}, "spec": spec(**change)})


def test_existing_manifests_without_hardware_still_validate() -> None:
    DataJobSpec.model_validate(spec(resources={"cpu": "2", "memory": "2Gi"}))


def test_under_kueue_the_workload_carries_only_shared_labels_and_workers_follow_the_admitted_flavor() -> None:
    all_profiles = hardware.profiles(spec(hardware=[H100, A100], nodeSelector={"pool": "gpu"}))
    shape = hardware.for_workload(all_profiles)
    assert shape.name == "h100" and shape.node_selector == {}  # the product labels differ: Kueue picks
    assert (
        hardware.follow_flavor(all_profiles, {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}).name
        == "a100"
    )
    assert hardware.follow_flavor(all_profiles, {"zone": "a"}).name == "h100"


@pytest.mark.parametrize("resource", ["nvidia.com/mig-1g.10gb", "nvidia.com/gpu.shared"])
def test_mig_slices_and_time_sliced_gpus_are_requested_by_their_resource_and_tolerate_the_gpu_taint(
    resource: str,
) -> None:
    sliced = {
        "name": "slice",
        "resources": {"gpu": {"count": 1, "resourceName": resource, "product": "NVIDIA-A100-SXM4-80GB"}},
    }
    job = job_manifest(hardware=[sliced])
    pod = sizing.worker_pod(job, 0, "p", "lease", profile=hardware.profiles(job["spec"])[0])
    container = pod["spec"]["containers"][0]
    assert (
        container["resources"]["limits"][resource] == "1"
        and "nvidia.com/gpu" not in container["resources"]["limits"]
    )
    keys = {t["key"] for t in pod["spec"]["tolerations"] if t.get("effect") == "NoSchedule"}
    assert keys == {resource, "nvidia.com/gpu"}


def test_moving_back_up_is_off_by_default() -> None:
    state, rules = JobState(Ledger.new(len(PLAN))), policy(1, H100, A100)
    pods = [pod for _, pod in step(state, rules, [], now=0.0).create]
    step(state, rules, pending(pods), now=61.0)
    pods = [pod for _, pod in step(state, rules, [], now=62.0).create]
    up = [ObservedWorker(name=pods[0], slot=0, phase="Running", started_at=63.0)]
    decision = step(state, rules, up, now=100_000.0, reports={0: ObservedReport(0, None, 99_999.0)})
    assert not decision.delete and "h100" in state.given_up


def test_moving_back_up_stops_a_lower_worker_gracefully_and_its_replacement_asks_for_the_better_profile() -> (
    None
):
    state = JobState(Ledger.new(len(PLAN)))
    rules = Policy(workers=2, profiles=hardware.profiles(spec(hardware=[H100, A100])), move_up_seconds=600.0)
    pods = [pod for _, pod in step(state, rules, [], now=0.0).create]
    step(state, rules, pending(pods), now=61.0)
    pods = [pod for _, pod in step(state, rules, [], now=62.0).create]
    up = [ObservedWorker(name=p, slot=i, phase="Running", started_at=63.0) for i, p in enumerate(pods)]
    beats = {i: ObservedReport(i, None, 600.0) for i in range(2)}
    assert not step(state, rules, up, now=600.0, reports=beats).delete  # not yet: 600 s after the fallback
    decision = step(state, rules, up, now=661.0, reports=beats)
    assert decision.delete == [(pods[1], True)]  # one worker at a time, gracefully (it checkpoints)
    assert decision.assignments[1].stop and "HardwareMoveUp" in [e.reason for e in decision.events]
    assert "h100" not in state.given_up
    gone = [up[0], ObservedWorker(name=pods[1], slot=1, phase="Succeeded")]
    replaced = step(state, rules, gone, now=662.0, reports=beats)
    assert len(replaced.create) == 1 and state.slots[1].profile == "h100"
    assert state.restarts == 0 and not state.ledger.retry  # nothing charged, no restart counted


def test_claim_templates_of_different_jobs_uids_or_requests_never_share_a_name() -> None:
    devices = {"deviceClassName": "gpu.example.com"}

    def name(job: str, profile: str, uid: str = "u-1", request: dict[str, Any] = devices) -> str:
        manifest = job_manifest(hardware=[{"name": profile, "devices": request}])
        manifest["metadata"].update(name=job, uid=uid)
        return hardware.claim_template_name(manifest, hardware.profiles(manifest["spec"])[0])

    assert name("a-b", "c") != name("a", "b-c")  # the same "<job>-<profile>" text
    assert name("a", "c", uid="u-1") != name("a", "c", uid="u-2")  # a job deleted and made again
    assert name("a", "c") != name("a", "c", request={"deviceClassName": "gpu.example.com", "count": 2})
    assert len(name("j" * 63, "p" * 20)) <= 253


def test_under_kueue_every_worker_asks_for_the_shape_kueue_admitted() -> None:
    small = {
        "name": "small",
        "resources": {"cpu": "1", "memory": "1Gi", "gpu": {"count": 1, "product": "H100"}},
    }
    big = {
        "name": "big",
        "resources": {"cpu": "64", "memory": "512Gi", "gpu": {"count": 8, "product": "A100"}},
    }
    every = hardware.profiles(spec(hardware=[small, big]))
    assert "profile big differs from small" in hardware.queue_mismatch(every)
    shape = hardware.queued_shape(every, every[1])
    assert shape.resources == every[0].resources and shape.node_selector == every[1].node_selector
    same = hardware.profiles(spec(hardware=[H100, {**A100, "resources": H100["resources"]}]))
    assert hardware.queue_mismatch(same) == ""


def test_a_pending_pod_of_a_profile_removed_from_the_spec_moves_at_once_and_gives_nothing_up() -> None:
    state, rules = JobState(Ledger.new(len(PLAN))), policy(2, H100, A100, L4)
    pods = [pod for _, pod in step(state, rules, [], now=0.0).create]
    edited = policy(2, A100, L4)  # h100 edited away while its pods wait
    decision = step(state, edited, pending(pods), now=5.0)
    assert sorted(name for name, _ in decision.delete) == sorted(pods)
    assert state.given_up == {}
    step(state, edited, [], now=6.0)
    assert profiles_of(state) == ["a100", "a100"]
    # With one profile left, the same: no pod is left waiting for hardware the spec no longer asks for.
    state, rules = JobState(Ledger.new(len(PLAN))), policy(1, H100, A100)
    pods = [pod for _, pod in step(state, rules, [], now=0.0).create]
    assert step(state, policy(1, A100), pending(pods), now=5.0).delete == [(pods[0], True)]


def test_each_given_up_profile_is_tried_again_on_its_own_clock() -> None:
    state = JobState(Ledger.new(len(PLAN)))
    rules = Policy(
        workers=1, profiles=hardware.profiles(spec(hardware=[H100, A100, L4])), move_up_seconds=600.0
    )
    state.given_up = {"h100": "full", "a100": "full"}
    state.given_up_at = {"h100": 1000.0, "a100": 500.0}
    state.slots[0] = Slot(pod="train-0-5", incarnation=5, created_at=900.0, profile="l4")
    up = [ObservedWorker(name="train-0-5", slot=0, phase="Running", started_at=900.0)]
    beat = {0: ObservedReport(0, None, 1100.0)}
    decision = step(state, rules, up, now=1150.0, reports=beat)
    assert "a100" not in state.given_up and "h100" in state.given_up  # a100's interval ran out first
    assert decision.delete == [("train-0-5", True)]


def test_a_refused_device_template_gives_its_profile_up_at_once_and_the_worker_goes_to_the_next() -> None:
    dra = {"name": "dra", "devices": {"deviceClassName": "gpu.example.com"}}
    state, rules = JobState(Ledger.new(len(PLAN))), policy(1, dra, L4)
    pods = [pod for _, pod in step(state, rules, [], now=0.0).create]
    refused = {pods[0]: ("DevicesRejected", "the server could not find the requested resource")}
    decision = step(state, rules, [], now=1.0, create_failures=refused)
    assert "could not find" in state.given_up["dra"]
    assert len(decision.create) == 1 and profiles_of(state) == ["l4"]
    assert decision.blocked is None and state.slots[0].restarts == 0


def test_moving_up_never_stops_a_worker_running_the_job_commit() -> None:
    state = JobState(Layout.for_spec(2, {}).ledger())
    rules = Policy(workers=1, profiles=hardware.profiles(spec(hardware=[H100, A100])), move_up_seconds=600.0)
    state.given_up, state.given_up_at = {"h100": "full"}, {"h100": 0.0}
    state.slots[0] = Slot(pod="train-0-2", incarnation=2, created_at=1.0, profile="a100")
    for _ in range(2):  # both map shards done
        held = state.ledger.assign("train-0-2", 1.0)
        assert held is not None
        state.ledger.complete(held.shard, "train-0-2", held.attempt, 2.0)
    assert state.ledger.assign("train-0-2", 3.0) is not None  # the job commit
    up = [ObservedWorker(name="train-0-2", slot=0, phase="Running", started_at=1.0)]
    decision = step(state, rules, up, now=700.0, reports={0: ObservedReport(0, None, 699.0)})
    assert not decision.delete and "h100" not in state.given_up  # tried again for new workers only


def test_the_pod_template_cannot_undo_a_profile() -> None:
    dra = {
        "name": "dra",
        "resources": {"cpu": "4", "memory": "8Gi", "gpu": {"count": 1, "product": "NVIDIA-A100-SXM4-80GB"}},
        "devices": {"deviceClassName": "gpu.example.com"},
    }
    template = {
        "spec": {
            "nodeSelector": {"team": "a", "pool": "batch", "nvidia.com/gpu.product": "Tesla-T4"},
            "resourceClaims": [{"name": "scratch", "resourceClaimTemplateName": "scratch"}],
        }
    }
    job = job_manifest(hardware=[dra], podTemplate=template, nodeSelector={"pool": "general"})
    pod = sizing.worker_pod(job, 0, "p", "lease", profile=hardware.profiles(job["spec"])[0])
    # spec.nodeSelector < the template's < the profile's own labels
    assert pod["spec"]["nodeSelector"] == {
        "pool": "batch",
        "team": "a",
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
    }
    assert [c["name"] for c in pod["spec"]["resourceClaims"]] == ["devices", "scratch"]
    assert pod["spec"]["containers"][0]["resources"]["claims"] == [{"name": "devices"}]
    # The worker's resources come from its profile: a template may not set them with spec.hardware.
    sized = {"spec": {"containers": [{"name": "worker", "resources": {"requests": {"cpu": "64"}}}]}}
    with pytest.raises(
        ValueError, match=r"containers\[worker\]\.resources cannot be set with spec\.hardware"
    ):
        DataJob.load({"metadata": {"name": "j"}, "spec": spec(hardware=[dra], podTemplate=sized)})
    # Nobody else may claim the profile's devices: not the pod, not a sidecar, not the worker twice.
    for squatting in (
        {"resourceClaims": [{"name": "devices", "resourceClaimTemplateName": "mine"}]},
        {"containers": [{"name": "sidecar", "image": "x", "resources": {"claims": [{"name": "devices"}]}}]},
        {"initContainers": [{"name": "init", "image": "x", "resources": {"claims": [{"name": "devices"}]}}]},
    ):
        assert "cannot be devices" in pod_policy.violations(squatting)[0]


def test_a_shorthand_jobs_pod_template_still_sizes_the_worker_and_keeps_the_gpu_model() -> None:
    template = {
        "spec": {
            "nodeSelector": {"zone": "a"},
            "containers": [
                {"name": "worker", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "250m"}}}
            ],
        }
    }
    job = job_manifest(
        resources={"cpu": "1", "gpu": {"count": 1, "product": "Tesla-T4"}}, podTemplate=template
    )
    pod = sizing.worker_pod(job, 0, "p", "lease")
    assert pod["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "250m"},
        "limits": {"cpu": "250m"},
    }
    assert pod["spec"]["nodeSelector"] == {"zone": "a", "nvidia.com/gpu.product": "Tesla-T4"}


def test_a_template_of_the_same_name_is_ours_only_if_it_asks_for_the_same_devices() -> None:
    job = job_manifest(
        hardware=[{"name": "dra", "devices": {"deviceClassName": "gpu.example.com", "selectors": ["true"]}}]
    )
    wanted = hardware.claim_template(job, hardware.profiles(job["spec"])[0], sizing.owner_reference(job))
    stored = json.loads(json.dumps(wanted["spec"]))
    stored["spec"]["devices"]["requests"][0]["exactly"]["adminAccess"] = None  # a default the server may add
    assert hardware.device_request(stored) == hardware.device_request(wanted["spec"])
    stored["spec"]["devices"]["requests"][0]["exactly"]["count"] = 8
    assert hardware.device_request(stored) != hardware.device_request(wanted["spec"])


def test_ledgers_written_by_earlier_versions_still_read() -> None:
    data = JobState(Ledger.new(2)).to_dict()
    data["givenUp"], data["givenUpAt"] = {"h100": "full", "a100": "full"}, 1234.5  # one time for all
    data["slots"] = {
        "0": {"pod": "p", "inc": 1, "created": 1_700_000_000.0, "doneAt": 1_700_000_100.0, "busy": 3.5}
    }
    state = JobState.from_dict(data)
    assert state.given_up_at == {"h100": 1234.5, "a100": 1234.5}
    assert state.slots[0].done_at == 1_700_000_100.0 and state.slots[0].busy == 3.5
    again = JobState.from_dict(state.to_dict())
    assert again.slots[0].done_at == 1_700_000_100.0 and again.given_up_at == state.given_up_at


def test_busy_time_survives_many_short_passes() -> None:
    slot = Slot(pod="p", created_at=1_700_000_000.0)
    for _ in range(100):  # the state is decoded from the status on every pass
        slot = Slot.from_dict(slot.to_dict())
        slot.busy += 0.04
    assert abs(slot.busy - 4.0) < 0.01


def test_under_kueue_a_refused_device_template_backs_off_instead_of_looping() -> None:
    dra = {"name": "a", "devices": {"deviceClassName": "gpu.example.com"}}
    other = {"name": "b", "devices": {"deviceClassName": "gpu.example.com"}}
    state, rules = JobState(Ledger.new(len(PLAN))), policy(1, dra, other)
    admitted = Admission(True, 1)
    pods = [pod for _, pod in step(state, rules, [], now=0.0, queue=admitted).create]
    refused = {pods[0]: ("DevicesRejected", "forbidden")}
    decision = step(state, rules, [], now=1.0, create_failures=refused, queue=admitted)
    assert not decision.create and decision.blocked == ("DevicesRejected", "forbidden")
    assert state.slots[0].not_before > 1.0 and state.given_up == {}


def test_moving_up_never_retries_a_profile_whose_devices_the_api_refused() -> None:
    dra = {"name": "dra", "devices": {"deviceClassName": "gpu.example.com"}}
    state = JobState(Ledger.new(len(PLAN)))
    rules = Policy(workers=1, profiles=hardware.profiles(spec(hardware=[dra, L4])), move_up_seconds=600.0)
    pods = [pod for _, pod in step(state, rules, [], now=0.0).create]
    step(state, rules, [], now=1.0, create_failures={pods[0]: ("DevicesRejected", "forbidden")})
    pod = state.slots[0].pod  # its replacement, created in the same pass, on the next profile
    assert pod is not None and state.slots[0].profile == "l4"
    up = [ObservedWorker(name=pod, slot=0, phase="Running", started_at=3.0)]
    decision = step(state, rules, up, now=5000.0, reports={0: ObservedReport(0, None, 4999.0)})
    assert not decision.delete and "dra" in state.given_up


def test_a_queued_jobs_workload_is_replaced_when_what_a_worker_asks_for_changes() -> None:
    job = job_manifest(hardware=[H100], workers=2)
    job["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "lq"}
    pod = sizing.worker_pod(job, 0, "t", "l", profile=hardware.for_workload(hardware.profiles(job["spec"])))
    workload = queueing.workload_manifest(job, pod, labels={}, owner={}, priority=None)
    assert not queueing.needs_new_workload(workload, job, pod)
    bigger = json.loads(json.dumps(job))
    bigger["spec"]["hardware"][0]["resources"]["gpu"]["count"] = 8
    grown = sizing.worker_pod(
        bigger, 0, "t", "l", profile=hardware.for_workload(hardware.profiles(bigger["spec"]))
    )
    assert queueing.needs_new_workload(workload, bigger, grown)
