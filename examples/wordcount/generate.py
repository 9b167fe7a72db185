"""Writes the word-count example's input: a deterministic synthetic corpus (no downloads).

python examples/wordcount/generate.py [--files 24] [--mb-per-file 1.5]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

# Zipf-like vocabulary: a few very common words and a long tail, as in natural text.
COMMON = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
]
TOPICS = [
    "shard",
    "worker",
    "ledger",
    "checkpoint",
    "operator",
    "cluster",
    "node",
    "pod",
    "scheduler",
    "replica",
    "lease",
    "commit",
    "attempt",
    "partition",
    "record",
    "byte",
    "range",
    "input",
    "output",
    "failure",
    "restart",
    "resume",
    "backoff",
    "gpu",
    "memory",
    "cpu",
    "quota",
]


def line(rng: random.Random) -> str:
    words = []
    for _ in range(rng.randint(6, 18)):
        pick = rng.random()
        if pick < 0.55:
            words.append(rng.choice(COMMON))
        elif pick < 0.9:
            words.append(rng.choice(TOPICS))
        else:
            words.append(f"token{int(rng.paretovariate(1.2)) % 5000}")
    return " ".join(words)


def generate(directory: Path, files: int, mb_per_file: float, seed: int = 42) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(files):
        rng = random.Random(seed * 1000 + index)
        target = int(mb_per_file * 1_000_000)
        lines, size = [], 0
        while size < target:
            text = line(rng) + "\n"
            lines.append(text)
            size += len(text)
        (directory / f"corpus-{index:03d}.txt").write_text("".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--mb-per-file", type=float, default=1.5)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("data"))
    args = parser.parse_args()
    generate(args.out, args.files, args.mb_per_file)
    print(f"wrote {args.files} files to {args.out}")


if __name__ == "__main__":
    main()
