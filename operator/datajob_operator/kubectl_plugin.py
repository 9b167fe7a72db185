"""``kubectl datajob``: look at and steer DataJobs from kubectl (installed as the ``kubectl-datajob``
executable; kubectl runs any ``kubectl-<name>`` on PATH as ``kubectl <name>``).

    kubectl datajob status NAME          shards, workers, progress, throughput, ETA, recent failures
    kubectl datajob why NAME             why it is not running, or why it failed
    kubectl datajob logs NAME [--slot K | --shard S] [--tail N] [-f]
    kubectl datajob retry NAME --failed  re-run the permanently failed shards (succeeded ones are kept)
    kubectl datajob suspend NAME / resume NAME
    kubectl datajob scale NAME --workers N
    kubectl datajob report NAME > report.html   the run report, drawn from the job's output now

Global flags follow kubectl: -n/--namespace, --context, --kubeconfig; -o json|yaml for status and why.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from datajob_core.cluster import sizing, state_codec
from datajob_core.cluster.reconciler import RETRY_ANNOTATION
from datajob_core.data.locations import CREDENTIAL_KEYS, StorageConfig, is_remote
from datajob_core.data.storage_access import own_credentials_refused
from datajob_core.report import files as report_files
from datajob_core.report import page as report_page
from datajob_core.storage.stores import StorageError, Store

from .kube import GROUP, JOB_LABEL, PLURAL, VERSION

FAILURE_EVENTS = ("WorkerFailed", "ShardFailed", "WorkerDisrupted", "Stalled", "WorkersBlocked", "Evicted")


class PluginError(Exception):
    """Something the user should read; exit code 1."""


class Cluster:
    def __init__(self, kubeconfig: str | None, context: str | None, namespace: str | None) -> None:
        try:
            api = config.new_client_from_config(config_file=kubeconfig, context=context)
            _, current = config.list_kube_config_contexts(config_file=kubeconfig)
        except (config.ConfigException, OSError) as error:
            raise PluginError(f"cannot load the kubeconfig: {error}") from error
        if context:
            contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
            current = next((c for c in contexts if c["name"] == context), current)
        self.namespace = namespace or (current.get("context") or {}).get("namespace") or "default"
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.events = client.EventsV1Api(api)

    def job(self, name: str) -> dict[str, Any]:
        try:
            job: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                raise PluginError(f'datajob "{name}" not found in namespace "{self.namespace}"') from error
            raise
        return job

    def patch(self, name: str, body: dict[str, Any]) -> None:
        self.job(name)
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, body)

    def secret(self, name: str, keys: tuple[str, ...]) -> dict[str, str] | None:
        """Only ``keys`` of the Secret, decoded; None if it does not exist or this user may not read it."""
        try:
            found = self.core.read_namespaced_secret(name, self.namespace)
        except ApiException as error:
            if error.status in (403, 404):
                return None
            raise
        data = found.data or {}
        return {k: base64.b64decode(data[k]).decode() for k in keys if k in data}

    def pods(self, name: str) -> list[Any]:
        pods: list[Any] = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{JOB_LABEL}={name}"
        ).items
        return pods

    def job_events(self, name: str) -> list[EventView]:
        # Raw JSON: the client's models refuse events.k8s.io Events without an eventTime (old-style ones).
        response = self.events.list_namespaced_event(
            self.namespace,
            field_selector=f"regarding.name={name},regarding.kind=DataJob",
            _preload_content=False,
        )
        items = json.loads(response.data).get("items") or []
        return sorted((EventView.of(item) for item in items), key=lambda e: e.time)


@dataclass(frozen=True)
class EventView:
    reason: str
    note: str
    time: str  # ISO 8601, sortable

    @classmethod
    def of(cls, event: dict[str, Any]) -> EventView:
        meta = event.get("metadata") or {}
        at = event.get("eventTime") or event.get("deprecatedLastTimestamp") or meta.get("creationTimestamp")
        return cls(str(event.get("reason") or ""), str(event.get("note") or ""), str(at or ""))


def _conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or []}


# -- status --------------------------------------------------------------------------------------------
def status_report(job: dict[str, Any], events: Sequence[EventView]) -> dict[str, Any]:
    """What `status` shows, as data (also what -o json|yaml prints)."""
    status = job.get("status") or {}
    failures = [
        {"time": e.time, "reason": e.reason, "message": e.note} for e in events if e.reason in FAILURE_EVENTS
    ][-5:]
    true_conditions = [
        {"type": c["type"], "reason": c.get("reason"), "message": c.get("message")}
        for c in status.get("conditions") or []
        if c.get("status") == "True" and c["type"] not in ("Succeeded",)
    ]
    return {
        "name": job["metadata"]["name"],
        "namespace": job["metadata"].get("namespace"),
        "phase": status.get("phase", "Pending"),
        "message": status.get("message", ""),
        "shards": status.get("shards") or {},
        "reduce": status.get("reduce"),
        "workers": status.get("workers") or {},
        "restarts": status.get("restarts", 0),
        "disruptions": status.get("disruptions", 0),
        "progress": status.get("progress") or {},
        "queue": status.get("queue"),
        "output": status.get("output"),
        "hardware": status.get("hardware"),
        "speculation": status.get("speculation"),
        "splitting": status.get("splitting"),
        "conditions": true_conditions,
        "recentFailures": failures,
    }


def format_status(report: dict[str, Any]) -> str:
    shards, workers, progress = report["shards"], report["workers"], report["progress"]
    lines = [
        f"Name:       {report['name']}  (namespace {report['namespace']})",
        f"Phase:      {report['phase']}" + (f"  {report['message']}" if report["message"] else ""),
    ]
    if progress:
        rate = ""
        if "recordsPerSecond" in progress:
            rate = (
                f"  {progress['recordsPerSecond']:,} records/s, {_bytes(progress.get('bytesPerSecond', 0))}/s"
            )
        eta = f"  ETA {progress['eta']}" if progress.get("eta") else ""
        lines.append(f"Progress:   {progress.get('summary', '?')}{eta}{rate}")
    if shards:
        lines.append(
            f"Shards:     {shards.get('summary', '?')} done: {shards.get('pending', 0)} pending, "
            f"{shards.get('running', 0)} running, {shards.get('succeeded', 0)} succeeded, "
            f"{shards.get('failed', 0)} failed"
        )
    if report.get("reduce"):
        lines.append(f"Reduce:     {report['reduce'].get('summary', '?')} done")
    lines.append(
        f"Workers:    {workers.get('ready', 0)}/{workers.get('desired', 0)} ready; "
        f"{report['restarts']} replaced ({report['disruptions']} disruption(s), charged to nobody)"
    )
    if report.get("queue"):
        queue = report["queue"]
        where = f", position {queue['position']}" if queue.get("position") else ""
        admitted = f", admitted by {queue['clusterQueue']}" if queue.get("clusterQueue") else ""
        lines.append(f"Queue:      {queue.get('name')} (Kueue){where}{admitted}")
    lines += _hardware_lines(report.get("hardware") or {})
    speculation = report.get("speculation") or {}
    if speculation.get("launched"):
        shards = ", ".join(f"{s['shard']} ({s['winner']})" for s in speculation.get("shards") or [])
        lines.append(
            f"Backups:    {speculation['launched']} launched, {speculation.get('won', 0)} won, "
            f"{speculation.get('wasted', 0)} wasted, {speculation.get('running', 0)} running"
            + (f"; shards: {shards}" if shards else "")
        )
    splitting = report.get("splitting") or {}
    if splitting.get("shards") or splitting.get("off"):
        lines.append(
            f"Splits:     off: {splitting['off']}"
            if splitting.get("off")
            else f"Splits:     {splitting['shards']} shard(s) split into {splitting.get('made', 0)} more, "
            f"{splitting.get('requested', 0)} requested now"
        )
    if report.get("output"):
        lines.append(f"Output:     {report['output'].get('uri')} (commit {report['output'].get('commit')})")
    for condition in report["conditions"]:
        lines.append(f"Condition:  {condition['type']} ({condition['reason']}): {condition['message'] or ''}")
    if report["recentFailures"]:
        lines.append("Recent failures:")
        for failure in report["recentFailures"]:
            lines.append(f"  {failure['reason']}: {failure['message']}")
    return "\n".join(lines)


def _hardware_lines(hardware: dict[str, Any]) -> list[str]:
    """Per profile (workers, shards, records/s, given up) and per live worker (profile, node, devices)."""
    profiles = hardware.get("profiles") or []
    if not profiles or (len(profiles) == 1 and not hardware.get("workers")):
        return []
    lines = ["Hardware:   PROFILE  READY/ACTIVE  SHARDS  RECORDS/S  GIVEN UP"]
    for p in profiles:
        rate = f"{p['recordsPerSecond']:,}" if p.get("recordsPerSecond") is not None else "-"
        given_up = (p.get("givenUp") or "-")[:80]
        lines.append(
            f"            {p['name']}  {p.get('ready', 0)}/{p.get('active', 0)}  {p.get('shards', 0)}  {rate}"
            f"  {given_up}"
        )
    workers = hardware.get("workers") or []
    if workers:
        lines.append("Workers on: POD  PROFILE  NODE  RECORDS/S  DEVICES")
        for w in workers:
            rate = f"{w['recordsPerSecond']:,}" if w.get("recordsPerSecond") is not None else "-"
            devices = ",".join(w.get("devices") or []) or "-"
            lines.append(f"            {w['pod']}  {w['profile']}  {w.get('node') or '-'}  {rate}  {devices}")
    return lines


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


# -- why ---------------------------------------------------------------------------------------------
def explain(job: dict[str, Any], events: Sequence[EventView], pods: Sequence[Any]) -> list[str]:
    """Why the job is not running, or why it failed, most telling first (pure: tested without a cluster)."""
    status = job.get("status") or {}
    phase = status.get("phase", "Pending")
    c = _conditions(status)
    reasons: list[str] = []

    def true(kind: str) -> dict[str, Any] | None:
        found = c.get(kind)
        return found if found and found.get("status") == "True" else None

    if phase == "Succeeded":
        return [f"It succeeded: {status.get('message', '')}".rstrip(": ")]
    if phase == "Failed":
        failed = true("Failed") or {}
        reasons.append(
            f"It failed ({failed.get('reason', status.get('reason', '?'))}): {status.get('message', '')}"
        )
        last = [e for e in events if e.reason in ("WorkerFailed", "ShardFailed")][-3:]
        reasons += [f"{e.reason}: {e.note}" for e in last]
        reasons.append(
            "Fix the cause, then `kubectl datajob retry NAME --failed` re-runs only the failed shards."
        )
        return reasons
    if true("Suspended"):
        reasons.append("It is suspended (spec.suspend: true); `kubectl datajob resume NAME` starts it again.")
    queued = true("Queued")
    if queued:
        reasons.append(f"Kueue has not admitted it yet ({queued.get('reason')}): {queued.get('message')}")
    for kind, what in (
        ("Stalled", "It is stalled"),
        ("WorkersBlocked", "Workers cannot be created or started"),
        ("WorkersUnschedulable", "Workers cannot be placed on any node"),
        ("ReconcileFailing", "The operator cannot reconcile it"),
    ):
        found = true(kind)
        if found:
            reasons.append(f"{what} ({found.get('reason')}): {found.get('message')}")
    for pod in pods:
        if pod.metadata.deletion_timestamp:
            continue
        for container in (pod.status.container_statuses or []) if pod.status else []:
            waiting = container.state.waiting if container.state else None
            if waiting and waiting.reason not in ("ContainerCreating", "PodInitializing"):
                reasons.append(
                    f"Pod {pod.metadata.name}: {waiting.reason}: {waiting.message or ''}".rstrip(": ")
                )
    if not reasons:
        if phase == "Running":
            reasons.append(f"It is running: {status.get('workers', {}).get('summary', '?')} workers ready.")
        else:
            reasons.append(f"It is {phase.lower()}; no blocking condition is set yet.")
    return reasons


# -- logs --------------------------------------------------------------------------------------------
def pick_pods(job: dict[str, Any], pods: Sequence[Any], slot: int | None, shard: int | None) -> list[Any]:
    """The pods whose logs to show: a slot's current worker, the worker holding a shard, or all live ones."""
    live = sorted(
        (p for p in pods if not p.metadata.deletion_timestamp),
        key=lambda p: p.metadata.creation_timestamp or datetime.datetime.min.replace(tzinfo=datetime.UTC),
    )
    if slot is not None:
        mine = [p for p in pods if (p.metadata.labels or {}).get(sizing.SLOT_LABEL) == str(slot)]
        if not mine:
            raise PluginError(f"no worker pod for slot {slot}")
        return [max(mine, key=lambda p: p.metadata.creation_timestamp)]
    if shard is not None:
        ledger = (job.get("status") or {}).get("ledger")
        if not ledger:
            raise PluginError("the job has no shard ledger yet")
        state = state_codec.decode(ledger).ledger
        if not 0 <= shard < state.total + state.children:  # the children of splits come after the plan
            raise PluginError(f"--shard {shard}: the job has shards 0 to {state.total + state.children - 1}")
        entry = state.in_flight.get(shard)
        if entry is None:
            raise PluginError(
                f"shard {shard} is not being processed now (it is {state.state_of(shard).value})"
            )
        holder = [p for p in pods if p.metadata.name == entry.worker]
        if not holder:
            raise PluginError(f"shard {shard} is held by {entry.worker}, whose pod is gone")
        return holder
    if not live:
        raise PluginError("the job has no worker pods now")
    return live


# -- the command line --------------------------------------------------------------------------------
def _common(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """kubectl's flags, accepted before and after the command; after wins. Only the top level has
    defaults: a subcommand's own defaults would overwrite what was given before it."""

    def default(value: str | None) -> str | None:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("-n", "--namespace", default=default(None))
    parser.add_argument("--context", default=default(None))
    parser.add_argument("--kubeconfig", default=default(None))
    parser.add_argument("-o", "--output", choices=["text", "json", "yaml"], default=default("text"))


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _common(common, defaults=False)
    top = argparse.ArgumentParser(
        prog="kubectl datajob", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _common(top, defaults=True)
    commands = top.add_subparsers(dest="command", required=True)
    for name in ("status", "why", "suspend", "resume"):
        commands.add_parser(name, parents=[common]).add_argument("name")
    report = commands.add_parser("report", parents=[common])
    report.add_argument("name")
    report.add_argument(
        "--use-my-credentials",
        action="store_true",
        help="read the output with your own credentials when the job's Secret cannot be read",
    )
    logs = commands.add_parser("logs", parents=[common])
    logs.add_argument("name")
    which = logs.add_mutually_exclusive_group()
    which.add_argument("--slot", type=int)
    which.add_argument("--shard", type=int)
    logs.add_argument("--tail", type=int, default=-1)
    logs.add_argument("-f", "--follow", action="store_true")
    retry = commands.add_parser("retry", parents=[common])
    retry.add_argument("name")
    retry.add_argument(
        "--failed", action="store_true", required=True, help="re-run the permanently failed shards"
    )
    scale = commands.add_parser("scale", parents=[common])
    scale.add_argument("name")
    scale.add_argument("--workers", "--replicas", dest="workers", type=int, required=True)
    return top


def _print(data: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(data, indent=2, default=str))
    else:
        print(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip())


def run(args: argparse.Namespace) -> int:
    cluster = Cluster(args.kubeconfig, args.context, args.namespace)
    name = args.name
    if args.command == "status":
        report = status_report(cluster.job(name), cluster.job_events(name))
        if args.output == "text":
            print(format_status(report))
        else:
            _print(report, args.output)
    elif args.command == "why":
        reasons = explain(cluster.job(name), cluster.job_events(name), cluster.pods(name))
        if args.output == "text":
            print("\n".join(f"- {r}" for r in reasons))
        else:
            _print({"name": name, "reasons": reasons}, args.output)
    elif args.command == "logs":
        pods = pick_pods(cluster.job(name), cluster.pods(name), args.slot, args.shard)
        for pod in pods:
            if len(pods) > 1:
                print(f"==> {pod.metadata.name} <==")
            _logs(cluster, pod.metadata.name, args.tail, args.follow and len(pods) == 1)
    elif args.command == "retry":
        status = cluster.job(name).get("status") or {}
        failed = int((status.get("shards") or {}).get("failed", 0)) + int(
            (status.get("reduce") or {}).get("failed", 0)
        )
        if status.get("phase") == "Succeeded":
            raise PluginError(f"datajob {name} has succeeded; there is nothing to retry")
        if not failed and status.get("phase") != "Failed":
            raise PluginError(f"datajob {name} has no failed shards")
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        cluster.patch(name, {"metadata": {"annotations": {RETRY_ANNOTATION: stamp}}})
        print(
            f"datajob.datajob.dev/{name} retry requested ({failed} failed shard(s)); see its Retrying event"
        )
    elif args.command == "report":
        sys.stdout.write(job_report(cluster, cluster.job(name), use_my_credentials=args.use_my_credentials))
    elif args.command in ("suspend", "resume"):
        cluster.patch(name, {"spec": {"suspend": args.command == "suspend"}})
        print(f"datajob.datajob.dev/{name} {args.command}d")
    elif args.command == "scale":
        if args.workers < 1:
            raise PluginError("--workers must be at least 1")
        cluster.patch(name, {"spec": {"workers": args.workers}})
        print(f"datajob.datajob.dev/{name} scaled to {args.workers} worker(s)")
    return 0


def job_report(cluster: Cluster, job: dict[str, Any], *, use_my_credentials: bool = False) -> str:
    """The run report (datajob_core.report), drawn now from the job's output: a running job's attempts so
    far, a finished one's whole story. The output is read with the job's credentials Secret when this user
    may read it, else with the user's own (AWS_* variables, ~/.aws): never with the operator's."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    storage = spec.get("storage") or {}
    credentials = None
    if storage.get("credentialsSecret"):
        credentials = cluster.secret(storage["credentialsSecret"], CREDENTIAL_KEYS) or None
    uri = (spec.get("output") or {}).get("uri", "")
    refused = own_credentials_refused(storage, credentials is not None, use_my_credentials)
    if refused:
        raise PluginError(refused)
    if not is_remote(uri) and not os.path.isdir(uri):
        raise PluginError(
            f"the output {uri} is a path on the cluster's volumes, not on this machine; its report is "
            f"{uri}/_datajob/report.html there (written when the job succeeds)"
        )
    who = "the job's Secret" if credentials is not None else "your own credentials"
    print(f"reading {uri} with {who}", file=sys.stderr)
    try:
        store = Store(uri, StorageConfig.from_spec(storage), credentials)
    except (OSError, StorageError, ValueError) as error:
        raise PluginError(f"cannot read the output {uri}: {error}") from error
    shards = status.get("shards") or {}
    summary = {
        "phase": status.get("phase") or "Pending",
        "shards": f"{shards.get('succeeded', 0)}/{shards.get('total', 0)} committed, "
        f"{shards.get('failed', 0)} failed",
        "records committed": f"{int((status.get('processed') or {}).get('records') or 0):,}",
        "worker restarts": status.get("restarts", 0),
        "output": uri,
    }
    if status.get("message"):
        summary["message"] = status["message"]
    name = job["metadata"]["name"]
    try:
        history = report_files.history_of(
            store, job["metadata"].get("uid"), name, finished=summary["phase"] == "Failed", summary=summary
        )
    except (OSError, StorageError, ValueError) as error:
        raise PluginError(f"cannot read the output {uri}: {error}") from error
    return report_page.render(history, {"metadata": {"name": name}, "spec": spec})


def _logs(cluster: Cluster, pod: str, tail: int, follow: bool) -> None:
    kwargs: dict[str, Any] = {"container": sizing.WORKER_CONTAINER}
    if tail >= 0:
        kwargs["tail_lines"] = tail
    if follow:
        stream = cluster.core.read_namespaced_pod_log(
            pod, cluster.namespace, follow=True, _preload_content=False, **kwargs
        )
        for chunk in stream.stream():
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        return
    sys.stdout.write(cluster.core.read_namespaced_pod_log(pod, cluster.namespace, **kwargs))


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ApiException as error:
        print(f"error: {error.status} {error.reason}: {(error.body or '')[:500]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
