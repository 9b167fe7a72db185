"""The run report as a person sees it: headless Chromium opens it from the file system, offline.

The screenshot each test takes is kept under the test's temporary directory (a CI artifact).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from datajob_core.storage.attempt_log import DIRECTORY as ATTEMPTS
from datajob_testenv.browser import chromium, count_elements, open_page
from datajob_testenv.localjobs import corpus, manifest
from datajob_worker.cli import main as datajob

needs_chromium = pytest.mark.skipif(
    chromium() is None, reason="needs Debian's chromium (.ci/run installs it)"
)


def _run_data(report: Path) -> dict[str, object]:
    found = re.search(r'<script type="application/json" id="datajob-run">(.*?)</script>', report.read_text())
    assert found, "the report carries its figures for checking"
    data: dict[str, object] = json.loads(found.group(1))
    return data


@needs_chromium
def test_the_report_of_a_job_with_kills_shows_every_attempt_and_every_kill(tmp_path: Path) -> None:
    corpus(tmp_path / "data", files=4, lines=2000)
    slow = {"builtin": "wordcount", "options": {"delayPerRecord": "0.0005"}}
    job = manifest(tmp_path, "out", processor=slow, workers=2)
    copy = tmp_path / "report.html"
    assert datajob(["run", str(job), "--kill-every", "0.7", "--seed", "3", "--report", str(copy)]) == 0
    written = tmp_path / "out" / "_datajob" / "report.html"
    assert copy.read_bytes() == written.read_bytes(), "--report copies the report the output keeps"
    attempts = [json.loads(p.read_text()) for p in (tmp_path / "out" / ATTEMPTS).glob("*.json")]
    data = _run_data(copy)
    assert data["attempts"] == len(attempts)
    assert isinstance(data["kills"], int) and data["kills"] >= 1, f"no attempt was killed mid-shard: {data}"
    assert "<script src" not in copy.read_text(), "nothing is loaded from the network"

    page = open_page(copy, tmp_path / "report.png")
    assert page.console == [], page.console
    points = count_elements(page.dom, within="timeline-plot", target="point", group="trace ")
    assert points.get("bars") == len(attempts), points  # one bar per attempt
    assert points.get("scatter") == data["kills"], points  # one cross per kill
    legend = set(re.findall(r'class="legendtext"[^>]*>([^<]+)<', page.dom))
    assert {"committed", "killed", "kill"} <= legend, legend
    assert re.search(r"<th>phase</th><td>Succeeded</td>", page.dom)
    shards = json.loads((tmp_path / "out" / "_SUCCESS").read_text())["shards"]
    outcomes = data["outcomes"]
    assert isinstance(outcomes, dict) and outcomes.get("committed", 0) + outcomes.get("split", 0) == len(
        shards
    )


@needs_chromium
def test_the_report_of_a_failed_job_lists_the_failure_with_its_reason(tmp_path: Path) -> None:
    corpus(tmp_path / "data", files=2, lines=500)
    module = tmp_path / "broken.py"
    module.write_text("def process(record):\n    raise ValueError('no price in ' + record[:10])\n")
    job = manifest(
        tmp_path,
        "out",
        processor={"function": "broken:process"},
        env=[{"name": "PYTHONPATH", "value": str(tmp_path)}],
        retryPolicy={"maxShardAttempts": 2, "backoff": {"initialSeconds": 1, "maxSeconds": 1}},
    )
    assert datajob(["run", str(job)]) == 1
    report = tmp_path / "out" / "_datajob" / "report.html"
    page = open_page(report, tmp_path / "failed.png")
    assert page.console == [], page.console
    assert "<th>phase</th><td>Failed</td>" in page.dom
    failures = page.dom[page.dom.index('id="failures"') :]
    assert "ValueError: no price in" in failures


@needs_chromium
def test_a_console_error_in_a_page_is_seen(tmp_path: Path) -> None:
    # The check the report tests rely on can fail: a page with a script error is caught.
    page_file = tmp_path / "broken.html"
    page_file.write_text("<html><body><script>console.error('boom'); notDefined();</script></body></html>")
    page = open_page(page_file)
    assert any("boom" in line for line in page.console), page.console
    assert any("notDefined" in line for line in page.console), page.console


def test_chromium_is_installed_where_ci_runs() -> None:
    if shutil.which("apt-get") is None:
        pytest.skip("not a Debian machine")
    if os.environ.get("CI") != "true":
        pytest.skip("only CI must have it (.ci/run installs it)")
    assert chromium() is not None, ".ci/run must install Debian's chromium for the report tests"
