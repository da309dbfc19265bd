"""Explanation settings from query strings, V1 ``parameters`` or V2 request parameters.

The names, defaults and checks are the settings of `scorecam_onnx.request` (those of the
command line too); bad values are 422 errors that say which setting is wrong and what it
accepts. Served requests are also bounded, so that one request cannot claim unbounded
memory or time. The answer's map size is the one setting of the service alone.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ImageError
from ..images import decode_mask
from ..request import ExplainRequest, SettingError, read_settings, request_from
from .errors import ApiError

MAP_SIZES = ("original", "input")
MAX_MAP_SIDE = 65536


@dataclass(frozen=True)
class ExplainParams:
    """A served request's settings: the explanation settings given (by name, checked) and
    the size of the maps in the answer.

    Attributes:
        values: settings by name, as `scorecam_onnx.request.read_settings` returns them.
        map_size: "original" (the image's size), "input" (the model's input size) or N (the
            longer side at most N pixels).
    """

    values: Mapping[str, Any] = field(default_factory=dict)
    map_size: str | int = "original"

    def request(self) -> ExplainRequest:
        """The method, target and options these settings describe."""
        try:
            return request_from(self.values)
        except (ValueError, TypeError) as exc:
            raise ApiError(422, str(exc)) from None

    def with_target(self, target: Any, top_k: Any, classes: int) -> ExplainParams:
        """These settings with an instance's own target or top_k, checked."""
        if target is None and top_k is None:
            return self
        given = {"target": target, "top_k": top_k}
        rest = {k: v for k, v in self.values.items() if k not in given}
        return replace(self, values={**rest, **_read(given, classes)})

    def for_classes(self, classes: list[int]) -> ExplainParams:
        """These settings explaining exactly `classes`."""
        rest = {k: v for k, v in self.values.items() if k not in ("target", "top_k")}
        return replace(self, values={**rest, "target": classes})


def parse_params(
    raw: Mapping[str, Any], classes: int, defaults: ExplainParams | None = None
) -> ExplainParams:
    """Checked settings from a mapping of names to values (ints may come as strings), over
    the service's defaults. Unknown names are ignored, as inference servers do with request
    parameters."""
    base = defaults or ExplainParams()
    given = {k: v for k, v in raw.items() if v is not None and v != ""}
    if "region" in given:
        given["region"] = _region(given["region"])
    if "target" in given or "top_k" in given:
        base = replace(
            base, values={k: v for k, v in base.values.items() if k not in ("target", "top_k")}
        )
    values = _read({**base.values, **given}, classes)
    params = ExplainParams(values, _map_size(raw, base.map_size))
    params.request()  # the settings together (a method's parameters) checked now
    return params


def _read(raw: Mapping[str, Any], classes: int) -> dict[str, Any]:
    try:
        values = read_settings(raw, bounded=True, classes=classes)
        request_from(values)
        return values
    except SettingError as exc:
        raise ApiError(422, str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise ApiError(422, str(exc)) from None


def _map_size(raw: Mapping[str, Any], default: str | int) -> str | int:
    """ "original", "input" or N for the maps in JSON answers and the overlay PNG."""
    value = raw.get("map_size")
    if value is None or value == "":
        return default
    if value in MAP_SIZES:
        return str(value)
    if isinstance(value, str) and not value.isdigit():
        raise ApiError(
            422, f"map_size: expected original, input or a number of pixels, got {value!r}"
        )
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ApiError(422, f"map_size: expected an integer, got {value!r}")
    number = int(value)
    if not 1 <= number <= MAX_MAP_SIDE:
        raise ApiError(422, f"map_size: must be between 1 and {MAX_MAP_SIDE}, got {number}")
    return number


def _region(value: Any) -> NDArray[np.bool_]:
    """A segmentation region: a base64 PNG (or any image OpenCV reads), non-zero inside."""
    if isinstance(value, np.ndarray):
        return value
    try:
        data = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
        if not data:
            raise ApiError(422, "region: expected a base64 PNG mask (non-zero inside the region)")
        return decode_mask(data, "region")
    except (ValueError, binascii.Error, ImageError) as exc:
        reason = exc.reason if isinstance(exc, ImageError) else "not valid base64"
        raise ApiError(422, f"region: {reason}") from None
