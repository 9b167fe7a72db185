"""How a worker process ends well: it dies with whoever started it, and leaves its last words behind.

- Local mode: a worker stops when its ``datajob run`` driver dies (however it dies, SIGKILL included: it
  watches the driver's pidfd, and gets SIGTERM from the kernel when the driver is its parent), and an exec
  child gets SIGKILL when its worker dies, so nothing is left polling or orphaned.
- Cluster mode: the worker's last error goes to the container's termination message file, where kubelet
  picks it up; the operator puts it in the DataJob's events and conditions (the pod and its logs may be
  gone by the time anyone looks).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
from pathlib import Path

from datajob_core.protocol import ENV_TERMINATION_LOG

PR_SET_PDEATHSIG = 1
MAX_TERMINATION_MESSAGE = 4096  # kubelet keeps at most 4 KiB of it


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Asks the kernel to send ``sig`` to this process when its parent exits (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig))


def watch(pid: int) -> int | None:
    """A descriptor that becomes readable when process ``pid`` ends (a pidfd: never fooled by a reused
    pid); None where pidfds are not available (macOS, old or restricted kernels). Raises
    ProcessLookupError if it has ended already. A forked local worker's parent is the fork server, not the
    driver, so the parent-death signal alone cannot tell it that the driver was killed."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise
    except (AttributeError, OSError):
        os.kill(pid, 0)  # at least: is it there now (ProcessLookupError if not)
        return None


def ended(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def kill_child_with_parent() -> None:  # pragma: no cover - runs in a forked child before exec
    """``preexec_fn`` for children a worker starts: SIGKILL when the worker dies."""
    die_with_parent(signal.SIGKILL)


def termination_log_path() -> Path | None:
    path = os.environ.get(ENV_TERMINATION_LOG)
    if not path:
        return None
    # The test node agent rebases container paths under NODE_AGENT_ROOT (docs/testing.md).
    return Path(os.environ.get("NODE_AGENT_ROOT", "") + path)


def write_termination_message(text: str) -> None:
    """Best effort: a worker that cannot even write its last words must still exit with its error."""
    path = termination_log_path()
    if path is None:
        return
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text[-MAX_TERMINATION_MESSAGE:])
