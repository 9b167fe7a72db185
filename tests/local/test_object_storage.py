"""Object-store input and output against a real S3 server (MinIO on loopback), and the same code on POSIX."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from datajob_core.storage.committer import Committer
from datajob_core.storage.stores import Store
from datajob_testenv.datajobs import JOB_FILES_KEPT, data_digest, published
from datajob_testenv.localjobs import corpus, manifest, markers
from datajob_testenv.objectstore import ObjectStore
from datajob_worker.cli import main as datajob
from datajob_worker.processors import concatenate


def test_exclusive_create_lets_exactly_one_of_many_concurrent_writers_win(store: Store) -> None:
    barrier = threading.Barrier(8)
    wins: list[int] = []

    def writer(number: int) -> None:
        barrier.wait()
        if store.create("_datajob/commits/part-000000.json", f"writer {number}\n"):
            wins.append(number)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1
    assert store.read_text("_datajob/commits/part-000000.json") == f"writer {wins[0]}\n"
    # A later creator loses too, and the object is unchanged.
    assert not store.create("_datajob/commits/part-000000.json", "late\n")
    assert store.read_text("_datajob/commits/part-000000.json") == f"writer {wins[0]}\n"


def test_the_store_lists_copies_and_deletes_objects_alike_on_s3_and_posix(store: Store) -> None:
    store.write("_attempts/000001/2/part", b"data")
    store.write("_attempts/000001/3/part", b"other")
    store.write("result", "r")
    assert store.list() == ["_attempts", "result"]
    assert store.list("_attempts/000001") == ["2", "3"]
    assert store.list("nothing/here") == []
    store.copy("_attempts/000001/2/part", "part-000001")
    assert store.read_bytes("part-000001") == b"data"
    assert store.size("part-000001") == 4
    assert sorted(store.walk("_attempts")) == ["_attempts/000001/2/part", "_attempts/000001/3/part"]
    store.delete_tree("_attempts")
    assert store.list() == ["part-000001", "result"]
    store.delete("result")
    store.delete("result")  # deleting what is gone is not an error
    with pytest.raises(FileNotFoundError):
        store.read_bytes("result")


def test_a_local_run_reads_and_writes_s3_with_kills_and_matches_the_posix_run(
    tmp_path: Path, object_store: ObjectStore, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus(tmp_path / "data")
    fs = object_store.filesystem()
    for path in sorted((tmp_path / "data").glob("*.txt")):
        fs.pipe(f"{bucket.removeprefix('s3://')}/in/{path.name}", path.read_bytes())
    for key, value in object_store.credentials.items():
        monkeypatch.setenv(key, value)  # local mode: the user's own credentials, as any S3 client takes them
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert datajob(["run", str(manifest(tmp_path, "ref"))]) == 0
    remote = manifest(
        tmp_path,
        f"{bucket}/out",
        input={"uris": [f"{bucket}/in/*.txt"], "partitioning": {"mode": "size", "targetShardSize": "32Ki"}},
        storage=object_store.storage_spec(),
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.001"}},
    )
    assert datajob(["run", str(remote), "--kill-every", "1.5", "--seed", "12"]) == 0

    out = tmp_path / "downloaded"
    fs.get(f"{bucket.removeprefix('s3://')}/out/", str(out), recursive=True)
    # Exactly what a failure-free POSIX run publishes: parts, result, manifest; no scratch, no losers.
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    parts = [n for n in names if n.startswith("part-")]
    assert parts and published(names) == sorted([*parts, "result", "_SUCCESS", *JOB_FILES_KEPT])
    assert data_digest(out) == data_digest(tmp_path / "ref")
    assert (out / "result").read_bytes() == (tmp_path / "ref" / "result").read_bytes()
    records = markers(out)
    assert [r["shard"] for r in records] == list(range(len(parts)))
    assert any(r["attempt"] > 1 for r in records), "no failure was injected mid-shard"
    assert json.loads((out / "_SUCCESS").read_text())["records"] == 6 * 3000


def objects(store: Store) -> list[str]:
    return sorted(store.walk())


def test_a_zombie_committing_late_loses_and_the_job_commit_leaves_only_the_winners_output(
    store: Store,
) -> None:
    committer = Committer(store, owner="job-uid")
    assert committer.commit_shard(0, 2, b"current\n", {"records": 1})
    assert committer.commit_shard(1, 1, b"other\n", {"records": 1})
    # Attempt 1 of shard 0 was presumed dead and replaced; it finishes late, with different bytes.
    assert not committer.commit_shard(0, 1, b"zombie\n", {"records": 1})
    assert (committer.committed(0) or {})["attempt"] == 2
    done = committer.commit_job(2, concatenate, {"job": "j"})
    assert done.missing == []
    assert store.read_text("part-000000") == "current\n"
    assert store.read_text("result") == "current\nother\n"
    assert objects(store) == ["_SUCCESS", "part-000000", "part-000001", "result"]
    manifest = json.loads(store.read_text("_SUCCESS"))
    assert [(e["shard"], e["attempt"]) for e in manifest["shards"]] == [(0, 2), (1, 1)]
    assert manifest["owner"] == "job-uid" and manifest["records"] == 2


def test_a_job_commit_interrupted_at_any_shard_and_rerun_gives_the_same_output(
    stores: Callable[[str], Store], tmp_path: Path
) -> None:
    def prepared(target: Store) -> Committer:
        committer = Committer(target, owner="job-uid")
        for shard in range(4):
            committer.commit_shard(shard, 1, f"w{shard}\t{shard + 1}\n".encode(), {"records": shard})
        return committer

    reference = Store(str(tmp_path / "reference"))
    prepared(reference).commit_job(4, concatenate, {"job": "j"})
    expected = {name: reference.read_bytes(name) for name in objects(reference)}
    for stop_at in range(4):
        target = stores(f"run-{stop_at}")
        committer = prepared(target)

        def crash(shard: int, stop_at: int = stop_at) -> None:
            if shard == stop_at:
                raise RuntimeError("killed mid-commit")

        with pytest.raises(RuntimeError):
            committer.commit_job(4, concatenate, {"job": "j"}, on_shard=crash)
        committer.commit_job(4, concatenate, {"job": "j"})
        committer.commit_job(4, concatenate, {"job": "j"})  # and once more: nothing changes
        assert {name: target.read_bytes(name) for name in objects(target)} == expected


def test_csv_and_parquet_read_from_s3_aggregate_like_the_same_files_on_disk(
    tmp_path: Path, object_store: ObjectStore, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.csv as pacsv  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    rows = 30000
    table = pa.table(
        {
            "region": [["emea", "amer", "apac"][n % 3] for n in range(rows)],
            "amount": [n % 101 for n in range(rows)],
        }
    )
    (tmp_path / "data").mkdir()
    pacsv.write_csv(table, tmp_path / "data" / "orders.csv")
    pq.write_table(table, tmp_path / "data" / "orders.parquet", row_group_size=5000)
    fs = object_store.filesystem()
    for name in ("orders.csv", "orders.parquet"):
        fs.put_file(str(tmp_path / "data" / name), f"{bucket.removeprefix('s3://')}/in/{name}")
    for key, value in object_store.credentials.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    aggregate = {"builtin": "aggregate", "options": {"groupBy": "region", "value": "amount"}}
    split = {"mode": "size", "targetShardSize": "64Ki"}
    results = {}
    for fmt in ("csv", "parquet"):
        for where, uri in (("disk", f"{tmp_path}/data/orders.{fmt}"), ("s3", f"{bucket}/in/orders.{fmt}")):
            out = f"out-{fmt}-{where}" if where == "disk" else f"{bucket}/out-{fmt}"
            job = manifest(
                tmp_path,
                out,
                input={
                    "uris": [uri],
                    "format": fmt,
                    "partitioning": split,
                },
                processor=aggregate,
                storage=object_store.storage_spec(),
            )
            assert datajob(["run", str(job)]) == 0
            results[fmt, where] = (
                (tmp_path / out / "result").read_bytes()
                if where == "disk"
                else fs.cat_file(f"{bucket.removeprefix('s3://')}/out-{fmt}/result")
            )
    assert results["csv", "s3"] == results["csv", "disk"]
    assert results["parquet", "s3"] == results["parquet", "disk"] == results["csv", "disk"]
