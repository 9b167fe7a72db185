"""The exit-path table of tests/local/test_exit_paths.py, through the operator: each way user code ends is a
verdict charged to the shard holding the record, with a reason in the DataJob's condition, never an endless
crash loop. (The node agent runs workers as processes; an OOM kill is a SIGKILL there.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from datajob_testenv.datajobs import Jobs, condition, job_manifest, shards_ledger, write_inputs
from datajob_testenv.user_code import EXITS

CASES = [
    ("sys.exit0", {}, "SystemExit: user code called sys.exit(0)"),
    ("os._exit0", {}, "exited with code 0 without being asked to stop"),
    ("os._exit3", {}, "exit code 3"),
    ("SIGSEGV", {}, "exit code 139"),
    (
        "hang",
        {"recordTimeoutSeconds": 2},
        "RecordTimeout: shard 0: the user function did not return within 2s",
    ),
]


@pytest.mark.parametrize(("mode", "limits", "reason"), CASES, ids=[c[0] for c in CASES])
def test_user_code_exit_paths_in_the_cluster_fail_the_shard_holding_the_record_with_a_reason(
    jobs: Jobs, tmp_path: Path, mode: str, limits: dict[str, int], reason: str
) -> None:
    write_inputs(tmp_path / "in", files=2, lines=60)
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "exits.py").write_text(EXITS)
    name = f"exit-{mode.replace('.', '').replace('_', '').lower()}"
    manifest = job_manifest(
        name,
        tmp_path / "in",
        tmp_path / "out",
        workers=1,
        input={"uris": [f"{tmp_path / 'in'}/*.txt"], "partitioning": {"mode": "perFile"}},
        processor={"function": "exits:act"},
        env=[
            {"name": "PYTHONPATH", "value": str(tmp_path / "code")},
            {"name": "EXIT_MODE", "value": mode},
            {"name": "EXIT_TRIGGER", "value": "file 0 line 30 alpha beta"},
        ],
        retryPolicy={"maxShardAttempts": 2, "backoff": {"initialSeconds": 1, "maxSeconds": 1}, **limits},
    )
    jobs.create(manifest)
    status = jobs.wait_phase(name, "Failed", timeout=150)
    failed = condition(status, "Failed")
    assert failed["reason"] == "ShardsFailed", failed
    assert reason in failed["message"] and "shard 0" in failed["message"], failed["message"]
    ledger = shards_ledger(status)
    assert set(ledger.get("failed") or {}) == {"0"}, ledger  # shard 1 did nothing wrong
    assert status["shards"]["failed"] == 1
