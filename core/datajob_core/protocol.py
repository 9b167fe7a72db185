"""Messages between the operator and its workers, exchanged through one Lease per worker slot.

Each side writes only its own annotation (JSON merge patch), so neither overwrites the other.
See docs/design.md, "Protocol between operator and workers".
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

ASSIGNMENT_ANNOTATION = "datajob.dev/assignment"
REPORT_ANNOTATION = "datajob.dev/report"
# A slot's replacement pod is created while the pod it replaces still terminates (and sends its final
# checkpoint): it is told (ENV_REPORT_ANNOTATION) to report under the key the other does not use.
REPORT_ANNOTATION_EVEN = "datajob.dev/report-b"
REPORT_ANNOTATIONS = (REPORT_ANNOTATION, REPORT_ANNOTATION_EVEN)
LEASE_SUFFIX = "-w"

# Env vars the operator sets on worker pods; the worker reads them at start.
ENV_JOB = "DATAJOB_NAME"
ENV_LEASE = "DATAJOB_LEASE"
ENV_POD = "DATAJOB_POD"
ENV_NAMESPACE = "DATAJOB_NAMESPACE"
ENV_OUTPUT = "DATAJOB_OUTPUT"
ENV_REDUCE_PARTITIONS = "DATAJOB_REDUCE_PARTITIONS"  # spec.reduce.partitions; unset or 0: no reduce stage
ENV_REDUCER = "DATAJOB_REDUCER"  # spec.reduce.function, module:function
ENV_REDUCE_SQL = "DATAJOB_REDUCE_SQL"  # spec.reduce.sql
ENV_OUTPUT_FORMAT = "DATAJOB_OUTPUT_FORMAT"  # spec.output.format: jsonl (unset) or parquet
ENV_STORAGE = "DATAJOB_STORAGE"  # spec.storage without credentials (endpoint, region), as JSON
ENV_OUTPUT_OWNER = "DATAJOB_OUTPUT_OWNER"  # the output's owner id (job UID, or local fingerprint)
# Incremental and continuous jobs in a cluster: the job's output root, which holds the batch log
# (datajob_core.storage.batch_log); each task names its batch (ShardTask.batch).
ENV_BATCH_LOG = "DATAJOB_BATCH_LOG"
ENV_CHECKPOINT_SECONDS = "DATAJOB_CHECKPOINT_SECONDS"
ENV_CHECKPOINT_RECORDS = "DATAJOB_CHECKPOINT_RECORDS"
ENV_PROCESSOR = "DATAJOB_PROCESSOR"  # spec.processor as JSON
ENV_FORMAT = "DATAJOB_FORMAT"  # spec.input.format
ENV_ENCODING = "DATAJOB_ENCODING"  # spec.input.encoding
ENV_BAD_RECORDS = "DATAJOB_BAD_RECORD_POLICY"  # spec.input.badRecordPolicy
ENV_MULTI_LINE = "DATAJOB_MULTI_LINE"  # spec.input.multiLine: "true" or absent
# spec.retryPolicy.shardTimeoutSeconds and recordTimeoutSeconds, as JSON {"shardSeconds", "recordSeconds"}
ENV_TIME_LIMITS = "DATAJOB_TIME_LIMITS"
ENV_PROFILE = "DATAJOB_PROFILE"  # the hardware profile the pod was made for (spec.hardware[].name)
ENV_NODE = "DATAJOB_NODE"  # the node it runs on (downward API spec.nodeName)
# the devices DRA allocated to it, driver/pool/device comma-separated (once the operator has read its claim)
ENV_DEVICES = "DATAJOB_DEVICES"
ENV_GPUS = "DATAJOB_GPUS"  # GPUs the pod requests (its profile's), for the run report's GPU-seconds
# The Lease annotation the worker reports under (absent: REPORT_ANNOTATION).
ENV_REPORT_ANNOTATION = "DATAJOB_REPORT_ANNOTATION"
# Where the worker writes its last error, for the pod's termination message (kubelet reads it).
ENV_TERMINATION_LOG = "DATAJOB_TERMINATION_LOG"
# Local mode: the stored plan (datajob_core.data.plan_store), for shards too large to send inline.
ENV_PLAN_FILE = "DATAJOB_PLAN_FILE"
# Local mode: the driver's pid; a worker exits when its driver is gone.
ENV_DRIVER_PID = "DATAJOB_DRIVER_PID"


def lease_name(job: str, slot: int) -> str:
    return f"{job}{LEASE_SUFFIX}{slot}"


def slot_of_lease(lease: str) -> int | None:
    """The slot a lease name (lease_name) is for; None for anything else."""
    _, _, slot = lease.rpartition(LEASE_SUFFIX)
    return int(slot) if slot.isdigit() else None


def other_report_annotation(key: str) -> str:
    """The report key a replacement uses while the pod it replaces, reporting under ``key``, terminates."""
    return REPORT_ANNOTATION if key == REPORT_ANNOTATION_EVEN else REPORT_ANNOTATION_EVEN


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ShardTask(_Message):
    """One shard handed to a worker: which attempt it is and where to resume."""

    shard: int = Field(ge=0)
    attempt: int = Field(ge=1)
    checkpoint: dict[str, Any] | None = None
    input: dict[str, Any] = Field(default_factory=dict, description="the shard's plan entry")
    # True when the entry is too large to send inline: the worker reads it from the stored plan.
    planned: bool = False
    # The worker running the last attempt died, perhaps after committing: report the shard's commit
    # record if there is one, and otherwise fail it without processing (the ledger keeps the reason).
    verify: bool = False
    # Stop at the next record boundary and commit what is read: the rest of the shard is split off into
    # new shards for idle workers (datajob_core.shards.splitting). Only ever set on a running map shard.
    split: bool = False
    # A speculative backup of a straggling attempt (datajob_core.shards.speculation), for the run report.
    backup: bool = False
    # An incremental or continuous job's batch (datajob_core.data.increments): the worker writes it into
    # batches/<batch>/ under DATAJOB_BATCH_LOG, and its job commit adds the batch's log entry.
    batch: int | None = None


class AssignmentMessage(_Message):
    """Operator -> worker. A worker acts only on a message naming its own pod."""

    pod: str
    shards: list[ShardTask] = Field(default_factory=list)
    ack: int = Field(default=0, ge=0, description="highest report seq the operator has durably folded")
    stop: bool = Field(default=False, description="finish nothing new; exit cleanly")
    devices: list[str] = Field(
        default_factory=list, description="devices DRA allocated to this pod (driver/pool/device)"
    )


class ShardProgress(_Message):
    attempt: int = Field(ge=1)
    batch: int | None = None  # the task's (ShardTask.batch): shard numbers start again each batch
    checkpoint: dict[str, Any] | None = None
    records: int = Field(default=0, ge=0)
    bytes: int = Field(default=0, ge=0)  # read so far, counted from the shard's start
    resumed_bytes: int = Field(default=0, ge=0)  # of which before this attempt began


class ShardOutcome(_Message):
    """A finished attempt: committed (in ``done``) or given up on (in ``failed``)."""

    shard: int = Field(ge=0)
    attempt: int = Field(ge=1)
    seq: int = Field(ge=1)
    batch: int | None = None  # the task's (ShardTask.batch): shard numbers start again each batch
    records: int = Field(default=0, ge=0)
    bytes: int = Field(default=0, ge=0)
    skipped: int = Field(default=0, ge=0, description="malformed records dropped (badRecordPolicy)")
    reason: str = ""
    # A failure that another attempt would repeat (a malformed record under badRecords: Fail): the shard
    # fails at once instead of burning its remaining attempts.
    permanent: bool = False
    # A reduce task that found a map shard's output deleted: that shard runs again; this attempt is not
    # charged (the reducer is retried after it).
    lost: LostInput | None = None
    # Where the committed output of this shard ends, as [piece, offset] in the task's input, when it
    # stopped early (a split): the winning commit record's, whichever attempt won. None: the whole shard.
    end: list[int] | None = Field(default=None, min_length=2, max_length=2)


class LostInput(_Message):
    """A reducer's input that is gone: map shard ``shard``'s committed output (of ``attempt``)."""

    shard: int = Field(ge=0)
    attempt: int = Field(ge=1)


class CurrentShard(_Message):
    """The shard a worker is processing right now: the only one its death may be charged to."""

    shard: int = Field(ge=0)
    attempt: int = Field(ge=1)
    batch: int | None = None  # the task's (ShardTask.batch)


class WorkerNotice(_Message):
    """Something the user should hear about (e.g. an unreadable checkpoint); acked like outcomes."""

    seq: int = Field(ge=1)
    reason: str = Field(max_length=64)
    message: str = Field(max_length=1024)


class ReportMessage(_Message):
    """Worker -> operator. Outcomes stay listed until the operator acks their seq."""

    pod: str
    seq: int = Field(default=0, ge=0)
    progress: dict[str, ShardProgress] = Field(default_factory=dict)
    done: list[ShardOutcome] = Field(default_factory=list)
    failed: list[ShardOutcome] = Field(default_factory=list)
    current: CurrentShard | None = Field(default=None, description="set before a shard's first record")
    notices: list[WorkerNotice] = Field(default_factory=list)
    # It received SIGTERM (a deletion, a drain, kill -TERM): the clean exit that follows was not its code's.
    terminated: bool = False
    # It saw its slot given to another pod (its replacement): it processes nothing more and exits.
    stopped: bool = False
