"""Locates the pinned Kubernetes binaries, building them on first use (see hack/build-tools.sh)."""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-tools.sh"


@cache
def bin_dir() -> Path:
    """Directory of etcd, kube-apiserver, kube-scheduler, kube-controller-manager, kubectl, kwok, helm."""
    override = os.environ.get("DATAJOB_TOOLS_BIN")
    if override:
        return Path(override)
    # The script is idempotent and prints the cached directory on its last line.
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(result.stdout.strip().splitlines()[-1])


TOOL_SETS = ("all", "control-plane", "none")  # hack/build-tools.sh's DATAJOB_TOOLS_SET


def tool(name: str) -> str:
    path = bin_dir() / name
    if not path.is_file():
        chosen = os.environ.get("DATAJOB_TOOLS_SET") or "all"
        if chosen not in TOOL_SETS:
            raise ValueError(f"DATAJOB_TOOLS_SET={chosen!r}: one of {', '.join(TOOL_SETS)}")
        if chosen != "all" and os.environ.get("CI") != "true":
            # A smaller build was asked for (make test TOOLS=control-plane): the test is skipped, saying so,
            # and the suite's "tiers" summary counts it. With every tool asked for, a missing one is an error.
            import pytest  # noqa: PLC0415 - only under pytest is a missing tool a skip

            pytest.skip(
                f"needs {name}, which DATAJOB_TOOLS_SET={chosen} does not build (make tools builds it)"
            )
        raise FileNotFoundError(f"{name} not found in {bin_dir()}; run hack/build-tools.sh")
    return str(path)
