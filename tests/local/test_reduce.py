"""The reduce stage in local mode: map -> shuffle by key -> R reducers, exactly once under kills and lost
map output."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from datajob_testenv.localjobs import corpus, manifest, markers
from datajob_worker.cli import main as datajob


def counts(path: Path) -> dict[str, int]:
    return {word: int(n) for word, _, n in (line.rpartition("\t") for line in path.read_text().splitlines())}


@pytest.mark.parametrize("partitions", [1, 3])
def test_a_reduce_job_with_kills_gives_the_counts_of_the_map_only_job(
    tmp_path: Path, partitions: int
) -> None:
    corpus(tmp_path / "data")
    assert datajob(["run", str(manifest(tmp_path, "ref"))]) == 0
    slow = {"builtin": "wordcount", "options": {"delayPerRecord": "0.001"}}
    job = manifest(tmp_path, "reduced", processor=slow, reduce={"partitions": partitions})
    assert datajob(["run", str(job), "--kill-every", "1.5", "--seed", "4"]) == 0
    out = tmp_path / "reduced"
    assert sorted(p.name for p in out.glob("part-*")) == [f"part-r-{p:05d}" for p in range(partitions)]
    assert counts(out / "result") == counts(tmp_path / "ref" / "result")
    if partitions == 1:  # one reducer merges everything: the same bytes as the map-only merge
        assert (out / "result").read_bytes() == (tmp_path / "ref" / "result").read_bytes()
    # Each reducer holds only its keys: no word is in two partitions.
    words = [set(counts(out / f"part-r-{p:05d}")) for p in range(partitions)]
    assert sum(len(w) for w in words) == len(set().union(*words))
    manifest_doc = json.loads((out / "_SUCCESS").read_text())
    assert [e["partition"] for e in manifest_doc["partitions"]] == list(range(partitions))
    assert manifest_doc["records"] == 6 * 3000
    assert not (out / "_attempts").exists(), "intermediate map output is scratch"
    assert any(m["attempt"] > 1 for m in markers(out)), "no kill landed mid-shard"


def test_a_lost_map_output_reruns_only_that_map_shard(tmp_path: Path) -> None:
    corpus(tmp_path / "data")
    assert datajob(["run", str(manifest(tmp_path, "ref", reduce={"partitions": 2}))]) == 0
    # Reducers read one map output every 0.3 s, so the last shard's is read seconds after the map stage.
    slow = {"builtin": "wordcount", "options": {"delayPerCommittedShard": "0.3"}}
    job = manifest(tmp_path, "lossy", processor=slow, reduce={"partitions": 2})
    out = tmp_path / "lossy"
    records = out / "_datajob" / "commits"
    expected = len(json.loads((tmp_path / "ref" / "_SUCCESS").read_text())["shards"])  # map shards
    deleted: list[Path] = []

    def delete_the_last_map_output() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            shards = sorted(records.glob("part-*.json")) if records.exists() else []
            maps = [p for p in shards if "r-00000" in p.read_text()]
            if len(maps) == expected:  # the map stage is done; the reducers are starting
                last = json.loads(maps[-1].read_text())
                target = out / last["objects"]["r-00000"]["object"]
                target.unlink()
                deleted.append(target)
                return
            time.sleep(0.05)

    thief = threading.Thread(target=delete_the_last_map_output)
    thief.start()
    assert datajob(["run", str(job)]) == 0
    thief.join()
    assert deleted, "the map output was never deleted"
    assert (out / "result").read_bytes() == (tmp_path / "ref" / "result").read_bytes()
    attempts = {m["shard"]: m["attempt"] for m in markers(out)}
    # Attempt 3: a reopened shard skips one number past the winner's (a backup of it may have been issued).
    assert attempts[expected - 1] == 3, "the shard whose output was lost did not run again"
    assert set(attempts.values()) == {1, 3} and list(attempts.values()).count(3) == 1, "others re-ran too"


MAPREDUCE = """
def by_letter(line):
    return [(word[0], word) for word in line.split()]


def distinct(letter, words):
    return len(set(words))
"""


def test_a_user_mapper_and_reducer_run_as_a_reduce_stage(tmp_path: Path) -> None:
    corpus(tmp_path / "data")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "letters.py").write_text(MAPREDUCE)
    job = manifest(
        tmp_path,
        "letters",
        processor={"function": "letters:by_letter", "options": {"delayPerRecord": "0.0005"}},
        reduce={"partitions": 3, "function": "letters:distinct"},
        env=[{"name": "PYTHONPATH", "value": str(tmp_path / "code")}],
    )
    assert datajob(["run", str(job), "--kill-every", "2", "--seed", "2"]) == 0
    expected: dict[str, set[str]] = {}
    for path in (tmp_path / "data").glob("*.txt"):
        for word in path.read_text().split():
            expected.setdefault(word[0], set()).add(word)
    lines = (tmp_path / "letters" / "result").read_text().splitlines()
    got = {json.loads(key): json.loads(value) for key, _, value in (line.partition("\t") for line in lines)}
    assert got == {letter: len(words) for letter, words in expected.items()}
    assert len(list((tmp_path / "letters").glob("part-r-*"))) == 3
