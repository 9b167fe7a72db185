"""Whose output is this? An output directory carries the identity of the job that owns it.

A commit marker used to be trusted whoever wrote it, so a rerun after changing the input or the processor
kept the old result and reported Succeeded. Now the directory holds ``_datajob/owner.json`` and every
commit marker names its owner:

- in a cluster the owner is the DataJob's UID (its input, output and processor are immutable, so one UID
  means one job);
- in local mode it is a fingerprint of the shard plan (input files and sizes), the input format and
  options and the processor, so a rerun of the same job resumes, and a changed job is refused.

A different owner is refused with a clear error unless ``spec.output.overwrite`` (``datajob run
--overwrite``) asks for a fresh output: then everything the job framework wrote there is removed first.
Output inside the job's own input set is refused at validation
(:func:`datajob_core.data.locations.output_inside_input`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from datajob_core.data.locations import JOB_FILES
from datajob_core.storage.stores import Store

OWNER_FILE = "_datajob/owner.json"


class OutputInUseError(Exception):
    """The output directory belongs to another job (or to a different version of this one)."""


def fingerprint(plan: list[dict[str, Any]], spec: dict[str, Any]) -> str:
    """Local mode's identity of a job: what it reads, how it splits and parses it, what it computes."""
    source = spec.get("input") or {}
    basis = {
        "plan": plan,
        "format": source.get("format", "text"),
        "encoding": source.get("encoding", "utf-8"),
        "badRecordPolicy": source.get("badRecordPolicy", "Fail"),
        "processor": spec.get("processor"),
        "reduce": spec.get("reduce"),
        "command": spec.get("command"),
        "args": spec.get("args"),
    }
    output_format = (spec.get("output") or {}).get("format") or "jsonl"
    if output_format != "jsonl":  # only then: outputs written before the field keep their identity
        basis["outputFormat"] = output_format
    return "sha256:" + hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()


def describe(owner: dict[str, Any]) -> str:
    where = f"{owner.get('namespace')}/" if owner.get("namespace") else ""
    return f"job {where}{owner.get('job', '?')} ({owner.get('id', '?')})"


def claim(root: Store | str | Path, owner: dict[str, Any], *, overwrite: bool = False) -> None:
    """Makes ``root`` this job's output, or raises OutputInUseError saying whose it is.

    ``owner`` is ``{"job", "namespace"?, "id"}`` (id: the UID or the fingerprint). Safe to repeat, and
    safe against a concurrent claim: the owner record is created exclusively, so one claimant wins.
    """
    store = root if isinstance(root, Store) else Store(str(root))
    current = _read(store)
    if current is not None and current.get("id") == owner["id"]:
        return
    if current is None and not _has_output(store):
        if store.create(OWNER_FILE, _owner_text(owner)):
            return
        current = _read(store)  # lost a race: whose is it?
        if current is not None and current.get("id") == owner["id"]:
            return
    if not overwrite:
        whose = (
            describe(current) if current else "an earlier job (it has committed parts but no owner record)"
        )
        raise OutputInUseError(
            f"output {store.url} belongs to {whose}, not to {describe(owner)}: the input, processor or job "
            "changed since it was written. Use another output, delete this one, or set "
            "spec.output.overwrite (datajob run --overwrite) to replace it"
        )
    clear(store, owner)


def clear(store: Store, owner: dict[str, Any]) -> None:
    """Removes everything a job wrote into ``store`` (nothing else), then marks it ``owner``'s."""
    for entry in store.list():
        if JOB_FILES.match(entry):
            store.delete_tree(entry)
    store.create(OWNER_FILE, _owner_text(owner))


def _owner_text(owner: dict[str, Any]) -> str:
    return json.dumps(owner, sort_keys=True) + "\n"


def _read(store: Store) -> dict[str, Any] | None:
    try:
        data = json.loads(store.read_bytes(OWNER_FILE))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _has_output(store: Store) -> bool:
    return any(JOB_FILES.match(name) and name != "_datajob" for name in store.list())
