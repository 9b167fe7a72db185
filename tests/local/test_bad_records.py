"""Malformed records and encodings: an explicit policy, never silent truncation, padding or replacement."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from datajob_core.cluster.reconciler import Phase
from datajob_core.protocol import ShardTask
from datajob_core.storage.committer import BAD_RECORDS
from datajob_testenv.localjobs import manifest, markers
from datajob_worker import processors
from datajob_worker.cli import main as datajob
from datajob_worker.local_runner import LocalRun
from datajob_worker.runtime import (
    OutputDir,
    PermanentShardError,
    Progress,
    ShardContext,
    ShardInterruptedError,
    run_shard,
)

RAGGED_CSV = b"city,amount\nOslo,4\nParis,3,extra\nLima\nOslo,1\n"


def run(
    path: Path, fmt: str, out: Path, *, policy: str = "Fail", encoding: str = "utf-8", spec: Any = None
) -> Progress:
    task = ShardTask(
        shard=0, attempt=1, input={"pieces": [{"path": str(path), "start": 0, "end": path.stat().st_size}]}
    )
    processor = processors.build(spec or {"builtin": "transform"})
    output = OutputDir(str(out))
    context = ShardContext(fmt, processor, output, lambda *_: None, encoding=encoding, bad_records=policy)
    progress = run_shard(task, context)
    output.committer.commit_job(1, processors.concatenate, {"job": "t"})  # publishes part and dead letters
    return progress


def test_a_ragged_csv_row_fails_the_shard_naming_file_offset_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(RAGGED_CSV)
    with pytest.raises(PermanentShardError) as failed:
        run(path, "csv", tmp_path / "out")
    message = str(failed.value)
    assert str(path) in message
    assert "at byte 19 (line 3)" in message
    assert "3 field(s) where the header has 2" in message


def test_skip_drops_and_counts_malformed_rows_and_dead_letter_keeps_them(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(RAGGED_CSV)
    skipped = run(path, "csv", tmp_path / "skip", policy="Skip")
    assert (skipped.records, skipped.skipped) == (2, 2)
    assert (tmp_path / "skip" / "part-000000").read_text().count("\n") == 2
    assert markers(tmp_path / "skip")[0]["skipped"] == 2
    assert not (tmp_path / "skip" / BAD_RECORDS).exists()
    run(path, "csv", tmp_path / "dead", policy="DeadLetter")
    letters = [json.loads(line) for line in (tmp_path / "dead" / BAD_RECORDS / "part-000000.jsonl").open()]
    assert [(d["offset"], d["record"]) for d in letters] == [(19, "Paris,3,extra"), (33, "Lima")]
    assert all(d["file"] == str(path) and "field(s)" in d["error"] for d in letters)


def test_undecodable_text_fails_by_default_and_reads_with_the_right_encoding(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes("caf\xe9 ok\nna\xefve line\n".encode("latin-1"))
    with pytest.raises(PermanentShardError, match=r"at byte 0 \(line 1\): UnicodeDecodeError"):
        run(path, "text", tmp_path / "utf8", spec={"builtin": "wordcount"})
    run(path, "text", tmp_path / "latin1", encoding="latin-1", spec={"builtin": "wordcount"})
    assert "café\t1" in (tmp_path / "latin1" / "part-000000").read_text()
    # Nothing is silently replaced with U+FFFD and counted.
    assert "\ufffd" not in (tmp_path / "latin1" / "part-000000").read_text()


def test_a_csv_header_that_does_not_decode_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes("cit\xe9,amount\nOslo,4\n".encode("latin-1"))
    with pytest.raises(PermanentShardError, match=r"the CSV header \(line 1\) is not valid utf-8"):
        run(path, "csv", tmp_path / "out", policy="Skip")


def test_invalid_json_lines_follow_the_policy(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": \n\n{"a": 2}\n')
    with pytest.raises(PermanentShardError, match=r"line 2\): JSONDecodeError"):
        run(path, "jsonl", tmp_path / "fail")
    progress = run(path, "jsonl", tmp_path / "skip", policy="Skip")
    assert (progress.records, progress.skipped) == (2, 1)


def test_dead_letters_survive_a_resume_from_checkpoint(tmp_path: Path) -> None:
    rows = [b"city,amount\n"] + [b"Oslo,1\n" if n % 50 else b"broken\n" for n in range(1, 2000)]
    path = tmp_path / "t.csv"
    path.write_bytes(b"".join(rows))
    reference = run(path, "csv", tmp_path / "ref", policy="DeadLetter")
    output = OutputDir(str(tmp_path / "out"))
    saved: list[dict[str, Any]] = []

    def crash_midway(progress: Progress, state: processors.State, count: int) -> None:
        progress.state_file = output.checkpoints.save(
            0, 1, len(saved) + 1, progress.position(), state, bad=progress.bad
        )
        saved.append(progress.checkpoint())
        if progress.records > 1000:
            raise ShardInterruptedError

    task = ShardTask(
        shard=0, attempt=1, input={"pieces": [{"path": str(path), "start": 0, "end": path.stat().st_size}]}
    )
    with pytest.raises(ShardInterruptedError):
        run_shard(
            task,
            ShardContext(
                "csv",
                processors.build({"builtin": "transform"}),
                output,
                crash_midway,
                bad_records="DeadLetter",
            ),
        )
    resumed = task.model_copy(update={"attempt": 2, "checkpoint": saved[-1]})
    progress = run_shard(
        resumed,
        ShardContext(
            "csv",
            processors.build({"builtin": "transform"}),
            output,
            lambda *_: None,
            bad_records="DeadLetter",
        ),
    )
    assert progress.skipped == reference.skipped == 39
    bad = Path(BAD_RECORDS) / "part-000000.jsonl"
    output.committer.commit_job(1, processors.concatenate, {"job": "t"})
    assert (tmp_path / "out" / bad).read_text() == (tmp_path / "ref" / bad).read_text()


def test_a_malformed_record_fails_the_job_at_once_with_the_reason(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_bytes(b"fine\n")
    (data / "b.txt").write_bytes(b"fine\n\xff\xfe broken\n")
    path = manifest(tmp_path, "out", input={"uris": ["data/*.txt"]}, workers=1)
    state = LocalRun(yaml.safe_load(path.read_text()), tmp_path).run()
    assert state.phase is Phase.FAILED
    assert "b.txt at byte 5 (line 2)" in state.message
    failed = state.ledger.failed[1]
    assert failed.attempts == 1, "a malformed record is not retried: every attempt would meet it"


def test_skipped_records_are_counted_in_the_summary(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "t.txt").write_bytes(b"one\n\xff two\nthree\n")
    path = manifest(tmp_path, "out", input={"uris": ["data/*.txt"], "badRecordPolicy": "Skip"}, workers=1)
    summary = io.StringIO()
    state = LocalRun(yaml.safe_load(path.read_text()), tmp_path, out=summary).run()
    assert (state.phase, state.records, state.skipped) == (Phase.SUCCEEDED, 2, 1)
    assert "1 malformed record(s) skipped" in summary.getvalue()
    assert [m["skipped"] for m in markers(tmp_path / "out")] == [1]


def test_an_unknown_encoding_is_rejected_by_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = manifest(tmp_path, "out", input={"uris": ["data/*.txt"], "encoding": "klingon-8"})
    assert datajob(["validate", str(path)]) == 2
    assert "spec.input.encoding: unknown encoding 'klingon-8'" in capsys.readouterr().err


def _skipping_run(tmp_path: Path, bad: int, good: int, **input_spec: Any) -> Any:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.jsonl").write_text('{"ok": 1}\n' * good + "not json\n" * bad)
    spec = {"uris": ["data/*.jsonl"], "format": "jsonl", "badRecordPolicy": "Skip", **input_spec}
    path = manifest(tmp_path, "out", workers=1, input=spec, processor={"builtin": "transform"})
    return LocalRun(yaml.safe_load(path.read_text()), tmp_path, out=io.StringIO()).run()


def test_a_job_that_skipped_every_record_fails_instead_of_succeeding_with_nothing(tmp_path: Path) -> None:
    state = _skipping_run(tmp_path, bad=40, good=0)
    assert state.phase is Phase.FAILED and state.reason == "TooManyBadRecords"
    assert state.message == "40 of 40 records (100.0%) were malformed and skipped"
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_more_bad_records_than_max_bad_record_ratio_fails_the_job_before_its_output_is_committed(
    tmp_path: Path,
) -> None:
    state = _skipping_run(tmp_path, bad=20, good=80, maxBadRecordRatio=0.1)
    assert state.phase is Phase.FAILED and state.reason == "TooManyBadRecords"
    assert "(spec.input.maxBadRecordRatio 0.1)" in state.message
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_bad_records_within_max_bad_record_ratio_still_succeed(tmp_path: Path) -> None:
    state = _skipping_run(tmp_path, bad=5, good=95, maxBadRecordRatio=0.1)
    assert state.phase is Phase.SUCCEEDED and state.skipped == 5


def test_a_garbage_parquet_file_fails_its_shard_once_as_malformed_not_as_a_transient_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.parquet"
    path.write_bytes(b"this is not parquet at all\n" * 10)
    with pytest.raises(PermanentShardError, match=r"t.parquet is not a readable Parquet file"):
        run(path, "parquet", tmp_path / "out", policy="Skip")
