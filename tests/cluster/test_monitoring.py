"""The chart's optional monitoring: alert rules that promtool accepts and that fire when they should, and a
Grafana dashboard whose queries use only metrics the operator exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

from datajob_operator import metrics
from datajob_testenv.kube import CHART, helm
from datajob_testenv.tools import tool

FAILED = {
    "summary": "DataJob etl/nightly failed",
    "description": "See the Failed condition: kubectl datajob why nightly -n etl",
}
STORM = {
    "summary": "DataJob etl/nightly workers keep failing",
    "description": (
        "More than 1 worker failure(s) per minute for 10 minutes (disruptions such as drains and "
        "preemptions are not counted). See the WorkerFailed events."
    ),
}


def rendered(tmp_path: Path, *values: str) -> list[dict[str, Any]]:
    args = [f"--set={v}" for v in values]
    out = helm(str(tmp_path / "no-kubeconfig"), "template", "t", str(CHART), *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=60, check=False)


def test_the_alert_rules_pass_promtool_and_fire_on_a_stalled_job_a_failed_job_and_a_failover_storm(
    tmp_path: Path,
) -> None:
    docs = rendered(
        tmp_path, "metrics.prometheusRule.enabled=true", "metrics.prometheusRule.labels.release=kps"
    )
    [rule] = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["metadata"]["labels"]["release"] == "kps"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    checked = promtool("check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout, checked.stdout

    job = 'namespace="etl", job="nightly"'
    cases = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f"datajob_job_stalled{{{job}}}", "values": "0 0 1 1 1 1"},
                    {"series": f'datajob_job_phase{{{job}, phase="Failed"}}', "values": "0 0 0 1"},
                    # 2 failures a minute for 20 minutes; disruptions do not count.
                    {
                        "series": f'datajob_worker_failovers_total{{{job}, cause="failure"}}',
                        "values": "0+2x20",
                    },
                    {
                        "series": f'datajob_worker_failovers_total{{{job}, cause="disruption"}}',
                        "values": "0+50x20",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "DataJobStalled", "exp_alerts": []},
                    {
                        "eval_time": "4m",
                        "alertname": "DataJobStalled",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "namespace": "etl", "job": "nightly"},
                                "exp_annotations": {
                                    "summary": "DataJob etl/nightly is stalled",
                                    "description": (
                                        "No shard completed and no checkpoint advanced within its "
                                        "progressDeadlineSeconds. The Stalled condition names the likely "
                                        "cause: kubectl describe datajob -n etl nightly"
                                    ),
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "3m",
                        "alertname": "DataJobFailed",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "namespace": "etl", "job": "nightly"},
                                "exp_annotations": FAILED,
                            }
                        ],
                    },
                    {"eval_time": "5m", "alertname": "DataJobWorkerFailoverRateHigh", "exp_alerts": []},
                    {
                        "eval_time": "18m",
                        "alertname": "DataJobWorkerFailoverRateHigh",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "namespace": "etl", "job": "nightly"},
                                "exp_annotations": STORM,
                            }
                        ],
                    },
                ],
            }
        ],
    }
    tests = tmp_path / "tests.yaml"
    tests.write_text(yaml.safe_dump(cases))
    result = promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_grafana_dashboard_ships_as_a_configmap_and_queries_only_exported_metrics(tmp_path: Path) -> None:
    assert not [
        d for d in rendered(tmp_path) if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]
    ]
    docs = rendered(tmp_path, "metrics.grafanaDashboard.enabled=true")
    [config_map] = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
    ]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["datajob-operator.json"])
    assert dashboard["uid"] == "datajob-operator" and len(dashboard["panels"]) >= 10
    exported = {m.name for m in REGISTRY.collect() if m.name.startswith("datajob_")}
    assert metrics.RECORDS._name == "datajob_records_processed"  # counters are exported with _total
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\b(datajob_[a-z_]+)", target["expr"]))
    families = {re.sub(r"_(bucket|total|sum|count)$", "", name) for name in used}
    missing = families - exported
    assert not missing, f"the dashboard queries metrics the operator does not export: {missing}"
