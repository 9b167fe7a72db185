"""OpenLineage run events from the operator, received by a local HTTP endpoint and validated against the
spec's JSON Schema (tests/datajob_testenv/openlineage_spec.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from datajob_testenv.cluster import TestCluster
from datajob_testenv.datajobs import Jobs, job_manifest, write_inputs
from datajob_testenv.openlineage_spec import Receiver, SpecValidator, schema_dir
from datajob_testenv.operator_process import OperatorProcess, storage_access
from datajob_testenv.processes import wait_for


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver().running() as running:
        yield running


@pytest.fixture(scope="module")
def lineage_operator(
    cluster: TestCluster,
    datajob_crd: None,
    operator: OperatorProcess,
    receiver: Receiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """Instead of the suite's operator: the same, sending lineage to the receiver."""
    operator.stop()
    log_dir = cluster.directory / "logs" / "lineage"
    log_dir.mkdir(parents=True, exist_ok=True)
    emitting = OperatorProcess(
        cluster.kubeconfig,
        log_dir,
        *storage_access(tmp_path_factory.getbasetemp()),
        *("--openlineage-url", receiver.url, "--openlineage-namespace", "datajob-tests"),
    )
    emitting.start()
    try:
        yield emitting
    finally:
        emitting.stop()
        operator.start()


def _of(receiver: Receiver, job: str) -> list[dict[str, object]]:
    return [e for e in receiver.events if str((e.get("job") or {}).get("name", "")).endswith(f".{job}")]


def _names(event: dict[str, object], side: str) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in event[side]]  # type: ignore[attr-defined]


def test_a_job_sends_start_and_complete_with_its_datasets_valid_against_the_spec(
    lineage_operator: OperatorProcess, receiver: Receiver, jobs: Jobs, tmp_path: Path
) -> None:
    spec = SpecValidator(schema_dir())
    write_inputs(tmp_path / "in", files=2, lines=50)
    jobs.create(job_manifest("lineage-ok", tmp_path / "in", tmp_path / "out"))
    jobs.wait_phase("lineage-ok", "Succeeded", timeout=120)
    wait_for(lambda: len(_of(receiver, "lineage-ok")) >= 2, 30, "START and COMPLETE received")
    events = _of(receiver, "lineage-ok")
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    uid = jobs.get("lineage-ok")["metadata"]["uid"]
    for event in events:
        assert spec.errors(event) == [], event
        assert event["run"] == {**event["run"], "runId": uid}  # type: ignore[dict-item]
        assert _names(event, "outputs") == [("file", str(tmp_path / "out"))]
        assert _names(event, "inputs") == [("file", str(tmp_path / "in"))]
    assert any("ProcessingEngineRunFacet" in url for url in spec.checked), spec.checked

    # What was sent is recorded on the job, so an operator restart does not send it again. The record is
    # written after the receiver answered, from the emitter's thread: it may land a moment after the event.
    def recorded() -> str:
        return str((jobs.get("lineage-ok")["metadata"].get("annotations") or {}).get("datajob.dev/lineage"))

    wait_for(lambda: recorded() == "START,COMPLETE", 30, "START and COMPLETE recorded on the job")
    assert recorded() == "START,COMPLETE"


def test_a_failed_job_sends_fail_with_the_reason_and_an_endpoint_that_was_down_gets_it_later(
    lineage_operator: OperatorProcess, receiver: Receiver, jobs: Jobs, tmp_path: Path
) -> None:
    spec = SpecValidator(schema_dir())
    receiver.refuse = True  # the endpoint is down when the job runs and fails
    try:
        write_inputs(tmp_path / "in", files=1, lines=10)
        manifest = job_manifest("lineage-bad", tmp_path / "in", tmp_path / "out")
        manifest["spec"]["processor"] = {"function": "no_such_module:process"}
        manifest["spec"]["retryPolicy"] = {
            "maxWorkerRestarts": 1,
            "backoff": {"initialSeconds": 1, "maxSeconds": 1},
        }
        jobs.create(manifest)
        jobs.wait_phase("lineage-bad", "Failed", timeout=120)
        assert not _of(receiver, "lineage-bad")
    finally:
        receiver.refuse = False
    # Sent again after the retry interval, in order, once the endpoint is back.
    wait_for(lambda: len(_of(receiver, "lineage-bad")) >= 2, 90, "START and FAIL received")
    events = _of(receiver, "lineage-bad")
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    assert all(spec.errors(e) == [] for e in events), [spec.errors(e) for e in events]
    message = events[1]["run"]["facets"]["errorMessage"]["message"]  # type: ignore[index]
    assert "no_such_module" in str(message), message
    assert any("ErrorMessageRunFacet" in url for url in spec.checked), spec.checked
