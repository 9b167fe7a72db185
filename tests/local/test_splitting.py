"""Splitting a straggler's remainder in local mode (the same reconciler and ledger as the operator), with real
worker processes: when workers go idle while one large shard is still being read, its worker stops at a
record boundary, commits what it read, and the rest is split into new shards for the idle workers. The
published result is byte-identical to an undisturbed run's, also when workers are killed throughout."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from datajob_testenv.localjobs import DATAJOB, manifest

# A transform that takes 2 ms a record when SLOW is set (so the large file straggles), none otherwise.
SLOWPOKE = """
import os, time

def process(record):
    if os.environ.get("SLOW"):
        time.sleep(0.002)
    return record.upper()
"""
SPLITTING = {"enabled": True, "minRemainder": "4Ki"}


def _job(tmp_path: Path, out: str, **spec: object) -> Path:
    data = tmp_path / "data"
    if not data.exists():
        data.mkdir()
        # One file 20x the others: with perFile shards it is the job's tail.
        (data / "big.txt").write_text("".join(f"big line {i} {'x' * (i % 23)}\n" for i in range(4000)))
        for f in range(6):
            (data / f"small{f}.txt").write_text("".join(f"small {f} line {i}\n" for i in range(200)))
    (tmp_path / "slowpoke.py").write_text(SLOWPOKE)
    return manifest(
        tmp_path,
        out,
        input={"uris": ["data/*.txt"], "partitioning": {"mode": "perFile"}},
        processor={"function": "slowpoke:process"},
        workers=4,
        checkpoint={"intervalSeconds": 1},
        **spec,
    )


def _run(tmp_path: Path, path: Path, *args: str, slow: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    if slow:
        env["SLOW"] = "1"
    return subprocess.run(
        [*DATAJOB, "run", str(path), *args], check=True, env=env, capture_output=True, text=True, cwd=tmp_path
    )


def _manifest(output: Path) -> dict[str, object]:
    return dict(json.loads((output / "_SUCCESS").read_text()))


def test_a_straggling_shards_remainder_is_split_among_idle_workers_and_the_output_is_byte_identical(
    tmp_path: Path,
) -> None:
    _run(tmp_path, _job(tmp_path, "plain"), slow=False)
    done = _run(tmp_path, _job(tmp_path, "split", splitting=SPLITTING), slow=True)
    assert "ShardSplit: shard" in done.stderr, done.stderr
    assert (tmp_path / "split" / "result").read_bytes() == (tmp_path / "plain" / "result").read_bytes()
    published = _manifest(tmp_path / "split")
    shards = published["shards"]
    assert isinstance(shards, list)
    children = [s for s in shards if "of" in s]
    assert children, shards
    # The parts of a split shard are published under names that sort in input order, after their root's.
    names = [s["object"] for s in shards]
    assert names == sorted(names)
    assert any(name.startswith("part-000000-") for name in names), names
    # Every record exactly once: the counts add up to the undisturbed run's.
    assert published["records"] == _manifest(tmp_path / "plain")["records"] == 4000 + 6 * 200


def test_a_split_shard_under_worker_kills_publishes_every_record_exactly_once(tmp_path: Path) -> None:
    _run(tmp_path, _job(tmp_path, "plain"), slow=False)
    path = _job(tmp_path, "killed", splitting=SPLITTING)
    done = _run(tmp_path, path, "--kill-every", "3", "--seed", "7", slow=True)
    assert "ShardSplit: shard" in done.stderr, done.stderr
    assert (tmp_path / "killed" / "result").read_bytes() == (tmp_path / "plain" / "result").read_bytes()
    assert _manifest(tmp_path / "killed")["records"] == 4000 + 6 * 200


def test_splitting_is_off_where_shards_cannot_be_split_and_the_job_still_runs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("k,v\n" + "".join(f"{i},{i * 2}\n" for i in range(300)))
    path = manifest(
        tmp_path,
        "csv",
        input={"uris": ["data/*.csv"], "format": "csv", "partitioning": {"mode": "perFile"}},
        processor={"builtin": "wordcount"},
        splitting=SPLITTING,
    )
    done = _run(tmp_path, path, slow=False)
    assert "ShardSplit" not in done.stderr
    assert (tmp_path / "csv" / "_SUCCESS").exists()
