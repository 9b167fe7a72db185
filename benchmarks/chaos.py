"""Chaos run of a 1,000-shard DataJob on the real control plane; prints its figures.

    python benchmarks/chaos.py [--shards 1000] [--seed 1] [--kill-fraction 0.2] [--operator-restarts 3]
                               [--apiserver-restarts 1]

Kills worker processes (the given fraction of the shards workers start, each at a random moment of it), the
operator and kube-apiserver while the job runs; exits non-zero unless the job Succeeded with zero failed
shards and output byte-identical to a failure-free local-mode run of the same manifest. See
tests/datajob_testenv/chaos.py; results in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys

from datajob_testenv.chaos import ChaosConfig, run_chaos


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = ChaosConfig()
    parser.add_argument("--shards", type=int, default=defaults.shards)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--kill-fraction", type=float, default=defaults.kill_fraction)
    parser.add_argument("--operator-restarts", type=int, default=defaults.operator_restarts)
    parser.add_argument("--apiserver-restarts", type=int, default=defaults.apiserver_restarts)
    args = parser.parse_args()
    config = ChaosConfig(
        shards=args.shards,
        workers=args.workers,
        seed=args.seed,
        kill_fraction=args.kill_fraction,
        operator_restarts=args.operator_restarts,
        apiserver_restarts=args.apiserver_restarts,
    )
    result = run_chaos(config, log=lambda text: print(text, file=sys.stderr, flush=True))
    print(f"chaos run: {config}")
    for line in result.lines():
        print(line)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
