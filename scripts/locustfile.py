"""Locust users for scripts/load_bench.py: one request kind per run, chosen by SCENARIO.

predict: KServe V1 `:predict` (one forward). explain: `/explain` with faster-scorecam.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from locust import HttpUser, task

IMAGE = Path(
    os.environ.get("LOAD_IMAGE", Path(__file__).parent.parent / "samples" / "chelsea.png")
).read_bytes()
MODEL = os.environ.get("LOAD_MODEL", "efficientnet-lite0")
SCENARIO = os.environ.get("SCENARIO", "predict")
PREDICT = {"instances": [{"b64": base64.b64encode(IMAGE).decode()}]}


class Client(HttpUser):
    """Sends requests back to back (no think time): the closed-loop load of N clients."""

    @task
    def request(self) -> None:
        if SCENARIO == "predict":
            self.client.post(f"/v1/models/{MODEL}:predict", json=PREDICT, name="predict")
        else:
            self.client.post(
                "/explain",
                params={"model": MODEL, "method": "faster-scorecam"},
                data=IMAGE,
                name="explain faster-scorecam",
            )
