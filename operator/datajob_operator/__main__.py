"""``python -m datajob_operator``: run the operator (in a pod, or locally against a kubeconfig)."""

from __future__ import annotations

import argparse
import logging
import sys

import kopf

from . import handlers  # noqa: F401 - registers the handlers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="datajob-operator", description=__doc__)
    parser.add_argument("--namespace", "-n", action="append", default=[], help="watch only these namespaces")
    parser.add_argument(
        "--liveness", default=None, help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz"
    )
    parser.add_argument(
        "--peering", default=None, help="kopf peering name for leader election (default: standalone)"
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    kopf.run(
        standalone=args.peering is None,
        peering_name=args.peering,
        namespaces=list(args.namespace),
        clusterwide=not args.namespace,
        liveness_endpoint=args.liveness,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
