"""``datajob``: run or validate a DataJob manifest on this machine (local mode)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from . import worker_process


def _load(path: Path) -> dict[str, Any]:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    jobs = [d for d in documents if isinstance(d, dict) and d.get("kind") == "DataJob"]
    if len(jobs) != 1:
        raise ValueError(f"{path}: expected exactly one DataJob document, found {len(jobs)}")
    return jobs[0]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (spec.workers' minimum), got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="datajob", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a DataJob on this machine with worker subprocesses")
    run.add_argument("manifest", type=Path)
    run.add_argument("--workers", type=_positive, help="override spec.workers (at least 1)")
    run.add_argument(
        "--kill-every",
        type=float,
        metavar="SECONDS",
        help="inject failures: SIGKILL a random worker about this often, to watch jobs recover",
    )
    run.add_argument("--seed", type=int, help="seed for --kill-every, for repeatable demos")
    run.add_argument(
        "--shard",
        type=int,
        metavar="N",
        help="debug one shard: plan as the operator does, run shard N in this process into a scratch dir",
    )
    run.add_argument(
        "--from-checkpoint",
        action="store_true",
        help="with --shard: start at the newest checkpoint of that shard in the job's output",
    )
    run.add_argument("--shard-output", type=Path, metavar="DIR", help="with --shard: where its output goes")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace output of another job or of an earlier version of this one (spec.output.overwrite)",
    )
    run.add_argument(
        "--report",
        type=Path,
        metavar="PATH",
        help="also write the run report (HTML; always written to OUTPUT/_datajob/report.html) to PATH",
    )
    run.add_argument(
        "--max-batches",
        type=_positive,
        metavar="N",
        help="incremental and continuous jobs: stop after committing N batches",
    )
    run.add_argument(
        "--stop-when-idle",
        type=float,
        metavar="SECONDS",
        help="continuous jobs: stop once no new input has arrived for this long (default: run until ^C)",
    )
    validate = commands.add_parser("validate", help="check a manifest with the API's rules")
    validate.add_argument("manifest", type=Path)
    args = parser.parse_args(argv)
    if args.command == "run" and args.shard is None:
        # The workers' fork server imports the worker while this process imports the rest and plans.
        worker_process.warm_up()
    # Imported after the fork server started, so that the two imports run side by side.
    from datajob_core.api.models import DataJob  # noqa: PLC0415
    from datajob_core.cluster.reconciler import Phase  # noqa: PLC0415
    from datajob_core.data.planning import PlanError  # noqa: PLC0415
    from datajob_core.storage.output_identity import OutputInUseError  # noqa: PLC0415

    from .local_runner import LocalRun, check_local  # noqa: PLC0415

    try:
        manifest = _load(args.manifest)
        if args.command == "validate":
            check_local(DataJob.load(manifest))
            print(f"{args.manifest}: valid")
            return 0
        if args.shard is not None:
            from .replay import replay_shard  # noqa: PLC0415

            return replay_shard(
                manifest,
                args.manifest.resolve().parent,
                args.shard,
                output=args.shard_output,
                from_checkpoint=args.from_checkpoint,
            )
        if DataJob.load(manifest).spec.incremental:
            from .incremental_runner import IncrementalRun  # noqa: PLC0415

            batches = IncrementalRun(
                manifest,
                args.manifest.resolve().parent,
                workers=args.workers,
                overwrite=args.overwrite,
                kill_every=args.kill_every,
                seed=args.seed,
                report=args.report,
                max_batches=args.max_batches,
                stop_when_idle=args.stop_when_idle,
            )
            return _run_batches(batches)
        job = LocalRun(
            manifest,
            args.manifest.resolve().parent,
            workers=args.workers,
            overwrite=args.overwrite,
            kill_every=args.kill_every,
            seed=args.seed,
            report=args.report,
        )
    except (ValueError, OverflowError, OSError, yaml.YAMLError) as error:
        print(f"datajob: invalid job: {error}", file=sys.stderr)
        return 2
    try:
        state = job.run()
    except (PlanError, OutputInUseError) as error:
        print(f"datajob: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndatajob: interrupted; committed output is kept", file=sys.stderr)
        return 130
    return 0 if state.phase is Phase.SUCCEEDED else 1


def _run_batches(batches: Any) -> int:
    from datajob_core.cluster.reconciler import Phase  # noqa: PLC0415
    from datajob_core.data.planning import PlanError  # noqa: PLC0415
    from datajob_core.storage.batch_log import BatchLogError  # noqa: PLC0415
    from datajob_core.storage.output_identity import OutputInUseError  # noqa: PLC0415

    try:
        phase = batches.run()
    except (PlanError, OutputInUseError, BatchLogError) as error:
        print(f"datajob: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "\ndatajob: interrupted; committed batches are kept (a batch that was running is finished first "
            "by the next run)",
            file=sys.stderr,
        )
        return 130
    return 0 if phase is Phase.SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
