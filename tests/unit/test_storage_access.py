"""Whose identity the operator's storage actions use (datajob_core.data.storage_access): the pure rules."""

from __future__ import annotations

from typing import Any

import pytest

from datajob_core.data.storage_access import (
    StorageAccessError,
    StorageAccessPolicy,
    check_job,
    endpoint_allowed,
    inside,
    own_credentials_refused,
    under_root,
)

POLICY = StorageAccessPolicy(
    roots=("/data/{namespace}", "s3://scratch/{namespace}"),
    endpoints=("http://minio.storage.svc:9000", "https://*.objects.example.com:443"),
)


def spec(inputs: list[str], output: str, **storage: str) -> dict[str, Any]:
    return {"input": {"uris": inputs}, "output": {"uri": output}, "storage": storage}


def refusal(job: dict[str, Any], *, credentials: bool = False, namespace: str = "team-a") -> str:
    with pytest.raises(StorageAccessError) as raised:
        check_job(POLICY, namespace, job, has_credentials=credentials, why_no_credentials="none set")
    return str(raised.value)


def allowed(job: dict[str, Any], *, credentials: bool = False, namespace: str = "team-a") -> bool:
    check_job(POLICY, namespace, job, has_credentials=credentials, why_no_credentials="none set")
    return True


def test_a_path_in_the_namespaces_own_root_is_allowed_and_another_namespaces_is_refused() -> None:
    assert allowed(spec(["/data/team-a/in/*.txt"], "/data/team-a/out"))
    message = refusal(spec(["/data/team-a/in/*.txt"], "/data/team-b/out"))
    assert message.startswith("spec.output.uri: /data/team-b/out is outside the storage roots")
    assert "/data/team-a" in message


def test_dot_dot_and_prefix_tricks_do_not_leave_the_root() -> None:
    assert "spec.input.uris[0]" in refusal(spec(["/data/team-a/../team-b/*.txt"], "/data/team-a/out"))
    assert "spec.output.uri" in refusal(spec(["/data/team-a/in"], "/data/team-ab/out"))
    assert "spec.output.uri" in refusal(spec(["/data/team-a/in"], "file:///data/team-a/../../etc"))
    assert "spec.input.uris[0]" in refusal(spec(["relative/in"], "/data/team-a/out"))
    assert not inside("s3://scratch/team-a/../team-b/x", "s3://scratch/team-a")
    assert inside("/data/team-a//x/./y", "/data/team-a")


def test_a_glob_is_judged_by_the_part_before_its_first_wildcard() -> None:
    assert under_root(POLICY, "team-a", "/data/team-a/*/part-*") == "/data/team-a"
    assert under_root(POLICY, "team-a", "/data/team-*/x") is None  # could match team-b
    assert under_root(POLICY, "team-a", "s3://scr*/team-a/x") is None


def test_s3_without_credentials_is_refused_outside_a_root_and_says_why() -> None:
    message = refusal(spec(["s3://other-team/secret/*"], "s3://scratch/team-a/out"))
    assert message.startswith("spec.input.uris[0]: s3://other-team/secret/* is outside")
    assert "the job's own credentials are needed (none set)" in message
    # Under the namespace's own object-store root the operator's identity may be used.
    assert allowed(spec(["s3://scratch/team-a/in/*"], "s3://scratch/team-a/out"))


def test_an_object_store_root_does_not_follow_a_job_to_another_endpoint() -> None:
    job = spec(
        ["s3://scratch/team-a/in/*"], "s3://scratch/team-a/out", endpoint="http://minio.storage.svc:9000"
    )
    assert "spec.input.uris[0]" in refusal(job)  # the same bucket name on another store is someone else's
    assert allowed(job, credentials=True)


def test_s3_with_the_jobs_own_credentials_may_go_anywhere_its_credentials_go() -> None:
    assert allowed(spec(["s3://own-bucket/in/*"], "s3://own-bucket/out"), credentials=True)


def test_other_remote_schemes_never_use_the_jobs_s3_credentials() -> None:
    message = refusal(spec(["http://10.0.0.1/metadata"], "s3://own/out"), credentials=True)
    assert message.startswith("spec.input.uris[0]: http://10.0.0.1/metadata")
    assert "only s3:// locations" in message
    assert "spec.input.uris[0]" in refusal(spec(["gs://bucket/x"], "s3://own/out"), credentials=True)


def test_an_endpoint_not_allowed_by_the_administrator_is_refused_before_any_location() -> None:
    job = spec(["s3://own/in"], "s3://own/out", endpoint="http://kube-apiserver.default.svc:443")
    message = refusal(job, credentials=True)
    assert message.startswith("spec.storage.endpoint: http://kube-apiserver.default.svc:443 is not")
    assert "http://minio.storage.svc:9000" in message
    assert allowed(
        spec(["s3://own/in"], "s3://own/out", endpoint="http://minio.storage.svc:9000/"), credentials=True
    )
    # An endpoint only matters when something is reached over S3.
    assert allowed(spec(["/data/team-a/in"], "/data/team-a/out", endpoint="http://169.254.169.254"))


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://minio.storage.svc:9000", True),
        ("HTTP://MINIO.storage.svc:9000/path", True),
        ("http://minio.storage.svc", False),  # port 80, not 9000
        ("http://minio.storage.svc:9000@evil:9000", False),  # userinfo does not make it MinIO
        ("https://eu.objects.example.com", True),  # default port 443
        ("https://eu.objects.example.com.evil.net", False),
        ("http://eu.objects.example.com", False),
        ("https://a.eu.objects.example.com", False),  # "*." is one label, not any number
        ("https://objects.example.com", False),
    ],
)
def test_endpoints_are_compared_by_scheme_host_and_port(endpoint: str, expected: bool) -> None:
    assert endpoint_allowed(POLICY, endpoint) is expected


def test_port_wildcards_and_ipv6_hosts_are_matched_exactly() -> None:
    policy = StorageAccessPolicy(endpoints=("http://127.0.0.1:*", "http://[::1]:9000"))
    assert endpoint_allowed(policy, "http://127.0.0.1:45123")
    assert not endpoint_allowed(policy, "http://127.0.0.2:45123")
    assert endpoint_allowed(policy, "http://[::1]:9000")
    assert not endpoint_allowed(policy, "http://1:9000") and not endpoint_allowed(policy, "http://[::2]:9000")


def test_with_no_roots_and_no_endpoints_the_operator_acts_only_with_the_jobs_credentials() -> None:
    nothing = StorageAccessPolicy()
    check_job(nothing, "ns", spec(["s3://b/in"], "s3://b/out"), has_credentials=True, why_no_credentials="")
    with pytest.raises(StorageAccessError, match=r"^spec.input.uris\[0\]: /in"):
        check_job(nothing, "ns", spec(["/in"], "s3://b/out"), has_credentials=True, why_no_credentials="")


def test_a_reader_uses_own_credentials_on_a_jobs_output_only_where_the_job_does_or_when_told() -> None:
    secret = {"credentialsSecret": "s3-keys", "endpoint": "http://minio.example:9000"}
    endpoint_only = {"endpoint": "http://attacker.example:9000"}
    assert own_credentials_refused(secret, has_job_credentials=True, allowed=False) == ""
    assert "cannot be read with your access" in own_credentials_refused(secret, False, False)
    assert "endpoint the job's author chose" in own_credentials_refused(endpoint_only, False, False)
    assert own_credentials_refused(endpoint_only, False, allowed=True) == ""
    assert own_credentials_refused({}, False, False) == ""  # the job relies on the ambient identity too
