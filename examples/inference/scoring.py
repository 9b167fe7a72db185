"""Batch inference with the batch form of user code: a fraud model scores card payments.

``setup()`` runs once per worker process and loads the model; ``process_batch()`` scores up to
``spec.processor.batchSize`` payments per call, one matrix product instead of one per record. Used by
datajob.yaml:

python examples/inference/generate.py
PYTHONPATH=examples/inference datajob run examples/inference/datajob.yaml

On a GPU worker, setup() is where the model goes to the device: the job's resources.gpu makes the device
visible to the pod (CUDA_VISIBLE_DEVICES), e.g. ``self.model = torch.load(path).to("cuda").eval()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np

FEATURES = ["amount", "hour", "items", "foreign", "new_device"]


class FraudScorer:
    def setup(self, options: dict[str, str]) -> None:
        path = Path(options.get("model", "data/model.joblib"))
        if not path.is_absolute():  # relative to this file: the example's data directory
            path = Path(__file__).parent / path
        self.model = joblib.load(path)
        self.threshold = float(options.get("threshold", "0.5"))

    def process_batch(self, payments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        features = np.array([[float(p[name]) for name in FEATURES] for p in payments])
        scores = self.model.predict_proba(features)[:, 1]
        return [
            {"id": p["id"], "score": float(score), "flagged": bool(score >= self.threshold)}
            for p, score in zip(payments, scores, strict=True)
        ]
