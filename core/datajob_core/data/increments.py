"""Incremental and continuous input: which objects the next batch takes, and how far behind a job is. Pure.

A job with ``spec.input.incremental`` (or ``spec.mode: Continuous``) processes its input in batches. Batch
*N* is an ordinary run of the job over the objects its plan entry names, committed into its own prefix
``batches/<N>/`` by the usual exactly-once committer; a log under ``_datajob/batches/`` records each batch's
objects before it runs (the plan entry) and its result after (the commit entry). Both entries are created
exclusively, so of two drivers planning batch *N* at once one plan wins and the other adopts it
(datajob_core.storage.batch_log; docs/design.md, "Incremental and continuous runs").

Every object is in at most one plan: the next batch takes only objects no earlier plan named, and a plan
is written only after the batch before it committed, so no object is processed twice and none is skipped
once listed. An object rewritten after a batch took it (same path, another size or version) is *changed*:
it is never processed again (its old contribution cannot be taken out of a merged result), and it is
reported instead (``InputChanged``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from datajob_core.data.planning import InputFile

# Packing a batch's small files keeps at least this many shards (planning.plan_shards' min_shards): a
# batch holds little input, and every shard costs requests (commit record, copies) on an object store.
BATCH_MIN_SHARDS = 8
BATCHES = "batches"  # batch N's own output: batches/<N>/ (part-*, result, _SUCCESS)
LOG = "_datajob/batches"  # plan entry <N>.plan.json and commit entry <N>.json of every batch
CUMULATIVE = "cumulative"  # inside batches/<N>/: the merged result of batches 0..N (merging processors)


def batch_root(number: int) -> str:
    return f"{BATCHES}/{number:08d}"


def plan_entry(number: int) -> str:
    return f"{LOG}/{number:08d}.plan.json"


def commit_entry(number: int) -> str:
    return f"{LOG}/{number:08d}.json"


def entry_number(name: str) -> tuple[int, str] | None:
    """(batch number, "plan" or "commit") of a log entry's file name; None for anything else."""
    stem = name.rsplit("/", 1)[-1]
    for suffix, kind in ((".plan.json", "plan"), (".json", "commit")):
        if stem.endswith(suffix) and stem[: -len(suffix)].isdigit():
            return int(stem[: -len(suffix)]), kind
    return None


def describe(found: InputFile) -> dict[str, Any]:
    """How a plan entry names an object: enough to tell it from a later rewrite of the same path."""
    entry: dict[str, Any] = {"path": found.path, "size": found.size, "version": found.version}
    if found.modified is not None:
        entry["modified"] = found.modified
    return entry


def as_input(entry: dict[str, Any]) -> InputFile:
    return InputFile(
        str(entry["path"]), int(entry["size"]), entry.get("modified"), str(entry.get("version", ""))
    )


def is_incremental(spec: dict[str, Any]) -> bool:
    """Whether a spec (as the API server stores it) runs in batches of new input."""
    return bool((spec.get("input") or {}).get("incremental")) or spec.get("mode") == "Continuous"


def identity(spec: dict[str, Any], job: str, namespace: str | None = None, kind: str = "") -> str:
    """The owner id of an incremental or continuous job's output: the job (namespace and name) and its
    computation: what it reads (its input locations as written, not the objects they hold now), how it
    parses it and what it computes. Every run of that job continues one batch log (re-applying a DataJob
    under a new UID is its next run); another job, or a changed computation, is refused (OutputInUse).
    ``spec`` is the normalised spec (api.models.normalised_spec), so how it was written does not matter.
    The image, command and args are the code's version, left out: a fixed bug is the same job. ``kind``
    keeps the identities of different kinds of job apart (a spec.output.resume batch job: "resume")."""
    source = spec.get("input") or {}
    basis = {
        "job": job,
        "namespace": namespace,
        "incremental": sorted(source.get("uris") or []),
        "format": source.get("format", "text"),
        "encoding": source.get("encoding", "utf-8"),
        "multiLine": bool(source.get("multiLine")),
        "badRecordPolicy": source.get("badRecordPolicy", "Fail"),
        "processor": _canonical(
            spec.get("processor") or ({} if spec.get("command") else {"builtin": "wordcount"})
        ),
        "reduce": _canonical(spec.get("reduce") or {}),
        "outputFormat": (spec.get("output") or {}).get("format") or "jsonl",
    }
    if kind:  # only then: incremental jobs' ids stay what earlier versions wrote
        basis["kind"] = kind
    return "sha256:" + hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()


def _canonical(part: dict[str, Any]) -> dict[str, Any]:
    """Without empty values: an omitted ``options`` and ``options: {}`` mean the same."""
    return {k: v for k, v in part.items() if v not in (None, {}, [], "")}


def outside(listing: list[InputFile], output: str) -> list[InputFile]:
    """The listing without anything under the job's own output (a glob over a bucket that also holds the
    output would otherwise take each batch's results as new input, without end)."""
    root = output.removeprefix("file://").rstrip("/") + "/"
    return [f for f in listing if not f.path.removeprefix("file://").startswith(root)]


def combines(spec: dict[str, Any]) -> bool:
    """Whether each batch's result merges with the previous one (wordcount and aggregate: their merge is
    what already combines shards), or is appended to the batches before it (grep, transform, SQL, whose
    map-only query is row by row, user functions, exec, and user or SQL reducers, whose output is not the
    input their reducer takes)."""
    reduce = spec.get("reduce") or {}
    if reduce.get("function") or reduce.get("sql"):
        return False
    processor = spec.get("processor") or ({} if spec.get("command") else {"builtin": "wordcount"})
    return processor.get("builtin") in ("wordcount", "aggregate")


@dataclass(frozen=True)
class Selection:
    """What the next batch takes, and what it leaves."""

    new: list[InputFile]  # in the order the batch plans them
    changed: list[InputFile] = field(default_factory=list)  # taken by an earlier batch, rewritten since
    waiting: list[InputFile] = field(default_factory=list)  # new, but past the batch's object limit


def select(
    listing: list[InputFile], ingested: dict[str, dict[str, Any]], limit: int | None = None
) -> Selection:
    """The objects of ``listing`` that no earlier batch took, oldest first (then by path, so two drivers
    listing the same objects plan the same batch), at most ``limit`` of them."""
    new, changed = [], []
    for found in listing:
        seen = ingested.get(found.path)
        if seen is None:
            new.append(found)
        elif int(seen.get("size", -1)) != found.size or str(seen.get("version", "")) != found.version:
            changed.append(found)
    new.sort(key=lambda f: (f.modified if f.modified is not None else math.inf, f.path))
    if limit is not None and len(new) > limit:
        return Selection(new[:limit], changed, new[limit:])
    return Selection(new, changed)


def ingested_objects(plans: dict[int, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Every object some batch's plan took, by path (the newest plan's entry if two ever named one)."""
    taken: dict[str, dict[str, Any]] = {}
    for number in sorted(plans):
        for entry in plans[number]:
            taken[str(entry["path"])] = entry
    return taken


def open_batch(plans: dict[int, Any], commits: dict[int, Any]) -> int | None:
    """The planned batch that has not committed yet (a driver stopped between the two), to run again."""
    waiting = sorted(set(plans) - set(commits))
    return waiting[0] if waiting else None


def next_batch(plans: dict[int, Any]) -> int:
    return max(plans, default=-1) + 1


@dataclass(frozen=True)
class Backlog:
    """Input that is there but in no committed batch yet (the open batch's objects included)."""

    objects: int
    bytes: int
    lag_seconds: float | None  # age of the oldest such object; None when there is none (or no times)


def backlog(pending: list[InputFile], now: float) -> Backlog:
    times = [f.modified for f in pending if f.modified is not None]
    lag = max(now - min(times), 0.0) if times else None
    return Backlog(len(pending), sum(f.size for f in pending), lag)


def batches_per_minute(commit_times: list[float], now: float, window: float = 600.0) -> float:
    """Batches committed per minute over the last ``window`` seconds (or since the first, if later)."""
    recent = [t for t in commit_times if now - t <= window]
    if not recent:
        return 0.0
    span = max(now - min(recent), 60.0)
    return round(len(recent) * 60.0 / span, 2)


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (the benchmark's lag p50/p99)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(math.ceil(fraction * len(ordered)) - 1, 0))]


def human_seconds(seconds: float | None) -> str:
    """A lag for people: 0s, 4.2s, 42s, 3m10s, 2h05m."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s".replace(".0s", "s")
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
