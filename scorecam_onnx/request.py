"""One explanation request — a method, a target and options — and the settings every surface
parses into it.

`SETTINGS` names each setting once: its request parameter, its command-line flag, its help,
its default and its checks. The command line builds its flags from it, the service, Triton
and Ray read request parameters with it, and `request_from` turns the values into the
method, target and options objects. A value outside what a setting accepts is a
`SettingError` whose text is the same on every surface.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from .cam.engine import PRESETS
from .methods import METHODS, WIRE_PARAMETERS, Method, as_method, method_from
from .options import MAX_BATCH, MAX_DETECTIONS, ExplainOptions
from .targets import Box, Boxes, Class, Region, Target, Top1, TopK, as_target

__all__ = [
    "MAX_BATCH",
    "SETTINGS",
    "ExplainRequest",
    "Setting",
    "SettingError",
    "read_settings",
    "request_from",
]

# Bounds a served request may not exceed (one request must not claim unbounded memory or
# time); the command line and Python take any value the setting accepts.
MAX_CLASSES = 20  # classes per image and request (each is a full-size map)
MAX_SAMPLES = 256  # noisy or scaled copies per mask (SS-CAM, IS-CAM)
MAX_RISE_MASKS = 20000  # random masks (forwards) of RISE


class SettingError(ValueError):
    """A setting's value that it does not accept: ``name: reason``."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True)
class ExplainRequest:
    """What to explain and how: the method (with its settings), the target, the options."""

    method: Method = field(default_factory=lambda: as_method("scorecam"))
    target: Target = field(default_factory=Top1)
    options: ExplainOptions = field(default_factory=ExplainOptions)


@dataclass(frozen=True)
class Setting:
    """One setting as every surface names it.

    Attributes:
        name: the request parameter (and the keyword of `request_from`).
        flag: the command-line flag.
        kind: "int", "bool", "choice", "names" (layer names), "ids" (class ids) or "mask"
            (a segmentation region: a file on the command line, a base64 image in requests).
        help: the flag's help.
        default: the value when it is not given (None: the method's, bundle's or explainer's).
        low: the least integer accepted; choices: the values accepted.
        ceiling: for served requests, the largest integer accepted (a function of the
            other values, or None).
        repeat: on the command line, given once per value.
    """

    name: str
    flag: str
    kind: str
    help: str
    default: Any = None
    low: int | None = None
    choices: tuple[str, ...] = ()
    ceiling: Callable[[Mapping[str, Any]], int | None] | None = None
    repeat: bool = False

    def parse(self, value: Any, high: int | None = None) -> Any:
        """The value in its Python form, checked on its own (strings as requests send
        them are taken too), integers also against `high`; None or "" means not given."""
        if value is None or (isinstance(value, str | list | tuple) and not value):
            return None
        return _PARSERS[self.kind](self, value, high)


def _int(setting: Setting, value: Any, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SettingError(setting.name, f"expected an integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise SettingError(setting.name, f"expected an integer, got {value!r}") from None
    return _bounded(setting.name, number, setting.low, high)


def _bounded(name: str, number: int, low: int | None, high: int | None) -> int:
    if (low is not None and number < low) or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise SettingError(name, f"must be {bound}, got {number}")
    return number


def _bool(setting: Setting, value: Any, high: int | None = None) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise SettingError(setting.name, f"expected true or false, got {value!r}")


def _choice(setting: Setting, value: Any, high: int | None = None) -> str:
    if value not in setting.choices:
        raise SettingError(
            setting.name, f"unknown value {value!r}; choose one of {', '.join(setting.choices)}"
        )
    return str(value)


def _names(setting: Setting, value: Any, high: int | None = None) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(
        isinstance(i, str) and i.strip() for i in items
    ):
        raise SettingError(setting.name, "expected layer names (a list, or comma-separated)")
    return tuple(i.strip() for i in items)


def _ids(setting: Setting, value: Any, high: int | None = None) -> int | list[int]:
    items = (
        value
        if isinstance(value, list | tuple)
        else (value.split(",") if isinstance(value, str) else [value])
    )
    if high is not None and len(items) > MAX_CLASSES:
        raise SettingError(setting.name, f"at most {MAX_CLASSES} classes per request")
    ids = [_int(setting, item, high) for item in items]
    return ids[0] if not isinstance(value, list | tuple) and len(ids) == 1 else ids


def _mask(setting: Setting, value: Any, high: int | None = None) -> Any:
    return value  # decoded by the surface (a file, a base64 image): an H×W array


def _fraction(setting: Setting, value: Any, high: int | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SettingError(setting.name, f"expected a number in [0, 1), got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise SettingError(setting.name, f"expected a number in [0, 1), got {value!r}") from None
    if not 0.0 <= number < 1.0:
        raise SettingError(setting.name, f"must be in [0, 1), got {number:g}")
    return number


def _boxes(setting: Setting, value: Any, high: int | None = None) -> list[Box]:
    """Boxes as "x1,y1,x2,y2[,class]" texts or lists of 4 or 5 numbers (one or several)."""
    items = (
        [value]
        if isinstance(value, str)
        or (
            isinstance(value, list | tuple)
            and value
            and not isinstance(value[0], list | tuple | str)
        )
        else value
    )
    if not isinstance(items, list | tuple) or not items:
        raise SettingError(setting.name, "expected boxes as x1,y1,x2,y2[,class]")
    if high is not None and len(items) > MAX_DETECTIONS:
        raise SettingError(setting.name, f"at most {MAX_DETECTIONS} boxes per request")
    return [_box(setting, item) for item in items]


def _box(setting: Setting, item: Any) -> Box:
    parts = item.split(",") if isinstance(item, str) else item
    try:
        numbers = [float(p) for p in parts] if isinstance(parts, list | tuple) else []
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) not in (4, 5) or (len(numbers) == 5 and not numbers[4].is_integer()):
        raise SettingError(setting.name, f"expected x1,y1,x2,y2[,class], got {item!r}")
    try:
        x1, y1, x2, y2 = numbers[:4]
        return Box(x1, y1, x2, y2, class_id=int(numbers[4]) if len(numbers) == 5 else None)
    except ValueError as exc:
        raise SettingError(setting.name, str(exc)) from None


_PARSERS: dict[str, Callable[[Setting, Any, int | None], Any]] = {
    "int": _int,
    "bool": _bool,
    "choice": _choice,
    "names": _names,
    "ids": _ids,
    "mask": _mask,
    "fraction": _fraction,
    "boxes": _boxes,
}


def _samples_ceiling(values: Mapping[str, Any]) -> int:
    return MAX_RISE_MASKS if values.get("method") in ("rise", "drise") else MAX_SAMPLES


def _option_settings() -> list[Setting]:
    """The settings of `ExplainOptions`, from its fields' metadata."""
    return [Setting(name=f.name, **f.metadata["setting"]) for f in fields(ExplainOptions)]


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "method",
        "--method",
        "choice",
        "The explanation method.",
        "scorecam",
        choices=tuple(METHODS),
    ),
    Setting(
        "preset",
        "--preset",
        "choice",
        "Score-CAM convention. Default: the method's own (paper for scorecam).",
        choices=tuple(PRESETS),
    ),
    Setting(
        "channels",
        "--channels",
        "int",
        "Channels kept by faster-scorecam; clusters of cluster-scorecam. Default: 64.",
        low=1,
    ),
    Setting(
        "samples",
        "--samples",
        "int",
        "Copies per mask for sscam (default 35) and iscam (default 10); random masks "
        "for rise (default 4000) and drise (default 2000).",
        low=1,
        ceiling=_samples_ceiling,
    ),
    Setting(
        "gaussian",
        "--gaussian",
        "bool",
        "reciprocam: spread each position over its 3×3 neighbourhood.",
        False,
    ),
    Setting(
        "target",
        "--class",
        "ids",
        "Class id to explain (repeatable). Default: the top-1 class.",
        low=0,
        repeat=True,
    ),
    Setting(
        "top_k",
        "--top-k",
        "int",
        "Explain the k most likely classes.",
        low=1,
        ceiling=lambda values: MAX_CLASSES,
    ),
    Setting(
        "region",
        "--region",
        "mask",
        "A segmentation model: explain the class over this mask image's non-zero "
        "pixels (the image's or the output's size). Default: its argmax pixels.",
    ),
    Setting(
        "box",
        "--box",
        "boxes",
        "A detector: explain this box, x1,y1,x2,y2[,class] in the image's pixels "
        "(repeatable). Default: the detections found.",
        repeat=True,
    ),
    Setting(
        "background",
        "--background",
        "int",
        "A segmentation model: a class never chosen when no class is given. Default: "
        "the manifest's.",
        low=0,
    ),
    *_option_settings(),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def read_settings(
    raw: Mapping[str, Any], bounded: bool = False, classes: int | None = None
) -> dict[str, Any]:
    """The settings given in `raw` (request parameters, or the command line's values),
    parsed and checked, by name; names that are not settings are ignored, as inference
    servers do with request parameters. `bounded`: also the limits of served requests, and
    class ids below `classes`."""
    values: dict[str, Any] = {}
    for setting in SETTINGS:  # the method first: a ceiling may depend on it
        high = _ceiling(setting, values, classes) if bounded else None
        value = setting.parse(raw.get(setting.name), high)
        if value is not None:
            values[setting.name] = value
    return values


def _ceiling(setting: Setting, values: Mapping[str, Any], classes: int | None) -> int | None:
    """The largest value a served request may give `setting`."""
    high = setting.ceiling(values) if setting.ceiling is not None else None
    if setting.name in ("target", "background", "top_k") and classes is not None:
        bound = classes if setting.name == "top_k" else classes - 1
        high = bound if high is None else min(high, bound)
    if setting.name == "target" and classes is None:
        high = None
    return high


def request_from(values: Mapping[str, Any] | None = None, **given: Any) -> ExplainRequest:
    """The request that checked settings describe (`read_settings`'s values, and keyword
    overrides); what is not given takes its default."""
    v = {**(values or {}), **{k: x for k, x in given.items() if x is not None}}
    unknown = set(v) - set(BY_NAME)
    if unknown:
        raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
    method = method_from(
        v.get("method", "scorecam"),
        v.get("preset"),
        channels=v.get("channels"),
        samples=v.get("samples"),
        gaussian=v.get("gaussian"),
    )
    options = ExplainOptions(
        **{f.name: v[f.name] for f in fields(ExplainOptions) if v.get(f.name) is not None}
    )
    return ExplainRequest(method, target_from(v), options)


def target_from(values: Mapping[str, Any]) -> Target:
    """The target of `target` (class ids), `top_k`, `box`, `region` and `background`."""
    ids, top_k, boxes = values.get("target"), values.get("top_k"), values.get("box")
    if ids is not None and top_k is not None:
        raise SettingError("target", "give either target or top_k, not both")
    if boxes is not None:
        if ids is not None or top_k is not None:
            raise SettingError("box", "give either boxes or target/top_k, not both")
        return boxes[0] if len(boxes) == 1 else Boxes(boxes)
    chosen = Class(ids) if ids is not None else TopK(top_k) if top_k is not None else Top1()
    region, background = values.get("region"), values.get("background")
    if region is None and background is None:
        return chosen
    return Region(region, chosen, background)


def _box_text(box: Box) -> str:
    corners = ",".join(f"{v:g}" for v in box.corners)
    return corners if box.class_id is None else f"{corners},{box.class_id}"


def as_request(
    method: Method | str | None = None,
    target: Target | int | Sequence[int] | None = None,
    options: ExplainOptions | None = None,
) -> ExplainRequest:
    """A request from Python's forms of its parts."""
    return ExplainRequest(
        as_method(method or "scorecam"), as_target(target), options or ExplainOptions()
    )


def values_of(request: ExplainRequest) -> dict[str, Any]:
    """The settings that describe `request`, by name (the inverse of `request_from`, for
    surfaces that pass settings on as plain values: Ray actors, Triton parameters)."""
    m, t, o = request.method, request.target, request.options
    values: dict[str, Any] = {"method": m.name, "preset": m.preset}
    for parameter, owners in WIRE_PARAMETERS.items():
        if m.name in owners:
            values[parameter] = getattr(m, owners[m.name])
    chosen = t.of if isinstance(t, Region) else t
    if isinstance(t, Region):
        values.update(region=t.mask, background=t.background)
    if isinstance(t, Box | Boxes):
        values["box"] = [_box_text(b) for b in (t.items if isinstance(t, Boxes) else (t,))]
    if isinstance(chosen, Class):
        values["target"] = list(chosen.ids)
    elif isinstance(chosen, TopK):
        values["top_k"] = chosen.k
    values.update({f.name: getattr(o, f.name) for f in fields(ExplainOptions)})
    return {k: v for k, v in values.items() if v is not None}
