"""Which failures are whose fault: the verdict on a worker that ended, as a pure function of what was seen.

Modelled on the Kubernetes Job's ``podFailurePolicy``, with ``DisruptionTarget: Ignore`` built in:

- a *disruption* (eviction, preemption, node drain or loss, a deletion by anyone but this job's scale-down,
  a pod with the ``DisruptionTarget`` condition) releases the worker's shards with their checkpoints and
  charges nothing, neither the shards nor the slot's restart budget;
- a *failure* (non-zero exit) charges only the shard the worker reported processing, and counts against
  the slot's restart budget with backoff. The user's ``podFailurePolicy`` rules can turn exit codes into
  ``Ignore`` (retriable, no charge), ``FailShard`` (the shard is bad: fail it now) or ``FailJob``;
- a worker that stopped answering (no heartbeat) or never got to a shard is the worker's problem, not a
  shard's: it counts against the restart budget only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    IGNORE = "Ignore"  # release everything, charge nothing
    COUNT = "Count"  # charge the current shard one attempt; count a worker restart
    FAIL_SHARD = "FailShard"  # fail the current shard permanently; count a worker restart
    FAIL_JOB = "FailJob"  # the job fails
    RESTART = "Restart"  # (internal) count a worker restart, charge no shard


# Pod status reasons and DisruptionTarget condition reasons that mean "taken away", not "crashed".
DISRUPTION_POD_REASONS = frozenset(
    {"Evicted", "Preempted", "Shutdown", "NodeShutdown", "Terminated", "NodeLost"}
)


@dataclass(frozen=True)
class ExitCodeRule:
    action: Action
    operator: str  # In or NotIn
    values: frozenset[int]

    def matches(self, code: int) -> bool:
        return (code in self.values) == (self.operator == "In")


def rules_from_spec(spec: Mapping[str, Any] | None) -> tuple[ExitCodeRule, ...]:
    """``spec.retryPolicy.podFailurePolicy`` as stored by the API server (already validated)."""
    rules = []
    for rule in (spec or {}).get("rules") or []:
        on = rule["onExitCodes"]
        rules.append(ExitCodeRule(Action(rule["action"]), on["operator"], frozenset(on["values"])))
    return tuple(rules)


@dataclass(frozen=True)
class Verdict:
    action: Action
    cause: str
    disruption: bool = False


def judge_exit(exit_code: int | None, cause: str, rules: Iterable[ExitCodeRule]) -> Verdict:
    """A worker container that terminated with ``exit_code`` (None: unknown, e.g. never started)."""
    if exit_code is not None:
        for rule in rules:  # first match wins, as in the Job API
            if rule.matches(exit_code):
                return Verdict(rule.action, f"{cause} (podFailurePolicy: {rule.action.value})")
    return Verdict(Action.COUNT, cause)


def disruption(cause: str) -> Verdict:
    return Verdict(Action.IGNORE, cause, disruption=True)
