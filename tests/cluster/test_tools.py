"""The pinned binaries the suite and later install tests rely on are the versions hack/ pins."""

from __future__ import annotations

import re
import subprocess

import pytest

from datajob_testenv.tools import BUILD_SCRIPT, tool


def _pinned(name: str) -> str:
    match = re.search(rf'^{name}="(v[^"]+)"', BUILD_SCRIPT.read_text(), re.MULTILINE)
    assert match, f"{name} not pinned in {BUILD_SCRIPT}"
    return match.group(1)


def _output(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    ("binary", "argv", "pin"),
    [
        ("kube-apiserver", ["--version"], "K8S_VERSION"),
        ("kube-scheduler", ["--version"], "K8S_VERSION"),
        ("kube-controller-manager", ["--version"], "K8S_VERSION"),
        ("kubectl", ["version", "--client"], "K8S_VERSION"),
        ("etcd", ["--version"], "ETCD_VERSION"),
        ("helm", ["version", "--short"], "HELM_VERSION"),
        ("kubeconform", ["-v"], "KUBECONFORM_VERSION"),
    ],
)
def test_binary_reports_pinned_version(binary: str, argv: list[str], pin: str) -> None:
    assert _pinned(pin).lstrip("v") in _output(tool(binary), *argv)
