"""The run report beside a job's output: ``_datajob/report.html``, drawn from what the output holds.

Its data are the attempt log (datajob_core.storage.attempt_log) and the ``_SUCCESS`` manifest, read with
whatever identity the caller has: the job's own in its commit task and in local mode, the user's in
``kubectl datajob report``. Written last by the job commit, so it outlives the DataJob and its TTL.
"""

from __future__ import annotations

import time
from typing import Any

from datajob_core.report import history as run_history
from datajob_core.report.history import RunHistory
from datajob_core.report.page import render
from datajob_core.storage.attempt_log import AttemptLog
from datajob_core.storage.committer import Committer
from datajob_core.storage.stores import Store

REPORT_NAME = "_datajob/report.html"


def history_of(
    store: Store,
    owner: str | None,
    job: str,
    *,
    finished: bool = False,
    summary: dict[str, Any] | None = None,
) -> RunHistory:
    """The job's history as its output holds it: once committed, from ``_SUCCESS``; before (running, or
    failed: ``finished``), from the commit records so far."""
    committer = Committer(store, owner)
    manifest = committer.published()
    winners = run_history.winners_of(manifest) if manifest is not None else committer.records()
    return run_history.build(
        job,
        AttemptLog(store, owner).read(),
        winners,
        finished=finished or manifest is not None,
        now=time.time(),
        summary=summary,
    )


def publish(
    store: Store,
    owner: str | None,
    job: str,
    *,
    spec: dict[str, Any] | None = None,
    summary: dict[str, Any] | None = None,
    finished: bool = False,
) -> str:
    """Writes the report beside the output (REPORT_NAME); its URL."""
    history = history_of(store, owner, job, finished=finished, summary=summary)
    store.write(REPORT_NAME, render(history, spec))
    return store.url_of(REPORT_NAME)
