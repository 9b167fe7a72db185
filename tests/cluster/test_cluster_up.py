"""`make cluster-up` (python -m datajob_testenv up) leaves a cluster where an example runs right away."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from datajob_testenv.kube import Kubectl
from datajob_testenv.tools import REPO_ROOT


def _testenv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "datajob_testenv", *args],
        cwd=REPO_ROOT,
        text=True,
        capture_output=True,
        timeout=600,
        check=False,
    )


def test_the_wordcount_example_runs_on_cluster_up_right_after_it_starts(tmp_path: Path) -> None:
    directory = tmp_path / "cluster"
    up = _testenv("up", "--dir", str(directory))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        kubeconfig = re.search(r"export KUBECONFIG=(\S+)", up.stdout)
        endpoint = re.search(r"S3 \(MinIO\) is up at (\S+),", up.stdout)
        assert kubeconfig and endpoint, up.stdout
        assert "kubectl apply -f examples/wordcount/datajob-s3.yaml" in up.stdout
        kubectl = Kubectl(kubeconfig.group(1))
        manifest = yaml.safe_load((REPO_ROOT / "examples" / "wordcount" / "datajob-s3.yaml").read_text())
        # The example names MinIO's usual port; up takes another when 9000 is busy (it says which).
        manifest["spec"]["storage"]["endpoint"] = endpoint.group(1)
        kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
        deadline = time.monotonic() + 300
        phase = ""
        while time.monotonic() < deadline and phase not in ("Succeeded", "Failed"):
            time.sleep(2)
            got = kubectl("get", "dj", "wordcount-s3", "-o", "json", check=False)
            phase = (
                (json.loads(got.stdout).get("status") or {}).get("phase", "") if got.returncode == 0 else ""
            )
        status = json.loads(kubectl("get", "dj", "wordcount-s3", "-o", "json").stdout)["status"]
        assert phase == "Succeeded", (status, (directory / "logs" / "operator.log").read_text()[-3000:])
        assert status["processed"]["records"] == 579_099  # the generated corpus (examples/wordcount)
        env = {
            **os.environ,
            "KUBECONFIG": kubeconfig.group(1),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
        report = subprocess.run(
            [kubectl.binary, "datajob", "report", "wordcount-s3"],
            env=env,
            check=False,
            text=True,
            capture_output=True,
            timeout=120,
        )
        assert report.returncode == 0 and '"kills": 0' in report.stdout, report.stderr
    finally:
        down = _testenv("down", "--dir", str(directory))
        assert down.returncode == 0, down.stderr
