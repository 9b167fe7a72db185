"""When the operator runs a job's next pass (datajob_operator.pacing): pure, no cluster."""

from __future__ import annotations

import pytest

from datajob_core.cluster.reconciler import JobState, ObservedReport, Policy, Slot
from datajob_core.shards.ledger import Ledger
from datajob_operator.controller import next_timer
from datajob_operator.pacing import RESYNC_SECONDS, Pacer, report_interval

pytestmark = pytest.mark.unit


def test_a_pod_change_runs_the_next_pass_at_once() -> None:
    pacer = Pacer()
    pacer.taken()
    pacer.passed(100.0, next_in=None, workers=1000)
    pacer.news(urgent=True)
    assert pacer.due(100.001) == 100.001


def test_worker_reports_are_coalesced_more_the_more_workers_a_job_has() -> None:
    small, large = Pacer(), Pacer()
    for pacer, workers in ((small, 4), (large, 1000)):
        pacer.taken()
        pacer.passed(100.0, next_in=None, workers=workers)
        pacer.news(urgent=False)
    assert small.due(100.0) == pytest.approx(100.0 + 4 * 0.005)
    assert large.due(100.0) == pytest.approx(101.0)  # at most one status write a second
    assert report_interval(1_000_000) == 1.0


def test_with_no_news_the_pass_runs_at_the_timer_or_the_resync() -> None:
    pacer = Pacer()
    pacer.taken()
    pacer.passed(100.0, next_in=2.5, workers=3)
    assert pacer.due(100.0) == 102.5
    pacer.taken()
    pacer.passed(110.0, next_in=None, workers=3)
    assert pacer.due(110.0) == 110.0 + RESYNC_SECONDS


def test_news_during_a_pass_is_kept_for_the_next_one() -> None:
    pacer = Pacer()
    pacer.taken()  # a pass starts
    pacer.news(urgent=True)  # a pod fails while it runs
    pacer.passed(100.0, next_in=None, workers=2)
    assert pacer.due(100.2) == 100.2


def test_the_next_timer_is_the_earliest_backoff_or_deadline() -> None:
    state = JobState(Ledger(total=4))
    state.slots = {0: Slot(pod="p-0", not_before=105.0, created_at=90.0), 1: Slot(pod=None, not_before=50.0)}
    policy = Policy(workers=2, heartbeat_timeout=30.0, startup_timeout=300.0)
    reports = {0: ObservedReport(0, None, renewed_at=99.0)}
    assert next_timer(state, policy, reports, now=100.0) == pytest.approx(5.01)  # slot 0's backoff
    state.slots[0].not_before = 0.0
    assert next_timer(state, policy, reports, now=100.0) == pytest.approx(29.01)  # its heartbeat deadline
    assert next_timer(JobState(Ledger(total=1)), policy, {}, now=100.0) is None


def test_a_terminating_pod_waits_a_moment_for_its_deletion_so_one_pass_handles_both() -> None:
    pacer = Pacer()
    pacer.taken()
    pacer.passed(100.0, next_in=None, workers=200)
    pacer.terminating(100.5)
    assert pacer.due(100.5) == pytest.approx(100.55)
    pacer.news(urgent=True)  # the pod is gone: at once
    assert pacer.due(100.51) == 100.51
    pacer.taken()
    pacer.passed(100.51, next_in=None, workers=200)
    assert pacer.due(100.6) == 100.51 + RESYNC_SECONDS  # the pending "soon" was handled by that pass
