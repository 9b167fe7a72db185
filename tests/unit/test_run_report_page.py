"""The run report's page: user-controlled text (reasons, names, the spec) never becomes markup or script."""

from __future__ import annotations

import json
import re

from datajob_core.report.history import build
from datajob_core.report.page import MAX_BARS, drawn, render

EVIL = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"


def test_text_from_user_code_and_the_spec_is_escaped_in_the_report() -> None:
    records = [
        {"shard": 0, "attempt": 1, "startedAt": 1.0, "pod": EVIL, "slot": 0, "outcome": "failed",
         "endedAt": 2.0, "reason": f"ValueError: {EVIL}"},
    ]  # fmt: skip
    history = build(EVIL, records, [], finished=True, now=3.0, summary={"message": EVIL})
    page = render(history, {"spec": {"processor": {"function": EVIL}}})
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    # The page's figures stay parseable JSON whatever the job's name holds.
    found = re.search(r'<script type="application/json" id="datajob-run">(.*?)</script>', page, re.S)
    assert found is not None and json.loads(found.group(1))["job"] == EVIL
    assert "&lt;img src=x onerror=alert(2)&gt;" in page  # shown, as text


def test_the_report_needs_no_network() -> None:
    page = render(build("j", [], [], finished=True, now=1.0))
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page), "nothing is fetched"


def test_the_page_forbids_fetching_anything_and_leaves_env_values_out() -> None:
    spec = {
        "spec": {"env": [{"name": "API_TOKEN", "value": "s3cr3t"}], "processor": {"builtin": "wordcount"}}
    }
    page = render(build("j", [], [], finished=True, now=1.0), spec)
    assert "Content-Security-Policy" in page
    assert "default-src 'none'" in page
    assert "API_TOKEN" in page and "s3cr3t" not in page


def test_a_huge_job_draws_every_attempt_that_did_not_commit_and_a_sample_of_the_rest() -> None:
    records = [
        {"shard": n, "attempt": 1, "startedAt": float(n), "slot": n % 50, "pod": f"p{n % 50}"}
        for n in range(60_000)
    ]
    records += [
        {
            "shard": n,
            "attempt": 2,
            "startedAt": float(n) + 0.5,
            "slot": 0,
            "outcome": "failed",
            "endedAt": n + 0.6,
        }
        for n in range(0, 60_000, 100)
    ]
    winners = [{"shard": n, "attempt": 1, "committedAt": float(n) + 1, "records": 1} for n in range(60_000)]
    history = build("j", records, winners, finished=True, now=1.0)
    shown = drawn(history.attempts)
    assert len(shown) <= MAX_BARS
    assert sum(a.outcome == "failed" for a in shown) == 600  # every one that did not commit
