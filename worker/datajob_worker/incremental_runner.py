"""Local mode for incremental and continuous jobs: batches of new input, each an ordinary local run.

The batch log (datajob_core.storage.batch_log) makes each batch exactly-once per object: its plan entry
fixes its objects before it runs, its commit entry publishes it after. A run first finishes a batch an
earlier run planned but did not commit (killed, interrupted), then plans the next from the objects no
batch took. Batch mode (spec.input.incremental) stops after that; spec.mode Continuous keeps polling.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from datajob_core.api.identity import incremental_owner
from datajob_core.api.models import DataJob
from datajob_core.cluster.reconciler import Phase
from datajob_core.data import increments
from datajob_core.data.increments import human_seconds as human
from datajob_core.data.locations import StorageConfig
from datajob_core.data.planning import InputFile, PlanError
from datajob_core.storage import output_identity
from datajob_core.storage.batch_log import BatchLog
from datajob_core.storage.inputs import list_inputs
from datajob_core.storage.output_format import OutputCodec
from datajob_core.storage.stores import Store

from . import processors
from .local_runner import Batch, LocalRun, check_local, resolve_paths


class IncrementalRun:
    def __init__(
        self,
        manifest: dict[str, Any],
        base: Path,
        *,
        workers: int | None = None,
        overwrite: bool = False,
        kill_every: float | None = None,
        seed: int | None = None,
        out: TextIO | None = None,
        report: Path | None = None,
        max_batches: int | None = None,
        stop_when_idle: float | None = None,
        clock_now: Callable[[], float] = time.time,
    ) -> None:
        job = DataJob.load(manifest)  # raises ValueError naming every bad field
        check_local(job)
        self.manifest, self.base = manifest, base
        self.name = str(job.metadata.get("name") or "datajob")
        self.spec = resolve_paths(job.spec.model_dump(by_alias=True, exclude_none=True), base)
        self.continuous = job.spec.mode == "Continuous"
        options = job.spec.continuous
        self.poll_seconds = float(options.poll_seconds) if options else 10.0
        self.limit = options.max_batch_objects if options and self.continuous else None
        self.workers, self.kill_every, self.seed, self.report = workers, kill_every, seed, report
        self.overwrite = overwrite  # datajob run --overwrite: start the batch log afresh
        self.max_batches, self.stop_when_idle = max_batches, stop_when_idle
        self.now = clock_now
        self.out = out or sys.stderr
        self.storage = StorageConfig.from_spec(self.spec.get("storage"))
        self.store = Store(self.spec["output"]["uri"], self.storage)
        # As written (relative paths unresolved): a project directory moved elsewhere is the same job.
        self.owner = incremental_owner({"metadata": {"name": self.name}, "spec": manifest["spec"]})
        reduce = self.spec.get("reduce") or {}
        processor = processors.build(
            self.spec.get("processor"), partitions=int(reduce.get("partitions") or 0)
        )
        # As the workers encode it (Parquet rows from the processor's lines), so merges read what they wrote.
        output_format = (self.spec.get("output") or {}).get("format") or "jsonl"
        codec = OutputCodec(output_format, processor.to_row, processor.from_row)
        self.log = BatchLog(self.store, self.owner, codec)
        self.merge = processor.merge if increments.combines(self.spec) else None
        self.changed: set[str] = set()  # reported once each
        self.batches_run = 0
        self.result: str | None = None
        self.records = 0

    def _line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def run(self) -> Phase:
        owner = {"job": self.name, "id": self.owner}
        if self.overwrite:
            output_identity.clear(self.store, owner)  # every batch, its log and results go: all is new again
        output_identity.claim(self.store, owner, overwrite=self.overwrite)
        idle_since = self.now()
        while True:
            state = self.log.read()
            number = state.open_batch
            objects: list[dict[str, Any]]
            if number is not None:
                objects = state.plans[number]
                self._line(f"{self.name}: batch {number} was planned but not committed; running it again")
            else:
                listing = increments.outside(self._list(), self.spec["output"]["uri"])
                selection = increments.select(listing, state.ingested, self.limit)
                self._changed(selection.changed, state.plans)
                if not selection.new:
                    if not self.continuous:
                        self._nothing_new(state.last_commit)
                        return Phase.SUCCEEDED
                    if self._should_stop(idle_since):
                        return Phase.SUCCEEDED
                    time.sleep(self.poll_seconds)
                    continue
                number = increments.next_batch(state.plans)
                objects = self.log.plan(number, [increments.describe(f) for f in selection.new], self.now())
            phase = self._run_batch(number, objects)
            if phase is not Phase.SUCCEEDED:
                return phase
            idle_since = self.now()
            if not self.continuous and state.open_batch is None:
                return Phase.SUCCEEDED
            if self.max_batches is not None and self.batches_run >= self.max_batches:
                return Phase.SUCCEEDED

    def _list(self) -> list[InputFile]:
        try:
            return list_inputs(self.spec["input"]["uris"], self.storage)
        except PlanError:
            if self.continuous:
                return []  # nothing has arrived yet
            raise

    def _run_batch(self, number: int, objects: list[dict[str, Any]]) -> Phase:
        started = time.monotonic()
        batch = Batch(
            output=self.store.url_of(increments.batch_root(number)),
            files=[increments.as_input(o) for o in objects],
            owner=self.owner,
        )
        run = LocalRun(
            self.manifest,
            self.base,
            workers=self.workers,
            kill_every=self.kill_every,
            seed=self.seed,
            out=self.out,
            report=self.report,
            batch=batch,
        )
        state = run.run()
        if state.phase is not Phase.SUCCEEDED:
            self._line(f"{self.name}: batch {number} {state.phase.value}; committed batches are kept")
            return state.phase
        entry = self.log.commit(number, self.merge, self.now())
        self.batches_run += 1
        self.records = int(entry.get("totalRecords", 0))
        self.result = self.store.url_of(entry["result"]["object"])
        lags = [entry["committedAt"] - o["modified"] for o in objects if o.get("modified") is not None]
        p50, worst = increments.percentile(lags, 0.5), max(lags, default=None)
        lag = f"; lag p50 {human(p50)}, max {human(worst)}" if lags else ""
        self._line(
            f"{self.name}: batch {number} committed: {len(objects)} object(s), {entry['records']:,} records "
            f"in {human(time.monotonic() - started)}{lag}; {self.records:,} records in all"
        )
        self._show_result(entry)
        return Phase.SUCCEEDED

    def _changed(self, changed: list[InputFile], plans: dict[int, list[dict[str, Any]]]) -> None:
        taken = {str(o["path"]): number for number in sorted(plans) for o in plans[number]}
        for found in changed:
            if found.path not in self.changed:
                self.changed.add(found.path)
                self._line(
                    f"InputChanged: {found.path} was rewritten after batch {taken.get(found.path)} took it; "
                    "its new content is not processed (write new data under a new name)"
                )

    def _nothing_new(self, last: dict[str, Any] | None) -> None:
        if last is None:
            raise PlanError(f"no input files matched spec.input.uris {self.spec['input']['uris']}")
        self.log.refresh()  # the result copy a run killed after its last commit entry may not have made
        self.result = self.store.url_of(last["result"]["object"])
        self.records = int(last.get("totalRecords", 0))
        self._line(f"{self.name}: nothing new since batch {last['batch']}")
        self._show_result(last)

    def _show_result(self, entry: dict[str, Any]) -> None:
        if entry.get("mode") == "merge":
            self._line(f"result: {self.store.url_of('result')}  (batch {entry['batch']}: {self.result})")
        else:
            self._line(
                f"result: {self.store.url_of(increments.BATCHES)}/*/result, in batch order "
                f"(newest: {self.result})"
            )

    def _should_stop(self, idle_since: float) -> bool:
        if self.max_batches is not None and self.batches_run >= self.max_batches:
            return True
        return self.stop_when_idle is not None and self.now() - idle_since >= self.stop_when_idle
