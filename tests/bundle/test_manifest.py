"""Manifest validation: every broken input is refused with an error naming the key."""

from __future__ import annotations

import copy
import json

import pytest
from builders import set_key

from scorecam_onnx import BundleError
from scorecam_onnx.bundle.manifest import ActivationSpec, InputSpec, LayerSpec, Manifest, OutputSpec

GOOD = Manifest(
    input=InputSpec(name="input", height=224, width=224),
    output=OutputSpec(name="logits", classes=10),
    layers=(LayerSpec("layer4", ActivationSpec(name="feat", channels=8, height=7, width=7)),),
    checksums={"model.onnx": "sha256:00"},
)


def test_round_trip():
    assert Manifest.from_dict(json.loads(GOOD.dumps())) == GOOD


def _broken(path: str, value: object) -> dict:
    return set_key(copy.deepcopy(GOOD.to_dict()), path, value)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("format", "other", "'format' is 'other'"),
        ("format_version", 99, "unsupported 'format_version' 99"),
        ("format_version", "1", "'format_version' must be int"),
        ("input", KeyError, "missing key 'input'"),
        ("input.height", KeyError, "missing key 'input.height'"),
        ("input.height", 0, "'input.height' must be positive"),
        ("input.height", True, "'input.height' must be int"),
        ("input.width", 22.5, "'input.width' must be int"),
        ("input.mean", [0.5, 0.5], "'input.mean' must be 3 numbers"),
        ("input.std", [0.5, 0.0, 0.5], "'input.std' must be 3 positive numbers"),
        ("input.layout", "CHW", "'input.layout' is 'CHW', expected one of NCHW, NHWC"),
        ("input.scale", "big", "'input.scale' must be a finite number"),
        ("input.crop_fraction", 1.5, "'input.crop_fraction' must be at most 1"),
        ("input.crop_fraction", 0, "'input.crop_fraction' must be positive"),
        ("activation.channels", -3, "'activation.channels' must be positive"),
        ("output.kind", "scores", "'output.kind' is 'scores'"),
        ("output.name", 5, "'output.name' must be str"),
        ("labels", 3, "'labels' must be str"),
        ("checksums", {"model.onnx": 1}, "'checksums.model.onnx' must be a string"),
    ],
)
def test_broken_manifest_names_the_key(path, value, message):
    with pytest.raises(BundleError) as err:
        Manifest.from_dict(_broken(path, value))
    assert message in str(err.value)


def test_crop_fraction_defaults_to_one_in_older_manifests():
    data = GOOD.to_dict()
    del data["input"]["crop_fraction"]
    assert Manifest.from_dict(data).input.crop_fraction == 1.0


def test_not_an_object():
    with pytest.raises(BundleError, match="expected a JSON object"):
        Manifest.from_dict([1, 2])


def test_invalid_json_file(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Manifest.load(path)
