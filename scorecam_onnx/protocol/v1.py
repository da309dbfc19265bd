"""KServe V1 payloads: ``{"instances": [...], "parameters": {...}}`` in, predictions and
explanations out.

An instance is ``{"b64": "<base64 image file>"}``, or ``{"image": {"b64": ...}, "target": T,
"top_k": K}`` with settings of its own; ``inputs`` is accepted for ``instances``. Every
malformed part is a 400 saying what is wrong; a bad setting is a 422.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .answers import several_classes
from .errors import ApiError
from .models import ModelService, explanation_payload
from .params import ExplainParams, parse_params
from .v2 import json_object

if TYPE_CHECKING:
    from ..explainer import Explanation

__all__ = ["explanations", "instances", "json_object", "parameters", "parse_explain"]


def instances(payload: dict[str, Any]) -> tuple[list[bytes], list[dict[str, Any]]]:
    """Encoded images and per-instance settings (target, top_k) of a V1 request."""
    items = payload.get("instances", payload.get("inputs"))
    if not isinstance(items, list) or not items:
        raise ApiError(400, "'instances' must be a non-empty list")
    images, overrides = [], []
    for n, item in enumerate(items):
        if isinstance(item, dict) and "image" in item:
            image, extra = item["image"], {k: item.get(k) for k in ("target", "top_k")}
        else:
            image, extra = item, {}
        if not isinstance(image, dict) or not isinstance(image.get("b64"), str):
            raise ApiError(400, f'instance {n}: expected {{"b64": "<base64 image file>"}}')
        try:
            images.append(base64.b64decode(image["b64"], validate=True))
        except (binascii.Error, ValueError):
            raise ApiError(400, f"instance {n}: 'b64' is not valid base64") from None
        overrides.append(extra)
    return images, overrides


def parameters(value: Any, name: str = "parameters") -> dict[str, Any]:
    """A request's settings object (absent: none), or a 400 when it is not an object."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, f"'{name}' must be an object")
    return value


def parse_explain(
    payload: dict[str, Any], service: ModelService, defaults: ExplainParams
) -> tuple[list[bytes], list[ExplainParams]]:
    """The images of an explain request and each one's settings: the request's
    `parameters` over `defaults`, with the instance's own target or top_k."""
    images, overrides = instances(payload)
    base = parse_params(parameters(payload.get("parameters")), service.classes, defaults)
    params = [base.with_target(o.get("target"), o.get("top_k"), service.classes) for o in overrides]
    return images, params


def explanations(
    params: Sequence[ExplainParams], found: Sequence[Sequence[Explanation]]
) -> list[Any]:
    """Per instance, one explanation E, or a list of E where several classes were asked
    for (top_k, or a list of targets) or a detector explained its detections."""
    return [
        [explanation_payload(e, p.map_size) for e in per_image]
        if several_classes(p, bool(per_image) and per_image[0].box is not None)
        else explanation_payload(per_image[0], p.map_size)
        for p, per_image in zip(params, found, strict=True)
    ]
