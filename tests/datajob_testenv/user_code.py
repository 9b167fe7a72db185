"""User code that misbehaves on purpose, for the exit-path tests (local and cluster)."""

from __future__ import annotations

# The user's function misbehaves on one record (EXIT_TRIGGER) the way EXIT_MODE says, on every attempt.
EXITS = """
import os, signal, sys, threading, time

TRIGGER = os.environ.get("EXIT_TRIGGER", "alpha beta w40 gamma1")


def act(line):
    if line.strip() != TRIGGER:
        return line
    mode = os.environ["EXIT_MODE"]
    if mode == "raise":
        raise RuntimeError("boom on the trigger record")
    if mode.startswith("sys.exit"):
        sys.exit(int(mode[-1]))
    if mode.startswith("os._exit"):
        os._exit(int(mode[-1]))
    if mode in ("SIGKILL", "SIGSEGV"):
        os.kill(os.getpid(), getattr(signal, mode))
    if mode == "hang":
        time.sleep(3600)
    if mode == "thread":
        threading.Thread(target=threading.Event().wait, daemon=False).start()
    return line
"""
