"""Why a worker container ended, in words a user reads in events, status and `kubectl datajob status`.

A container runtime reports a process killed by signal N as exit code 128+N, with the reason "Error"
(or "OOMKilled" when the kernel's OOM killer sent the SIGKILL for the memory limit). The worker writes its
last words (its error) to the termination-message file; when it had no chance to (SIGKILL), kubelet's
``FallbackToLogsOnError`` puts the tail of its log there instead: JSON log lines that tell a user nothing
in an event. Those are dropped here, keeping only an error the log names, and stay readable with
``kubectl datajob logs``.
"""

from __future__ import annotations

import json
import signal

MAX_LAST_WORDS = 300  # of a worker's termination message, in reasons and events
LAST_RECORDS = 3  # of a log tail, the lines that may name why it ended
GENERIC_REASONS = frozenset({"", "Error", "Completed"})


def describe_exit(exit_code: int | None, reason: str = "", message: str = "") -> str:
    """E.g. "killed by SIGKILL (exit code 137)", "OOMKilled: out of memory (exit code 137)",
    "Error (exit code 1): ValueError: bad record"."""
    code = "" if exit_code is None else f" (exit code {exit_code})"
    if reason == "OOMKilled":
        head = f"OOMKilled: out of memory, the container's memory limit was reached{code}"
    elif exit_code is not None and exit_code > 128 and (name := signal_name(exit_code - 128)):
        head = f"killed by {name}{code}" if reason in GENERIC_REASONS else f"{reason}: killed by {name}{code}"
    else:
        head = f"{reason or 'Error'}{code}"
    words = last_words(message)
    return f"{head}: {words}" if words else head


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return ""


def last_words(message: str) -> str:
    """The worker's own message, or, for a log tail, the last error it logs (else nothing)."""
    text = message.strip()
    if not text:
        return ""
    lines = text.splitlines()
    records = [_json_object(line) for line in lines]
    if sum(record is not None for record in records) * 2 < len(lines):
        return _shortened(text)  # words, not a structured log
    # Only the log's last lines: an error handled long before the end (a shard that failed and was
    # reported) is not why the worker died.
    for record in reversed(records[-LAST_RECORDS:]):
        if record is not None and (record.get("exception") or record.get("level") in ("error", "critical")):
            exception = str(record.get("exception") or "").strip().splitlines()
            event = str(record.get("event") or "")
            found = f"{event}: {exception[-1]}" if exception else event
            return f"last logged error: {found}"[:MAX_LAST_WORDS]
    return ""


def _shortened(text: str) -> str:
    """At most MAX_LAST_WORDS: the first line (the exception's type and message, as the worker writes it)
    and as much of the end as fits."""
    if len(text) <= MAX_LAST_WORDS:
        return text
    head = text.splitlines()[0][: MAX_LAST_WORDS // 2]
    return f"{head} ... {text[-(MAX_LAST_WORDS - len(head) - 5) :]}"


def _json_object(line: str) -> dict[str, object] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
