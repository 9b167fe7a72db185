"""How local mode starts a worker process: forked from a server that has already imported the worker.

A fresh ``python -m datajob_worker`` spends most of a second importing pydantic, fsspec and the worker
before it reads its first record, and N workers starting together on a small machine pay it N times over.
So workers are forked from a ``multiprocessing`` fork server that preloads ``datajob_worker.agent`` once
(and in parallel with the driver's planning): a worker starts in milliseconds. The server is a
single-threaded process of its own, so forking it is safe even when the driver has threads (as the test
process does).

A fresh interpreter is still used when ``spec.env`` sets interpreter options (``PYTHON*`` variables other
than ``PYTHONPATH``, which a forked worker applies to ``sys.path`` itself): those only act at start-up.
Either way the worker runs the same ``datajob_worker.agent.main`` with the same environment, in a session
of its own, its output in its log file, and it dies with whoever started it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import signal
import subprocess
import sys
import time
from typing import Protocol

PRELOAD = ["datajob_worker.agent"]
# PYTHON* variables are read by the interpreter only when it starts, so a worker whose spec.env sets one
# gets a fresh interpreter; these two a forked worker applies itself (sys.path; its output is a file).
APPLIED_AFTER_FORK = ("PYTHONPATH", "PYTHONUNBUFFERED")


class WorkerProcess(Protocol):
    pid: int

    def poll(self) -> int | None:
        """None while running; else the exit code, or -N if signal N ended it (as ``Popen``)."""
        ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...

    def send_signal(self, sig: int) -> None: ...


def warm_up() -> None:
    """Starts the fork server now (it imports the worker while the driver plans), if it is not running."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    multiprocessing.forkserver.ensure_running()


def needs_fresh_interpreter(env: dict[str, str]) -> bool:
    return any(
        name.startswith("PYTHON") and name not in APPLIED_AFTER_FORK and os.environ.get(name) != value
        for name, value in env.items()
    )


def start(env: dict[str, str], log_path: str, fds: dict[str, int]) -> WorkerProcess:
    """Starts ``python -m datajob_worker``'s equivalent with ``env``, and each of ``fds`` open in it under
    the number its environment variable names."""
    if needs_fresh_interpreter(env):
        with open(log_path, "ab") as log_file:
            return subprocess.Popen(
                [sys.executable, "-m", "datajob_worker"],
                env={**env, **{name: str(fd) for name, fd in fds.items()}},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                pass_fds=tuple(fds.values()),
            )
    warm_up()
    context = multiprocessing.get_context("forkserver")
    # The pipes travel to the forked child as file descriptors (SCM_RIGHTS), wrapped as connections.
    connections = {name: multiprocessing.connection.Connection(os.dup(fd)) for name, fd in fds.items()}
    process = context.Process(target=_forked_main, args=(env, log_path, connections), daemon=False)
    try:
        process.start()
    finally:
        for connection in connections.values():
            connection.close()
    return ForkedWorker(process)


class ForkedWorker:
    """``Popen``'s interface over a ``multiprocessing`` process."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self.process = process
        self.pid = int(process.pid or 0)
        self.killed_at: float | None = None

    def poll(self) -> int | None:
        code = self.process.exitcode
        late = self.killed_at is not None and time.monotonic() - self.killed_at > KILL_REPORT_SECONDS
        if code is None and late and not _alive(self.pid):
            # Its exit status comes from the fork server; if that never arrives, trust the kernel.
            return -signal.SIGKILL
        return code

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        code = self.process.exitcode
        if code is None:
            raise subprocess.TimeoutExpired(["datajob_worker"], timeout or 0)
        return code

    def kill(self) -> None:
        self.process.kill()
        if self.killed_at is None:
            self.killed_at = time.monotonic()

    def send_signal(self, sig: int) -> None:
        # It may have ended since its exit status was last asked for: then there is nobody to signal.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)


KILL_REPORT_SECONDS = 5.0


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _forked_main(
    env: dict[str, str], log_path: str, connections: dict[str, multiprocessing.connection.Connection]
) -> None:  # pragma: no cover - runs in the forked worker
    """The worker's first steps after the fork: what ``Popen`` would have set up, then the worker."""
    os.setsid()  # Ctrl-C at the driver's terminal is for the driver, which stops its workers itself
    env = dict(env)
    for name, connection in connections.items():
        env[name] = str(os.dup(connection.fileno()))  # a plain descriptor, as the worker expects
        connection.close()
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for stream in (1, 2):
        os.dup2(log, stream)
    os.close(log)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.environ.clear()
    os.environ.update(env)
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
    sys.path[:0] = extra
    from datajob_worker.agent import main  # noqa: PLC0415 - preloaded by the fork server

    sys.stdout.flush()
    sys.exit(main())
