"""Beyond one machine (extra ``ray``): whole datasets explained on Ray Data. Nothing of Ray
is imported until it is used. (Service replicas on Ray Serve: `scorecam_onnx.serve.on_ray`.)

>>> from scorecam_onnx.distributed import RayPool, explain_dataset
>>> from scorecam_onnx.request import request_from
>>> rows = explain_dataset("photos/", request=request_from(method="faster-scorecam"),
...                        pool=RayPool(actors=4), out="maps/")
"""

from __future__ import annotations

from .dataset import RayPool, explain_dataset

__all__ = ["RayPool", "explain_dataset"]
