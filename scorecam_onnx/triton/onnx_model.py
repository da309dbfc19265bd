"""A Triton Python-backend model that runs the ONNX graph beside it with ONNX Runtime.

Written into a model repository as `NAME/1/model.py` next to `model.onnx`; it needs only
numpy and onnxruntime in the Python that Triton's stub runs. Requests that the dynamic
batcher gathers are run as one batch and answered one by one.

The session is built as the library builds its own in process (`runners.ort.session_options`):
full graph optimisation, quiet logs, and intra-op threads that sleep when they have no work
instead of spinning (spinning threads hold a core that the explainer, Triton itself or any
other process on the machine then waits for). On a CPU instance a request's items go through
ONNX Runtime `run_batch` at a time (8, the batch the library runs in process on the CPU): a
masked scorer's request carries 256 maps, and one run of 256 was up to a third slower per map
than runs of 8 whenever other work shared the cores. Parameters of the model's
`config.pbtxt` change these: ``intra_op_threads`` (default 0: one per physical core),
``allow_spinning`` ("1": ONNX Runtime's own default), ``run_batch`` (items per run; 0: the
whole request, the default on a GPU instance).
"""

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

CPU_RUN_BATCH = 8


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        folder = os.path.join(args["model_repository"], args["model_version"])
        parameters = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = max(0, int(parameters.get("intra_op_threads") or 0))
        options.log_severity_level = 3
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", parameters.get("allow_spinning") or "0"
        )
        providers: list[str | tuple[str, dict[str, Any]]] = ["CPUExecutionProvider"]
        gpu = args.get("model_instance_kind") == "GPU"
        if gpu:  # KIND_GPU: this instance's device
            device = args.get("model_instance_device_id", "0")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device}))
        self.session = ort.InferenceSession(
            os.path.join(folder, "model.onnx"), options, providers=providers
        )
        if (
            providers[0] != "CPUExecutionProvider"
            and self.session.get_providers()[0] != "CUDAExecutionProvider"
        ):
            raise pb_utils.TritonModelException(
                f"{args['model_name']}: a KIND_GPU instance, but ONNX Runtime cannot start "
                "CUDA here (install onnxruntime-gpu in the stub's Python)"
            )
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        # without batching (a masked scorer: one image per request), requests run one by one
        self.batched = int(config.get("max_batch_size", 0)) > 0
        # the inputs split across runs: all of a batching model's; else those whose first
        # dimension is variable (a masked scorer's maps; its one image goes to every run)
        self.split = (
            set(self.inputs)
            if self.batched
            else {i["name"] for i in config["input"] if i.get("dims") and int(i["dims"][0]) < 0}
        )
        run_batch = parameters.get("run_batch", "")
        self.run_batch = max(0, int(run_batch)) if run_batch else (0 if gpu else CPU_RUN_BATCH)

    def execute(self, requests):
        if not self.batched:
            return [self._whole(request) for request in requests]
        return self._batched(requests)

    def _run(self, feed):
        """The outputs for `feed`, its split inputs `run_batch` items at a time."""
        total = max((feed[n].shape[0] for n in self.split), default=0)
        if not self.run_batch or total <= self.run_batch:
            return self.session.run(self.outputs, feed)
        parts = [
            self.session.run(
                self.outputs,
                {
                    n: a[start : start + self.run_batch] if n in self.split else a
                    for n, a in feed.items()
                },
            )
            for start in range(0, total, self.run_batch)
        ]
        return [np.concatenate([p[j] for p in parts]) for j in range(len(self.outputs))]

    def _whole(self, request):
        """One request on its own, its outputs whole."""
        try:
            feed = {
                n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs
            }
            results = self._run(feed)
        except Exception as exc:  # noqa: BLE001 - the error goes back in the response
            return pb_utils.InferenceResponse(
                output_tensors=[], error=pb_utils.TritonError(str(exc).splitlines()[0])
            )
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor(n, np.ascontiguousarray(r))
                for n, r in zip(self.outputs, results, strict=True)
            ]
        )

    def _batched(self, requests):
        """Requests gathered by the dynamic batcher, run as one batch, answered one by one."""
        feeds, sizes = [], []
        for request in requests:
            feed = {
                n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs
            }
            feeds.append(feed)
            sizes.append(next(iter(feed.values())).shape[0])
        try:
            merged = {n: np.concatenate([f[n] for f in feeds]) for n in self.inputs}
            results = self._run(merged)
        except Exception as exc:  # noqa: BLE001 - answer every request with the error
            error = pb_utils.TritonError(str(exc).splitlines()[0])
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses, start = [], 0
        for size in sizes:
            tensors = [
                pb_utils.Tensor(n, np.ascontiguousarray(r[start : start + size]))
                for n, r in zip(self.outputs, results, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses
