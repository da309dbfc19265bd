"""A Triton Python-backend model that runs the ONNX graph beside it with ONNX Runtime.

Written into a model repository as `NAME/1/model.py` next to `model.onnx`; it needs only
numpy and onnxruntime in the Python that Triton's stub runs. Requests that the dynamic
batcher gathers are run as one batch and answered one by one.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        folder = os.path.join(args["model_repository"], args["model_version"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(config.get("parameters", {}).get(
            "intra_op_threads", {}).get("string_value", "0"))
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU":     # KIND_GPU: this instance's device
            device = args.get("model_instance_device_id", "0")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device}))
        self.session = ort.InferenceSession(os.path.join(folder, "model.onnx"), options,
                                            providers=providers)
        if providers[0] != "CPUExecutionProvider" and \
                self.session.get_providers()[0] != "CUDAExecutionProvider":
            raise pb_utils.TritonModelException(
                f"{args['model_name']}: a KIND_GPU instance, but ONNX Runtime cannot start "
                "CUDA here (install onnxruntime-gpu in the stub's Python)")
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        # without batching (a masked scorer: one image per request), requests run one by one
        self.batched = int(config.get("max_batch_size", 0)) > 0

    def execute(self, requests):
        if not self.batched:
            return [self._whole(request) for request in requests]
        return self._batched(requests)

    def _whole(self, request):
        """One request on its own, its outputs whole."""
        try:
            feed = {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy()
                    for n in self.inputs}
            results = self.session.run(self.outputs, feed)
        except Exception as exc:  # noqa: BLE001 - the error goes back in the response
            return pb_utils.InferenceResponse(
                output_tensors=[], error=pb_utils.TritonError(str(exc).splitlines()[0]))
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor(n, np.ascontiguousarray(r))
            for n, r in zip(self.outputs, results, strict=True)])

    def _batched(self, requests):
        """Requests gathered by the dynamic batcher, run as one batch, answered one by one."""
        feeds, sizes = [], []
        for request in requests:
            feed = {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy()
                    for n in self.inputs}
            feeds.append(feed)
            sizes.append(next(iter(feed.values())).shape[0])
        try:
            merged = {n: np.concatenate([f[n] for f in feeds]) for n in self.inputs}
            results = self.session.run(self.outputs, merged)
        except Exception as exc:  # noqa: BLE001 - answer every request with the error
            error = pb_utils.TritonError(str(exc).splitlines()[0])
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses, start = [], 0
        for size in sizes:
            tensors = [pb_utils.Tensor(n, np.ascontiguousarray(r[start:start + size]))
                       for n, r in zip(self.outputs, results, strict=True)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses
