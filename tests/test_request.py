"""One design for every surface: each explanation setting, defined once in
`scorecam_onnx.request.SETTINGS`, is reachable from the command line and from V2 request
parameters, with the same default, the same effect and the same error text. The oracle of
each side is the other: the command line run by click, the request parsed as the service
parses it."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from builders import segmentation_model
from click.testing import CliRunner
from conftest import DEFAULT_BUNDLE, SAMPLES, TINY_PREP

import scorecam_onnx.batch as batch_module
from scorecam_onnx import Bundle, write_bundle
from scorecam_onnx.cli import main
from scorecam_onnx.images import decode_mask
from scorecam_onnx.methods import METHODS, WIRE_PARAMETERS, DRise, FasterScoreCam, method_from
from scorecam_onnx.options import ExplainOptions
from scorecam_onnx.protocol import ApiError, parse_params
from scorecam_onnx.render import encode_png
from scorecam_onnx.request import (
    SETTINGS,
    ExplainRequest,
    SettingError,
    read_settings,
    request_from,
)
from scorecam_onnx.targets import Box, Boxes, Class, Region, Top1, TopK

CLASSES = 1000
LAYER = Bundle.load(DEFAULT_BUNDLE, verify=False).manifest.layer


def cli_request(
    args: list[str], monkeypatch, tmp_path: Path, bundle: Path = DEFAULT_BUNDLE
) -> ExplainRequest:
    """The request `scorecam-onnx explain` builds from `args` (its run is stopped there)."""
    seen = []

    def capture(explainer, job, *callbacks):
        seen.append(job.request)
        return [], []

    monkeypatch.setattr(batch_module, "explain_files", capture)
    result = CliRunner().invoke(
        main,
        [
            "explain",
            str(SAMPLES / "chelsea.png"),
            "--model",
            str(bundle),
            "--provider",
            "cpu",
            "--out",
            str(tmp_path / "out"),
            *args,
        ],
    )
    assert seen, result.output
    return seen[0]


def v2_request(raw: dict) -> ExplainRequest:
    return parse_params(raw, CLASSES).request()


def test_every_setting_has_a_flag_on_explain():
    command = main.commands["explain"]
    flags = {opt for p in command.params for opt in getattr(p, "opts", ())}
    assert {s.flag for s in SETTINGS} <= flags


def test_the_options_type_and_the_method_parameters_are_all_settings():
    """Adding an option is one field: the settings table is read from `ExplainOptions`."""
    from dataclasses import fields

    names = {s.name for s in SETTINGS}
    assert {f.name for f in fields(ExplainOptions)} <= names
    assert set(WIRE_PARAMETERS) <= names
    assert {"method", "preset", "target", "top_k", "region", "background"} <= names


def test_defaults_agree(monkeypatch, tmp_path):
    from_cli = cli_request([], monkeypatch, tmp_path)
    from_v2 = v2_request({})
    assert from_cli == from_v2 == ExplainRequest()
    assert from_cli.method == method_from("scorecam") and from_cli.target == Top1()


# A non-default value of each setting, as the command line and a request give it, and the
# request it must become (an independent statement of each setting's meaning).
CASES = [
    (["--method", "rise"], {"method": "rise"}, ExplainRequest(method_from("rise"))),
    (
        ["--preset", "torchcam"],
        {"preset": "torchcam"},
        ExplainRequest(method_from("scorecam", "torchcam")),
    ),
    (
        ["--method", "faster-scorecam", "--channels", "8"],
        {"method": "faster-scorecam", "channels": "8"},
        ExplainRequest(FasterScoreCam(channels=8)),
    ),
    (
        ["--method", "sscam", "--samples", "5"],
        {"method": "sscam", "samples": 5},
        ExplainRequest(method_from("sscam", samples=5)),
    ),
    (
        ["--method", "reciprocam", "--gaussian"],
        {"method": "reciprocam", "gaussian": "true"},
        ExplainRequest(method_from("reciprocam", gaussian=True)),
    ),
    (
        ["--class", "3", "--class", "281"],
        {"target": [3, 281]},
        ExplainRequest(target=Class([3, 281])),
    ),
    (["--top-k", "2"], {"top_k": "2"}, ExplainRequest(target=TopK(2))),
    (
        ["--batch-size", "4"],
        {"batch_size": 4},
        ExplainRequest(options=ExplainOptions(batch_size=4)),
    ),
    (
        ["--aug-smooth"],
        {"aug_smooth": True},
        ExplainRequest(options=ExplainOptions(aug_smooth=True)),
    ),
    (
        ["--eigen-smooth"],
        {"eigen_smooth": "1"},
        ExplainRequest(options=ExplainOptions(eigen_smooth=True)),
    ),
    (
        ["--layer", LAYER],
        {"layers": LAYER},
        ExplainRequest(options=ExplainOptions(layers=(LAYER,))),
    ),
    (["--fuse", "max"], {"fuse": "max"}, ExplainRequest(options=ExplainOptions(fuse="max"))),
    (
        ["--score-threshold", "0.5"],
        {"score_threshold": "0.5"},
        ExplainRequest(options=ExplainOptions(score_threshold=0.5)),
    ),
    (
        ["--max-detections", "3"],
        {"max_detections": 3},
        ExplainRequest(options=ExplainOptions(max_detections=3)),
    ),
    (["--frame", "2"], {"frame": "2"}, ExplainRequest(options=ExplainOptions(frame=2))),
]
# A detector's settings, given to a detector (a classifier refuses them before any image).
DETECTOR_CASES = [
    (
        ["--method", "drise", "--samples", "300"],
        {"method": "drise", "samples": "300"},
        ExplainRequest(DRise(samples=300)),
    ),
    (
        ["--method", "drise", "--box", "10,20,30,40"],
        {"method": "drise", "box": "10,20,30,40"},
        ExplainRequest(DRise(), target=Box(10, 20, 30, 40)),
    ),
    (
        ["--method", "drise", "--box", "10,20,30,40,2", "--box", "0,0,5.5,6"],
        {"method": "drise", "box": ["10,20,30,40,2", [0, 0, 5.5, 6]]},
        ExplainRequest(DRise(), target=Boxes([Box(10, 20, 30, 40, class_id=2), Box(0, 0, 5.5, 6)])),
    ),
]


def test_the_cases_cover_every_setting():
    named = {name for _, raw, _ in CASES + DETECTOR_CASES for name in raw} | {
        "region",
        "background",
    }
    assert named == {s.name for s in SETTINGS}


@pytest.mark.parametrize(
    ("flags", "raw", "expected"), DETECTOR_CASES, ids=[" ".join(c[0]) for c in DETECTOR_CASES]
)
def test_each_detector_setting_has_the_same_effect(
    flags, raw, expected, monkeypatch, tmp_path, detectors
):
    assert cli_request(flags, monkeypatch, tmp_path, detectors["yolov8"]) == expected
    assert v2_request(raw) == expected


def test_a_detector_setting_is_refused_by_a_classifier_alike(tmp_path):
    from scorecam_onnx import Explainer

    reason = "a box is for object detectors; this bundle is not one"
    result = CliRunner().invoke(
        main, ["explain", str(tmp_path / "missing.png"), "--provider", "cpu", "--box", "1,2,3,4"]
    )
    assert result.exit_code == 2 and reason in result.output
    with pytest.raises(ValueError, match=reason):
        Explainer().check(request_from(box=[Box(1, 2, 3, 4)]))


@pytest.mark.parametrize(("flags", "raw", "expected"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_each_setting_has_the_same_effect(flags, raw, expected, monkeypatch, tmp_path):
    assert cli_request(flags, monkeypatch, tmp_path) == expected
    assert v2_request(raw) == expected


@pytest.fixture
def segmentation_bundle(tmp_path: Path) -> Path:
    return write_bundle(
        segmentation_model(), tmp_path / "seg", "feat", preprocessing=TINY_PREP
    ).path


def test_a_region_reaches_the_target_from_a_file_and_from_base64(
    monkeypatch, tmp_path, segmentation_bundle
):
    mask = np.zeros((30, 40), np.uint8)
    mask[5:20, 10:30] = 255
    png = encode_png(mask)
    path = tmp_path / "region.png"
    path.write_bytes(png)
    from_cli = cli_request(
        ["--region", str(path), "--background", "1"], monkeypatch, tmp_path, segmentation_bundle
    ).target
    from_v2 = v2_request({"region": base64.b64encode(png).decode(), "background": 1}).target
    for target in (from_cli, from_v2):
        assert target == Region(None, Top1(), 1)
        np.testing.assert_array_equal(target.mask, decode_mask(png, "region"))


# Values a setting refuses, with the reason every surface gives; a served request is also
# bounded above (one request must not claim unbounded time), and then says its whole range.
BAD = [
    ("method", "gradcam", "unknown value 'gradcam'; choose one of " + ", ".join(METHODS), ""),
    (
        "preset",
        "other",
        "unknown value 'other'; choose one of paper, pytorch-grad-cam, torchcam",
        "",
    ),
    ("channels", "0", "must be at least 1, got 0", ""),
    ("samples", "0", "must be at least 1, got 0", "must be between 1 and 256, got 0"),
    ("top_k", "0", "must be at least 1, got 0", "must be between 1 and 20, got 0"),
    ("target", "-1", "must be at least 0, got -1", "must be between 0 and 999, got -1"),
    ("background", "-2", "must be at least 0, got -2", "must be between 0 and 999, got -2"),
    ("batch_size", "0", "must be at least 1, got 0", "must be between 1 and 1024, got 0"),
    ("fuse", "sum", "unknown value 'sum'; choose one of mean, max", ""),
    ("channels", "x", "expected an integer, got 'x'", ""),
    ("max_detections", "0", "must be at least 1, got 0", "must be between 1 and 20, got 0"),
    ("score_threshold", "1.5", "must be in [0, 1), got 1.5", ""),
    ("box", "1,2,3", "expected x1,y1,x2,y2[,class], got '1,2,3'", ""),
    ("box", "5,5,1,1", "a box needs x2 > x1 and y2 > y1, got (5.0, 5.0, 1.0, 1.0)", ""),
]


@pytest.mark.parametrize(
    ("name", "value", "reason", "served"), BAD, ids=[f"{n}={v}" for n, v, _, _ in BAD]
)
def test_a_bad_value_gets_the_same_error_text(name, value, reason, served):
    setting = next(s for s in SETTINGS if s.name == name)
    with pytest.raises(SettingError) as unbounded:
        read_settings({name: value})
    assert str(unbounded.value) == f"{name}: {reason}"
    with pytest.raises(ApiError) as caught:
        parse_params({name: value}, CLASSES)
    assert caught.value.status == 422
    assert caught.value.message == f"{name}: {served or reason}"
    result = CliRunner().invoke(
        main, ["explain", str(SAMPLES / "chelsea.png"), setting.flag, value]
    )
    assert result.exit_code == 2
    if reason.startswith("expected an integer"):  # click reads the number itself
        assert "is not a valid integer" in result.output
    else:
        assert f"Invalid value for '{setting.flag}': {reason}" in result.output


def test_a_bad_combination_gets_the_same_error_text(monkeypatch, tmp_path):
    reason = "gaussian applies to reciprocam only"
    with pytest.raises(ApiError, match=reason):
        parse_params({"gaussian": "true"}, CLASSES)
    result = CliRunner().invoke(main, ["explain", str(SAMPLES / "chelsea.png"), "--gaussian"])
    assert result.exit_code == 2 and reason in result.output
    with pytest.raises(ValueError, match=reason):
        request_from(gaussian=True)


def test_what_the_bundle_cannot_run_is_refused_alike(tmp_path):
    """The one check against the bundle: the same text from the command line (before any
    image) and from the service."""
    from scorecam_onnx import Explainer, Runtime
    from scorecam_onnx.protocol import ModelService, Ticket

    reason = "unknown layer nope: this bundle's layers are "
    result = CliRunner().invoke(
        main, ["explain", str(tmp_path / "missing.png"), "--provider", "cpu", "--layer", "nope"]
    )
    assert result.exit_code == 2 and reason in result.output
    service = ModelService("m", Explainer(DEFAULT_BUNDLE, Runtime(provider="cpu")))
    image = (SAMPLES / "chelsea.png").read_bytes()
    with pytest.raises(ApiError) as caught:
        service.explain([image], [parse_params({"layers": "nope"}, CLASSES)], Ticket(None))
    assert caught.value.status == 422 and reason in caught.value.message
