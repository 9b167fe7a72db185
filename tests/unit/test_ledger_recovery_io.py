"""Reading a real output's evidence for spec.output.resume (operator.ledger_recovery): commit records of this
job only, checkpoints and attempt numbers, and the plan record that refuses another plan or rewritten input.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from datajob_core.data.planning import InputFile, plan_shards
from datajob_core.shards.recovery import ResumeMismatchError
from datajob_core.shards.stages import Layout
from datajob_core.storage.attempt_log import AttemptLog
from datajob_core.storage.checkpoint_store import CheckpointStore
from datajob_core.storage.committer import Committer
from datajob_core.storage.stores import Store
from datajob_operator.ledger_recovery import read_evidence, resume

OWNER = "sha256:job"
INPUTS = [InputFile("/in/a.txt", 100, version="1"), InputFile("/in/b.txt", 100, version="1")]
PLAN = plan_shards(INPUTS, {"mode": "perFile"})


def commit(store: Store, shard: int, owner: str = OWNER, records: int = 10) -> None:
    assert Committer(store, owner).commit_shard(shard, 1, b"x\n", {"records": records, "bytes": 2})


def test_committed_checkpointed_and_attempted_shards_are_read_from_the_output(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    commit(store, 0)
    commit(store, 2, records=7)
    CheckpointStore(store).save(1, 3, 4, {"records": 5, "offset": 50}, state={"n": 5})
    AttemptLog(store, OWNER).started(4, 2, {"startedAt": 0})
    evidence = read_evidence(store, OWNER)
    assert evidence.committed == frozenset({0, 2})
    assert evidence.checkpoints == {1: {"records": 5, "offset": 50, "state": "3.4"}}
    assert evidence.attempts[1] == 3 and evidence.attempts[4] == 2
    assert (evidence.records, evidence.bytes) == (17, 4)
    assert not evidence.job_committed


def test_another_jobs_commit_records_are_not_taken_as_done(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    commit(store, 0, owner="sha256:someone-else")
    assert read_evidence(store, OWNER).committed == frozenset()


def test_a_resumed_run_continues_only_over_the_same_plan_and_object_versions(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    layout = Layout.new(len(PLAN))
    resume(store, OWNER, layout, PLAN, INPUTS)  # the first run records its plan
    commit(store, 0)
    rebuilt = resume(store, OWNER, layout, PLAN, INPUTS)
    assert rebuilt.committed == 1
    rewritten = [INPUTS[0], InputFile("/in/b.txt", 100, version="2")]  # same size, new bytes
    with pytest.raises(ResumeMismatchError, match="an input object was rewritten"):
        resume(store, OWNER, layout, PLAN, rewritten)
    with pytest.raises(ResumeMismatchError, match="plans differently"):
        resume(store, OWNER, Layout.new(1), PLAN[:1], INPUTS)


def test_the_first_runs_plan_is_never_replaced_even_before_any_work(tmp_path: Path) -> None:
    """A lost cluster's pods may still start and work to its plan: its successor must not use another."""
    store = Store(str(tmp_path))
    resume(store, OWNER, Layout.new(len(PLAN)), PLAN, INPUTS)
    with pytest.raises(ResumeMismatchError, match=r"deleting .*resume-plan\.json lets this plan count"):
        resume(store, OWNER, Layout.new(1), PLAN[:1], INPUTS)
