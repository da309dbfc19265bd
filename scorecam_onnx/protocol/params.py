"""Explanation settings from query strings, V1 ``parameters`` or V2 request parameters.

The names and checks are those of `Explainer.explain`; bad values are 422 errors that say
which setting is wrong and what it accepts. A few bounds keep one request from claiming
unbounded memory or time.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..cam.engine import PRESETS
from ..cam.methods import METHODS
from ..errors import ImageError
from ..images import decode_mask
from .errors import ApiError

# At most this many classes per image and request (each is a full-size map in the answer).
MAX_CLASSES = 20
# At most this many noisy or scaled copies per mask (SS-CAM, IS-CAM).
MAX_SAMPLES = 256
# At most this many random masks (forwards) for RISE.
MAX_RISE_MASKS = 20000
MAX_BATCH = 1024
MAP_SIZES = ("original", "input")
MAX_MAP_SIDE = 65536


@dataclass(frozen=True)
class ExplainParams:
    """How to explain: the keyword arguments of `Explainer.explain`, checked."""

    method: str = "scorecam"
    preset: str | None = None
    target: int | list[int] | None = None
    top_k: int | None = None
    channels: int = 64
    samples: int | None = None
    batch_size: int | None = None
    gaussian: bool = False
    aug_smooth: bool = False
    eigen_smooth: bool = False
    layers: tuple[str, ...] | None = None
    fuse: str | None = None
    region: NDArray[np.bool_] | None = None
    background: int | None = None
    map_size: str | int = "original"

    def options(self) -> dict[str, Any]:
        """Keyword arguments for `Explainer.explain` (without target and top_k)."""
        return {"method": self.method, "preset": self.preset, "channels": self.channels,
                "samples": self.samples, "batch_size": self.batch_size,
                "gaussian": self.gaussian, "aug_smooth": self.aug_smooth,
                "eigen_smooth": self.eigen_smooth,
                "layers": list(self.layers) if self.layers else None, "fuse": self.fuse,
                "region": self.region, "background": self.background}

    def with_target(self, target: Any, top_k: Any, classes: int) -> ExplainParams:
        """These settings with an instance's own target or top_k, checked."""
        if target is None and top_k is None:
            return self
        merged = {"target": target, "top_k": top_k}
        return replace(self, **_targets(merged, classes))


def parse_params(raw: Mapping[str, Any], classes: int,
                 defaults: ExplainParams | None = None) -> ExplainParams:
    """Checked settings from a mapping of names to values (ints may come as strings).

    Unknown names are ignored, as inference servers do with request parameters.
    """
    base = defaults or ExplainParams()
    method = _choice(raw, "method", METHODS, base.method)
    preset = _choice(raw, "preset", tuple(PRESETS), base.preset)
    channels = _int(raw, "channels", 1, None)
    samples = _int(raw, "samples", 1, MAX_RISE_MASKS if method == "rise" else MAX_SAMPLES)
    batch_size = _int(raw, "batch_size", 1, MAX_BATCH)
    return ExplainParams(
        method=method, preset=preset,
        channels=base.channels if channels is None else channels,
        samples=base.samples if samples is None else samples,
        batch_size=base.batch_size if batch_size is None else batch_size,
        gaussian=_bool(raw, "gaussian", base.gaussian),
        aug_smooth=_bool(raw, "aug_smooth", base.aug_smooth),
        eigen_smooth=_bool(raw, "eigen_smooth", base.eigen_smooth),
        layers=_names(raw, "layers", base.layers),
        fuse=_choice(raw, "fuse", ("mean", "max"), base.fuse),
        region=_region(raw, base.region),
        background=_int(raw, "background", 0, classes - 1)
        if raw.get("background") not in (None, "") else base.background,
        map_size=_map_size(raw, base.map_size),
        **_targets(raw, classes),
    )


def _map_size(raw: Mapping[str, Any], default: str | int) -> str | int:
    """"original" (the image's size), "input" (the model's input size) or N (the longer
    side at most N pixels) for the maps in JSON answers and the overlay PNG."""
    value = raw.get("map_size")
    if value is None or value == "":
        return default
    if value in MAP_SIZES:
        return str(value)
    if isinstance(value, str) and not value.isdigit():
        raise ApiError(422, f"map_size: expected original, input or a number of pixels, "
                            f"got {value!r}")
    return _as_int("map_size", value, 1, MAX_MAP_SIDE)


def _targets(raw: Mapping[str, Any], classes: int) -> dict[str, Any]:
    top_k = _int(raw, "top_k", 1, min(classes, MAX_CLASSES))
    target = raw.get("target")
    if target is not None and top_k is not None:
        raise ApiError(422, "give either target or top_k, not both")
    if target is None or target == "" or target == []:
        return {"target": None, "top_k": top_k}
    items = target if isinstance(target, list) else (
        target.split(",") if isinstance(target, str) else [target])
    if len(items) > MAX_CLASSES:
        raise ApiError(422, f"target: at most {MAX_CLASSES} classes per request")
    ids = [_as_int("target", item, 0, classes - 1) for item in items]
    single = not isinstance(target, list) and len(ids) == 1
    return {"target": ids[0] if single else ids, "top_k": None}


def _choice(raw: Mapping[str, Any], name: str, allowed: tuple[str, ...],
            default: str | None) -> str | None:
    value = raw.get(name)
    if value is None or value == "":
        return default
    if value not in allowed:
        raise ApiError(422, f"{name}: unknown value {value!r}; choose one of "
                            f"{', '.join(allowed)}")
    return str(value)


def _region(raw: Mapping[str, Any], default: NDArray[np.bool_] | None
            ) -> NDArray[np.bool_] | None:
    """A segmentation region: a base64 PNG (or any image OpenCV reads), non-zero inside."""
    value = raw.get("region")
    if value is None or value == "":
        return default
    try:
        data = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
        return decode_mask(data, "region") if data else _no_region()
    except (ValueError, binascii.Error, ImageError) as exc:
        reason = exc.reason if isinstance(exc, ImageError) else "not valid base64"
        raise ApiError(422, f"region: {reason}") from None


def _no_region() -> NDArray[np.bool_]:
    raise ApiError(422, "region: expected a base64 PNG mask (non-zero inside the region)")


def _names(raw: Mapping[str, Any], name: str,
           default: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """A list of names, or one comma-separated string of them."""
    value = raw.get(name)
    if value is None or value == "":
        return default
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) and i.strip()
                                                      for i in items):
        raise ApiError(422, f"{name}: expected layer names (a list, or comma-separated)")
    return tuple(i.strip() for i in items)


def _bool(raw: Mapping[str, Any], name: str, default: bool) -> bool:
    value = raw.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ApiError(422, f"{name}: expected true or false, got {value!r}")


def _int(raw: Mapping[str, Any], name: str, low: int, high: int | None) -> int | None:
    value = raw.get(name)
    if value is None or value == "":
        return None
    return _as_int(name, value, low, high)


def _as_int(name: str, value: Any, low: int, high: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ApiError(422, f"{name}: expected an integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ApiError(422, f"{name}: expected an integer, got {value!r}") from None
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError(422, f"{name}: must be {bound}, got {number}")
    return number
