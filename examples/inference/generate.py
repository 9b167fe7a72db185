"""Writes the inference example's input and model: synthetic card payments as JSON Lines, and a fraud
model trained on a separate labelled sample (scikit-learn, a few seconds; nothing downloaded).

python examples/inference/generate.py [--records-per-file 20000] [--files 4]
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

import joblib
from scoring import FEATURES
from sklearn.linear_model import LogisticRegression

COUNTRIES = ["de", "fr", "us", "br", "in", "jp"]


def payment(rng: random.Random, number: int) -> dict[str, object]:
    return {
        "id": number,
        "amount": round(rng.lognormvariate(3.5, 1.2), 2),
        "hour": rng.randint(0, 23),
        "items": rng.randint(1, 12),
        "foreign": int(rng.random() < 0.2),
        "new_device": int(rng.random() < 0.1),
        "country": rng.choice(COUNTRIES),
    }


def is_fraud(rng: random.Random, p: dict[str, object]) -> int:
    """The hidden rule the model learns: large, foreign, night-time payments from new devices."""
    amount, hour = float(p["amount"]), int(p["hour"])  # type: ignore[arg-type]
    night = 1 if hour < 6 else 0
    score = 0.8 * math.log1p(amount) + 1.5 * int(p["foreign"]) + 2.0 * int(p["new_device"]) + night - 6.5  # type: ignore[call-overload]
    return int(rng.random() < 1 / (1 + math.exp(-score)))


def train(rng: random.Random, samples: int) -> LogisticRegression:
    rows = [payment(rng, -1) for _ in range(samples)]
    features = [[float(row[name]) for name in FEATURES] for row in rows]  # type: ignore[arg-type]
    labels = [is_fraud(rng, row) for row in rows]
    return LogisticRegression(max_iter=500).fit(features, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--records-per-file", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    args = parser.parse_args()
    rng = random.Random(7)
    args.out.mkdir(parents=True, exist_ok=True)
    joblib.dump(train(rng, 20000), args.out / "model.joblib")
    number = 0
    for index in range(args.files):
        with (args.out / f"payments-{index:02d}.jsonl").open("w") as handle:
            for _ in range(args.records_per_file):
                handle.write(json.dumps(payment(rng, number)) + "\n")
                number += 1
    print(f"wrote {number} payments and the model to {args.out}")


if __name__ == "__main__":
    main()
