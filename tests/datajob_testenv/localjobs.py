"""Helpers for local-mode tests: a generated corpus, DataJob manifests on disk, committed markers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from datajob_worker.cli import main as datajob
from datajob_worker.runtime import OutputDir

from .objectstore import ObjectStore

DATAJOB = [sys.executable, "-m", "datajob_worker.cli"]


def corpus(directory: Path, files: int = 6, lines: int = 3000) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        text = "".join(f"alpha beta w{(f * lines + n) % 97} gamma{n % 13}\n" for n in range(lines))
        (directory / f"in-{f}.txt").write_text(text)


def manifest(tmp_path: Path, out: str, **spec: Any) -> Path:
    body: dict[str, Any] = {
        "image": "local",
        "input": {"uris": ["data/*.txt"], "partitioning": {"mode": "size", "targetShardSize": "32Ki"}},
        "output": {"uri": out},
        "processor": {"builtin": "wordcount"},
        "workers": 3,
        "checkpoint": {"intervalSeconds": 1, "intervalRecords": 200},
        "retryPolicy": {"maxShardAttempts": 10, "backoff": {"initialSeconds": 1, "maxSeconds": 2}},
    }
    body.update(spec)
    path = tmp_path / f"{out.replace('/', '_')}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "datajob.dev/v1alpha1",
                "kind": "DataJob",
                "metadata": {"name": "wc"},
                "spec": body,
            }
        )
    )
    return path


def markers(output: Path) -> list[dict[str, Any]]:
    """Each committed shard's record: from the _SUCCESS manifest once the job committed, else from the
    commit records the shards wrote so far."""
    return shard_records(output)


def shard_records(output: Path) -> list[dict[str, Any]]:
    manifest = output / "_SUCCESS"
    if manifest.exists():
        return list(json.loads(manifest.read_text())["shards"])
    return [json.loads(p.read_text()) for p in sorted((output / "_datajob" / "commits").glob("part-*.json"))]


def committed_text(output: OutputDir, shard: int) -> str:
    """The data of the shard's winning attempt, as its commit record names it (before the job commit)."""
    record = output.committer.committed(shard)
    assert record is not None, f"shard {shard} has no commit record"
    return output.store.read_text(record["objects"]["part"]["object"])


def run_locally(manifest: dict[str, Any], store: ObjectStore, tmp_path: Path) -> Path:
    """The same manifest in local mode, with the user's credentials from the environment and a POSIX
    output (``tmp_path/local-out``, returned)."""
    local = json.loads(json.dumps(manifest))
    local["spec"]["output"] = {"uri": str(tmp_path / "local-out")}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(local))
    with pytest.MonkeyPatch.context() as env:
        for key, value in store.credentials.items():
            env.setenv(key, value)
        env.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        assert datajob(["run", str(tmp_path / "job.yaml")]) == 0
    return tmp_path / "local-out"
