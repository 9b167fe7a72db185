"""What one operator process remembers about one DataJob between passes; all of it can be rebuilt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datajob_core.data.planning import InputFile
from datajob_core.shards import progress
from datajob_core.storage.checkpoint_store import CheckpointCollector


@dataclass
class JobRuntime:
    """Per-job memory of one operator process; everything here can be rebuilt from the API server."""

    plan: list[dict[str, Any]] | None = None
    plan_chunks: int = 1
    batch: int | None = None  # an incremental job's batch (its number is kept beside the plan)
    input_problem: str = ""  # a continuous job's last failure to list or plan, told once (an event)
    told_resumed: bool = False  # the ResumedFromStorage event was posted (spec.output.resume)
    told_unqueued: bool = False  # the NotQueued event was posted (a MultiKueue job without a queue)
    # spec.output.resume: the ledger rebuilt from the output (state_codec form), until the status holds it.
    resumed: dict[str, Any] | None = None
    # The input as planning listed it this pass: the resume check takes the objects' versions from the very
    # listing the plan was made from (one listing, not two that could differ).
    listed: list[InputFile] | None = None
    rbac_leases: frozenset[str] = frozenset()
    leases_created: set[str] = field(default_factory=set)
    last_assignment: dict[str, str] = field(default_factory=dict)
    # Pods the API server refused in the last pass, with its message: the next pass backs those slots off.
    create_failures: dict[str, tuple[str, str]] = field(default_factory=dict)
    collector: CheckpointCollector | None = None
    # Pods this process created that the informer cache has not shown yet, with when (JobController._pods).
    expected_pods: dict[str, float] = field(default_factory=dict)
    rates: progress.RateWindow = field(default_factory=progress.RateWindow)  # rebuilt after a restart
    input_bytes: int | None = None  # the plan's input size
    # Under Kueue: the admitted flavors' node selector and tolerations, added to new worker pods.
    placement: tuple[dict[str, str], list[dict[str, Any]]] = ({}, [])
    queue_status: dict[str, Any] = field(default_factory=dict)  # status.queue as of this pass
    replacing: dict[int, float] = field(default_factory=dict)  # slot -> when its worker's death was seen
    claim_templates: dict[str, float] = field(default_factory=dict)  # ResourceClaimTemplate -> made sure at
    devices: dict[str, list[str]] = field(default_factory=dict)  # pod -> devices its claim was allocated
    unavailable: dict[str, str] = field(default_factory=dict)  # profiles no node can run, with why
    unavailable_at: float = 0.0  # when that was last judged (time.monotonic)
