"""The run report's page: user-controlled text (reasons, names, the spec) never becomes markup or script."""

from __future__ import annotations

import json
import re

from datajob_core.report.history import build
from datajob_core.report.page import render

EVIL = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"


def test_text_from_user_code_and_the_spec_is_escaped_in_the_report() -> None:
    records = [
        {"shard": 0, "attempt": 1, "startedAt": 1.0, "pod": EVIL, "slot": 0, "outcome": "failed",
         "endedAt": 2.0, "reason": f"ValueError: {EVIL}"},
    ]  # fmt: skip
    history = build(EVIL, records, None, now=3.0, summary={"message": EVIL})
    page = render(history, {"spec": {"processor": {"function": EVIL}}})
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    # The page's figures stay parseable JSON whatever the job's name holds.
    found = re.search(r'<script type="application/json" id="datajob-run">(.*?)</script>', page, re.S)
    assert found is not None and json.loads(found.group(1))["job"] == EVIL
    assert "&lt;img src=x onerror=alert(2)&gt;" in page  # shown, as text


def test_the_report_needs_no_network() -> None:
    page = render(build("j", [], None, now=1.0))
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page), "nothing is fetched"
