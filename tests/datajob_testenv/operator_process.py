"""Runs the real operator (``python -m datajob_operator``) as a separate process against the test cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from .processes import spawn, stop_group


def storage_access(root: Path) -> tuple[str, ...]:
    """What the suite's operators may reach with their own identity: the session's temporary directory
    (every test's input and output), and object stores on loopback (MinIO)."""
    return ("--storage-root", str(root), "--storage-endpoint", "http://127.0.0.1:*")


class OperatorProcess:
    def __init__(
        self,
        kubeconfig: str,
        log_dir: Path,
        *extra_args: str,
        env: dict[str, str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.extra_args = extra_args
        self.env = env or {}
        self.die_with_parent = die_with_parent
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.metrics_url = ""  # set by whoever passes --metrics-port

    def start(self) -> None:
        self.starts += 1
        env = {**os.environ, **self.env, "KUBECONFIG": self.kubeconfig}
        self.process = spawn(
            [sys.executable, "-m", "datajob_operator", *self.extra_args],
            self.log_dir / f"operator-{self.starts}.log",
            env=env,
            die_with_parent=self.die_with_parent,
        )

    def kill(self) -> None:
        """SIGKILL: the harshest crash, no chance to clean up."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process.pid)
            self.process = None

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("operator-*.log")))
