"""Beyond one machine (extra ``ray``): whole datasets on Ray Data, service replicas on Ray
Serve. Nothing of Ray is imported until one of these is used.

>>> from scorecam_onnx.distributed import explain_dataset
>>> rows = explain_dataset("photos/", method="faster-scorecam", actors=4, out="maps/")
"""

from __future__ import annotations

from .dataset import ExplainSettings, explain_dataset
from .serving import deployment

__all__ = ["ExplainSettings", "deployment", "explain_dataset"]
