"""Every way user code can end gets a verdict with a reason, charged to its shard, and never an endless
loop: one table, run in local mode (the same reconciler drives the operator; the cluster half is
tests/cluster/test_user_code_exits_in_the_cluster.py)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
import yaml

from datajob_core.cluster.reconciler import Phase
from datajob_testenv.localjobs import corpus, manifest
from datajob_testenv.user_code import EXITS
from datajob_worker.local_runner import LocalRun

CASES = [
    # (EXIT_MODE, extra retryPolicy, the phase, what the reason must say)
    ("return", {}, Phase.SUCCEEDED, ""),
    ("raise", {}, Phase.FAILED, "RuntimeError: boom on the trigger record"),
    ("sys.exit0", {}, Phase.FAILED, "SystemExit: user code called sys.exit(0)"),
    ("sys.exit1", {}, Phase.FAILED, "SystemExit: user code called sys.exit(1)"),
    ("os._exit0", {}, Phase.FAILED, "exited with code 0 without being asked to stop"),
    ("os._exit3", {}, Phase.FAILED, "exit code 3"),
    ("SIGKILL", {}, Phase.FAILED, "killed by SIGKILL"),  # what the kernel's OOM killer sends
    ("SIGSEGV", {}, Phase.FAILED, "killed by SIGSEGV"),
    ("hang", {"recordTimeoutSeconds": 2}, Phase.FAILED, "RecordTimeout: shard 0: the user function did not"),
    ("hang", {"shardTimeoutSeconds": 3}, Phase.FAILED, "ShardTimeout: shard 0 did not finish within 3s"),
    ("thread", {}, Phase.SUCCEEDED, ""),
]


@pytest.mark.parametrize(
    ("mode", "limits", "phase", "reason"),
    CASES,
    ids=[f"{c[0]}{'-' + next(iter(c[1])) if c[1] else ''}" for c in CASES],
)
def test_every_exit_path_of_user_code_gets_a_verdict_charged_to_its_shard(
    tmp_path: Path, mode: str, limits: dict[str, int], phase: Phase, reason: str
) -> None:
    corpus(tmp_path / "data", files=2, lines=300)
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "exits.py").write_text(EXITS)
    path = manifest(
        tmp_path,
        "out",
        workers=1,
        input={"uris": ["data/*.txt"], "partitioning": {"mode": "perFile"}},
        processor={"function": "exits:act"},
        env=[{"name": "PYTHONPATH", "value": str(tmp_path / "code")}, {"name": "EXIT_MODE", "value": mode}],
        retryPolicy={"maxShardAttempts": 2, "backoff": {"initialSeconds": 1, "maxSeconds": 1}, **limits},
    )
    screen = io.StringIO()
    started = time.monotonic()
    state = LocalRun(yaml.safe_load(path.read_text()), tmp_path, out=screen, grace_seconds=2).run()
    elapsed = time.monotonic() - started
    assert state.phase is phase, (state.message, screen.getvalue()[-3000:])
    assert elapsed < 60, f"{mode}: {elapsed:.0f}s"
    if phase is Phase.FAILED:
        assert reason in state.message, (state.message, screen.getvalue()[-3000:])
        assert "shard 0" in state.message
        assert 0 in state.ledger.failed, "the failure must be charged to shard 0, the one holding the record"
        assert reason in state.ledger.failed[0].reason
        assert 1 not in state.ledger.failed, "shard 1 did nothing wrong"
    else:
        assert (tmp_path / "out" / "_SUCCESS").exists()
