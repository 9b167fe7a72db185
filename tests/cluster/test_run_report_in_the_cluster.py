"""The run report of a cluster job: written by the job commit beside the output, and drawn on demand by
`kubectl datajob report NAME` from the same output, with a killed worker's attempt in it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from datajob_core.storage.attempt_log import DIRECTORY as ATTEMPTS
from datajob_testenv.browser import chromium, count_elements, open_page
from datajob_testenv.datajobs import Jobs, a_shard_checkpointed, job_manifest, shards_ledger, write_inputs
from datajob_testenv.kube import Kubectl
from datajob_testenv.nodeagent import SIGNAL_ANNOTATION


def _data(page: str) -> dict[str, object]:
    found = re.search(r'<script type="application/json" id="datajob-run">(.*?)</script>', page)
    assert found, "no figures in the page"
    data: dict[str, object] = json.loads(found.group(1))
    return data


def _kubectl_datajob_report(kubectl: Kubectl, name: str, namespace: str) -> str:
    env = {
        **os.environ,
        "KUBECONFIG": kubectl.kubeconfig,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    result = subprocess.run(
        [kubectl.binary, "datajob", "report", name, "-n", namespace],
        env=env,
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_cluster_jobs_report_shows_the_killed_worker_and_kubectl_draws_the_same(
    jobs: Jobs, tmp_path: Path, kubectl: Kubectl
) -> None:
    write_inputs(tmp_path / "in", files=3, lines=300)
    manifest = job_manifest(
        "story",
        tmp_path / "in",
        tmp_path / "out",
        workers=2,
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.01"}},
        checkpoint={"intervalSeconds": 1, "intervalRecords": 25},
    )
    jobs.create(manifest)
    jobs.wait("story", a_shard_checkpointed, 60, "a shard checkpointed")
    # While it runs, kubectl draws what the output holds so far.
    running = _data(_kubectl_datajob_report(kubectl, "story", jobs.namespace))
    assert isinstance(running["attempts"], int) and running["attempts"] >= 1
    running_outcomes = running["outcomes"]
    assert isinstance(running_outcomes, dict) and running_outcomes.get("running", 0) >= 1, running
    # SIGKILL a worker in the middle of a shard: its attempt never writes its end.
    ledger = shards_ledger(jobs.get("story")["status"]).get("running") or {}
    victim = next(iter(ledger.values()))["w"]
    jobs.core.patch_namespaced_pod(
        victim, jobs.namespace, {"metadata": {"annotations": {SIGNAL_ANNOTATION: "KILL"}}}
    )
    jobs.wait_phase("story", "Succeeded", timeout=240)

    written = tmp_path / "out" / "_datajob" / "report.html"
    assert written.exists(), "the job commit writes the report beside the output"
    records = list((tmp_path / "out" / ATTEMPTS).glob("*.json"))
    data = _data(written.read_text())
    assert data["attempts"] == len(records)
    assert isinstance(data["kills"], int) and data["kills"] >= 1, data
    outcomes = data["outcomes"]
    assert isinstance(outcomes, dict) and outcomes.get("committed") == 3, outcomes  # each shard once
    # The killed attempt is the victim's: its row in the failures table names it.
    failures = written.read_text().split('id="failures"', 1)[1].split("</table>", 1)[0]
    assert re.search(rf"<td>killed</td><td>{re.escape(victim)}</td>", failures), failures

    drawn = _kubectl_datajob_report(kubectl, "story", jobs.namespace)
    again = _data(drawn)
    assert (again["attempts"], again["kills"]) == (data["attempts"], data["kills"])
    assert "<th>phase</th><td>Succeeded</td>" in drawn
    if chromium() is None:
        pytest.skip("the page itself is checked in a browser where Debian's chromium is installed (CI)")
    (tmp_path / "kubectl-report.html").write_text(drawn)
    page = open_page(tmp_path / "kubectl-report.html", tmp_path / "kubectl-report.png")
    assert page.console == [], page.console
    points = count_elements(page.dom, within="timeline-plot", target="point", group="trace ")
    assert points == {"bars": data["attempts"], "scatter": data["kills"]}, points
