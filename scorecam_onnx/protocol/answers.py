"""What a request's settings mean for the shape of its answer: one explanation or a list of
them, and the method whose maps are counted."""

from __future__ import annotations

from .params import ExplainParams


def several_classes(params: ExplainParams, detector: bool = False) -> bool:
    """Whether the answer is a list of explanations: several classes were asked for, with
    top_k or a list of targets (a single target, or none, gets one explanation); for a
    detector, unless one box was given (its detections are several)."""
    if detector:
        boxes = params.values.get("box")
        return boxes is None or len(boxes) > 1
    return params.values.get("top_k") is not None or isinstance(params.values.get("target"), list)


def method_name(params: ExplainParams) -> str:
    """The name of the method the settings choose."""
    return params.request().method.name
