"""The pydantic API models: defaults, and every bad-spec class rejected with the field named."""

from __future__ import annotations

import pytest

from datajob_core.api.models import DataJob, DataJobSpec, quantity_value
from datajob_testenv.specs import BAD_SPECS, SAFE_POD_TEMPLATE, VALID_SPEC, spec_with


def manifest(spec: dict[str, object]) -> dict[str, object]:
    return {"apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob", "metadata": {"name": "j"}, "spec": spec}


def test_valid_spec_gets_the_documented_defaults() -> None:
    job = DataJob.load(manifest(VALID_SPEC))
    spec = job.spec
    assert spec.workers == 1
    assert spec.input.format == "text"
    assert spec.input.partitioning.mode == "perFile"
    assert (spec.resources.cpu, spec.resources.memory) == ("1", "1Gi")
    assert spec.retry_policy.max_shard_attempts == 3
    assert spec.retry_policy.backoff.initial_seconds == 10
    assert spec.checkpoint.interval_seconds == 30
    assert spec.suspend is False


def test_camel_case_round_trip() -> None:
    spec = DataJobSpec.model_validate(
        {**VALID_SPEC, "ttlSecondsAfterFinished": 60, "priorityClassName": "batch"}
    )
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped["ttlSecondsAfterFinished"] == 60
    assert dumped["retryPolicy"]["maxShardAttempts"] == 3


@pytest.mark.parametrize(("name", "spec", "expected"), BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_is_rejected_naming_the_field(name: str, spec: dict[str, object], expected: str) -> None:
    with pytest.raises(ValueError) as rejected:
        DataJob.load(manifest(spec))
    assert expected in str(rejected.value), f"{name}: {rejected.value}"


def test_unknown_field_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"spec\.wrokers"):
        DataJob.load(manifest({**VALID_SPEC, "wrokers": 3}))


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", 0.5), ("2", 2), ("1Gi", 2**30), ("64Mi", 64 * 2**20), ("1e3", 1000), ("1.5G", 1.5e9), ("0", 0)],
)
def test_quantity_value(text: str, value: float) -> None:
    assert quantity_value(text) == pytest.approx(value)


def test_safe_pod_template_fields_stay_possible() -> None:
    job = DataJob.load(manifest(spec_with(podTemplate=SAFE_POD_TEMPLATE)))
    assert job.spec.pod_template is not None
    assert job.spec.pod_template.spec == SAFE_POD_TEMPLATE["spec"]
