"""An output directory belongs to one job: a changed job is refused, not silently given the old result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from datajob_core.data.locations import output_inside_input
from datajob_core.storage.output_identity import OutputInUseError, claim
from datajob_testenv.localjobs import corpus, manifest
from datajob_worker.cli import main as datajob


def result(output: Path) -> dict[str, int]:
    return {
        word: int(n)
        for word, n in (line.split("\t") for line in (output / "result").read_text().splitlines())
    }


def test_a_rerun_after_the_input_changed_is_refused_and_overwrite_gives_a_fresh_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus(tmp_path / "data", files=2, lines=100)
    path = manifest(tmp_path, "out")
    assert datajob(["run", str(path)]) == 0
    assert result(tmp_path / "out")["alpha"] == 200
    (tmp_path / "data" / "in-2.txt").write_text("alpha omega\n" * 10)
    assert datajob(["run", str(path)]) == 1
    error = capsys.readouterr().err
    assert "belongs to job wc (sha256:" in error and "spec.output.overwrite" in error
    assert result(tmp_path / "out")["alpha"] == 200  # the old result is untouched, and not reported as new
    assert datajob(["run", str(path), "--overwrite"]) == 0
    assert result(tmp_path / "out")["alpha"] == 210
    assert result(tmp_path / "out")["omega"] == 10


def test_a_rerun_with_another_processor_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus(tmp_path / "data", files=1, lines=50)
    assert datajob(["run", str(manifest(tmp_path, "out"))]) == 0
    grep = manifest(tmp_path, "out", processor={"builtin": "grep", "options": {"pattern": "w1"}})
    assert datajob(["run", str(grep)]) == 1
    assert "belongs to job wc" in capsys.readouterr().err
    # The same job again resumes its own output: every shard was committed, nothing is redone.
    assert datajob(["run", str(manifest(tmp_path, "out"))]) == 0


def test_an_output_written_before_owners_existed_is_not_trusted(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "part-000000.json").write_text(json.dumps({"shard": 0, "records": 5}))
    with pytest.raises(OutputInUseError, match="an earlier job"):
        claim(tmp_path / "out", {"job": "wc", "id": "sha256:x"})
    claim(tmp_path / "out", {"job": "wc", "id": "sha256:x"}, overwrite=True)
    assert not (tmp_path / "out" / "part-000000.json").exists()
    claim(tmp_path / "out", {"job": "wc", "id": "sha256:x"})  # its own: fine, repeatedly


@pytest.mark.parametrize(
    ("uris", "output", "inside"),
    [
        (["/data/**"], "/data/out", True),
        (["/data/*/*"], "/data/out", True),
        (["/data/*/part-*"], "/data/out", True),
        (["/data/*.txt"], "/data/out", False),
        (["/data/in/*"], "/data/out", False),
        (["s3://bucket/**"], "/data/out", False),
        (["data/**/*.json"], "data/results", True),
    ],
)
def test_output_inside_the_input_set_is_found(uris: list[str], output: str, inside: bool) -> None:
    assert (output_inside_input(uris, output) is not None) is inside


def test_validate_refuses_an_output_inside_its_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = manifest(tmp_path, "data/out", input={"uris": ["data/**"]})
    assert datajob(["validate", str(path)]) == 2
    assert "is inside the input set (data/**)" in capsys.readouterr().err
    assert yaml.safe_load(path.read_text())["spec"]["output"]["uri"] == "data/out"


@pytest.mark.parametrize(
    ("processor", "problem"),
    [
        (
            {"builtin": "grep", "options": {"pattern": "(unclosed"}},
            "spec.processor.options.pattern is not a valid",
        ),
        ({"function": "no_such_module_anywhere:run"}, "module 'no_such_module_anywhere' cannot be imported"),
    ],
)
def test_validate_catches_what_only_this_machine_can_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], processor: dict[str, object], problem: str
) -> None:
    path = manifest(tmp_path, "out", processor=processor)
    assert datajob(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert problem in err
    assert "Traceback" not in err
