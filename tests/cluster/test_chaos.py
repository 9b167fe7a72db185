"""The chaos run, short: worker kills, an operator kill and an API server kill; same output as local mode."""

from __future__ import annotations

from pathlib import Path

from datajob_testenv.chaos import ChaosConfig, run_chaos


def test_a_job_survives_worker_operator_and_apiserver_kills_with_output_identical_to_local_mode(
    tmp_path: Path,
) -> None:
    config = ChaosConfig(
        shards=60,
        workers=3,
        seed=7,
        kill_fraction=0.2,
        operator_restarts=1,
        apiserver_restarts=1,
        timeout=420,  # under pytest's 600 s, so that a run that never ends still prints its diagnosis
    )
    result = run_chaos(config, tmp_path)
    print("\n".join(result.lines()))
    assert result.phase == "Succeeded"
    assert result.failed_shards == 0
    assert result.identical_to_local
    assert result.worker_kills > 0 and result.operator_restarts == 1 and result.apiserver_restarts == 1
    assert result.records_read >= result.records_in_input
