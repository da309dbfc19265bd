"""A Triton Python-backend model that explains images with a bundle: written into a model
repository as `NAME-explain/1/model.py`, beside the bundle folder it reads. It only adapts
`scorecam_onnx.triton.explain_adapter`, which the Python of Triton's stub must import
(`pip install "scorecam-onnx[cpu,triton]"`, or a packed environment named by the config's
EXECUTION_ENV_PATH)."""

import triton_python_backend_utils as pb_utils

from scorecam_onnx.triton.explain_adapter import ExplainAdapter


class TritonPythonModel:
    def initialize(self, args):
        try:
            self.adapter = ExplainAdapter(args, pb_utils)
        except Exception as exc:  # noqa: BLE001 - one line in Triton's log, model not ready
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise pb_utils.TritonModelException(f"{args['model_name']}: {reason}") from None

    def execute(self, requests):
        return self.adapter.execute(requests)

    def finalize(self):
        self.adapter.finalize()
