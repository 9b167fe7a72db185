"""Object-store input and output against a real S3 server (MinIO on loopback), and the same code on POSIX."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from datajob_core.storage import StorageConfig, Store
from datajob_testenv.datajobs import data_digest
from datajob_testenv.localjobs import corpus, manifest, markers
from datajob_testenv.objectstore import ObjectStore
from datajob_worker.cli import main as datajob


@pytest.fixture(params=["posix", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "posix":
        yield Store(str(tmp_path / "out"))
        return
    server: ObjectStore = request.getfixturevalue("object_store")
    bucket: str = request.getfixturevalue("bucket")
    yield Store(f"{bucket}/out", StorageConfig.from_spec(server.storage_spec()), server.credentials)


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
    assert parts and names == sorted([*parts, "result", "_SUCCESS", "_datajob/owner.json"])
    assert data_digest(out) == data_digest(tmp_path / "ref")
    assert (out / "result").read_bytes() == (tmp_path / "ref" / "result").read_bytes()
    records = markers(out)
    assert [r["shard"] for r in records] == list(range(len(parts)))
    assert any(r["attempt"] > 1 for r in records), "no failure was injected mid-shard"
    assert json.loads((out / "_SUCCESS").read_text())["records"] == 6 * 3000
