"""The local-mode stand-in for a worker's Lease: two JSON files in a directory per worker slot.

Same messages as in the cluster (datajob_core.protocol); each side writes only its own file, atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from datajob_core.protocol import AssignmentMessage, ReportMessage

ASSIGNMENT_FILE = "assignment.json"
REPORT_FILE = "report.json"


def write_atomic(path: Path, text: str) -> None:
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(text)
    os.replace(scratch, path)


class FileChannel:
    def __init__(self, directory: str | Path, plan_file: str | Path | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.plan_file = Path(plan_file) if plan_file else None

    def plan(self) -> bytes:
        """The stored shard plan (datajob_core.plan_store) the driver wrote."""
        if self.plan_file is None:
            raise FileNotFoundError("no plan file was given to this worker")
        return self.plan_file.read_bytes()

    def assignment(self) -> AssignmentMessage | None:
        try:
            return AssignmentMessage.model_validate_json((self.directory / ASSIGNMENT_FILE).read_text())
        except FileNotFoundError:
            return None

    def report(self, message: ReportMessage) -> None:
        write_atomic(self.directory / REPORT_FILE, message.model_dump_json())

    # The driver's side.
    def write_assignment(self, message: AssignmentMessage) -> None:
        write_atomic(self.directory / ASSIGNMENT_FILE, message.model_dump_json())

    def read_report(self) -> tuple[ReportMessage | None, float | None]:
        path = self.directory / REPORT_FILE
        try:
            text, renewed = path.read_text(), path.stat().st_mtime
        except FileNotFoundError:
            return None, None
        try:
            return ReportMessage.model_validate(json.loads(text)), renewed
        except ValueError:
            return None, renewed
