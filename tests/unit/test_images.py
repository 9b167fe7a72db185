"""The Dockerfiles keep the promises docs make (no Docker here to build them: see docs/testing.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

IMAGES = Path(__file__).resolve().parents[2] / "images"


def stages(dockerfile: Path) -> list[list[str]]:
    """Instructions per stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    result: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        if result:
            result[-1].append(line)
    return result


@pytest.mark.parametrize("name", ["operator.Dockerfile", "worker.Dockerfile"])
def test_image_is_multi_stage_pinned_slim_and_non_root(name: str) -> None:
    dockerfile = IMAGES / name
    text = dockerfile.read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base, "the base image is one pinned ARG (overridable)"
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base.group(1)), base.group(1)
    build, final = stages(dockerfile)
    assert " AS build" in build[0]
    # The final stage only copies the built venv: no compilers, no package installs, no pip.
    assert not [i for i in final if re.search(r"pip install|apt-get|apk add|gcc|build-essential", i)]
    assert any("COPY --from=build /opt/datajob /opt/datajob" in i for i in final)
    users = [i.split()[1] for i in final if i.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    assert any(i.startswith("ENTRYPOINT") for i in final)


def test_worker_image_does_not_install_the_operator_stack() -> None:
    build = stages(IMAGES / "worker.Dockerfile")[0]
    installs = [i for i in build if "pip install" in i]
    assert installs and not [i for i in installs if "[operator]" in i]
    assert [i for i in stages(IMAGES / "operator.Dockerfile")[0] if '"/src[operator]"' in i]
