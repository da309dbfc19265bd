"""Segmentation targets on a tiny per-pixel net (N×3×8×8 → N×3×8×8): each masked input
scored as pytorch-grad-cam's `SemanticSegmentationTarget` (the class's output summed over the
region), against the oracle fed with that sum, computed in NumPy from the net's weights."""

from __future__ import annotations

import base64
import json

import cv2
import numpy as np
import pytest
from builders import save, segmentation_forward, segmentation_model, segmentation_weights
from click.testing import CliRunner
from conftest import TINY_PREP
from oracles import correlation, grad_cam_style

from scorecam_onnx import (
    Bundle,
    Class,
    Explainer,
    ExplainOptions,
    Region,
    Rise,
    Runtime,
    ScoreCam,
    TopK,
    write_bundle,
)
from scorecam_onnx.cli import main

W = segmentation_weights()


def _region_model(c, region):
    """The oracle's 'model': class c's output summed over the region (pytorch-grad-cam's
    SemanticSegmentationTarget), as column c of an N×C array."""

    def model(batch):
        out = segmentation_forward(batch, W)[1]
        scores = np.zeros(out.shape[:2])
        scores[:, c] = (out[:, c] * region).sum(axis=(1, 2))
        return scores

    return model


def _image(seed=3):
    return np.random.default_rng(seed).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)


@pytest.fixture
def seg(tmp_path) -> Bundle:
    return write_bundle(segmentation_model(), tmp_path / "seg", "feat", preprocessing=TINY_PREP)


def test_the_manifest_says_segmentation(seg):
    o = seg.manifest.output
    assert (o.classes, o.height, o.width, o.segmentation) == (3, 8, 8, True)
    assert json.loads((seg.path / "manifest.json").read_text())["output"]["height"] == 8


def test_default_class_and_region_follow_the_argmax(seg):
    ex = Explainer(seg, Runtime(provider="cpu"))
    image = _image()
    x = ex.preprocess(image)[1]
    out = segmentation_forward(x, W)[1][0]
    winners = out.argmax(axis=0)
    c = int(np.bincount(winners.ravel(), minlength=3).argmax())
    got = ex.explain_one(image, method=ScoreCam(preset="pytorch-grad-cam"))
    assert got.class_id == c
    feat = segmentation_forward(x, W)[0][0].astype(np.float32)
    want = grad_cam_style(x, feat, _region_model(c, winners == c), c)
    assert correlation(got.saliency_input, want) >= 0.9999
    assert float(np.abs(got.saliency_input - want).max()) <= 1e-4
    probabilities = np.exp(out - out.max(axis=0)) / np.exp(out - out.max(axis=0)).sum(axis=0)
    assert got.score == pytest.approx(float(probabilities[c][winners == c].mean()), rel=1e-5)


def test_a_given_region_at_the_image_size_is_summed_over(seg):
    ex = Explainer(seg, Runtime(provider="cpu"))
    image = cv2.resize(_image(), (16, 16), interpolation=cv2.INTER_NEAREST)
    region = np.zeros((16, 16), bool)
    region[:8, 4:12] = True  # the top middle of the image
    got = ex.explain_one(image, Region(region, of=Class(1)), ScoreCam(preset="pytorch-grad-cam"))
    x = ex.preprocess(image)[1]
    at_output = np.zeros((8, 8), bool)
    at_output[:4, 2:6] = True  # the same pixels at the output's size
    feat = segmentation_forward(x, W)[0][0].astype(np.float32)
    want = grad_cam_style(x, feat, _region_model(1, at_output), 1)
    assert float(np.abs(got.saliency_input - want).max()) <= 1e-4
    same = ex.explain_one(
        image, Region(at_output, of=Class(1)), ScoreCam(preset="pytorch-grad-cam")
    )
    assert np.array_equal(same.saliency, got.saliency)
    with pytest.raises(ValueError, match="give it at the image's size 16×16 or the output's"):
        ex.explain(image, Region(np.ones((5, 5), bool), of=Class(1)))


def test_background_is_never_chosen(tmp_path):
    ex = Explainer(
        write_bundle(segmentation_model(), tmp_path / "b", "feat", preprocessing=TINY_PREP),
        Runtime(provider="cpu"),
    )
    for seed in range(50):  # an image where two classes win pixels
        image = _image(seed)
        counts = np.bincount(
            segmentation_forward(ex.preprocess(image)[1], W)[1][0].argmax(axis=0).ravel(),
            minlength=3,
        )
        if (counts > 0).sum() >= 2:
            break
    top = ex.explain(image, TopK(2))
    assert [e.class_id for e in top] == [int(c) for c in np.argsort(-counts, kind="stable")[:2]]
    first = top[0].class_id
    other = Explainer(
        write_bundle(
            segmentation_model(), tmp_path / "bg", "feat", preprocessing=TINY_PREP, background=first
        ),
        Runtime(provider="cpu"),
    )
    assert other.bundle.manifest.output.background == first
    assert other.explain_one(image).class_id == top[1].class_id
    assert ex.explain_one(image, Region(background=first)).class_id == top[1].class_id


def test_classifier_only_methods_are_refused(seg):
    ex = Explainer(seg, Runtime(provider="cpu"))
    for options, message in (
        ({"method": "reciprocam"}, "reciprocam is for classifiers"),
        ({"options": ExplainOptions(aug_smooth=True)}, "aug_smooth is for classifiers"),
    ):
        with pytest.raises(ValueError, match=message):
            ex.explain(_image(), **options)
    rise = ex.explain_one(_image(), method=Rise(samples=16))
    assert rise.forwards == 17


def test_cli_split_and_explain_with_a_region_png(tmp_path):
    onnx_path = save(segmentation_model(), tmp_path / "seg.onnx")
    out = tmp_path / "bundle"
    run = CliRunner().invoke(
        main,
        [
            "split",
            str(onnx_path),
            "--layer",
            "feat",
            "--mean",
            "0.5,0.5,0.5",
            "--std",
            "0.25,0.25,0.25",
            "--background",
            "0",
            "--out",
            str(out),
        ],
    )
    assert run.exit_code == 0, run.output
    assert Bundle.load(out).manifest.output.background == 0
    image = _image()
    cv2.imwrite(str(tmp_path / "img.png"), image[:, :, ::-1])
    region = np.zeros((8, 8), np.uint8)
    region[2:6, 2:6] = 255
    cv2.imwrite(str(tmp_path / "region.png"), region)
    explained = CliRunner().invoke(
        main,
        [
            "explain",
            str(tmp_path / "img.png"),
            "--model",
            str(out),
            "--class",
            "2",
            "--region",
            str(tmp_path / "region.png"),
            "--out",
            str(tmp_path / "o"),
            "-q",
        ],
    )
    assert explained.exit_code == 0, explained.output
    want = Explainer(out, Runtime(provider="cpu")).explain_one(
        image, Region(region > 0, of=Class(2))
    )
    assert np.load(tmp_path / "o" / "img.c2.npy").tobytes() == want.saliency.tobytes()
    refused = CliRunner().invoke(
        main,
        [
            "split",
            str(save(segmentation_model(), tmp_path / "s2.onnx")),
            "--layer",
            "feat",
            "--background",
            "7",
            "--out",
            str(tmp_path / "b7"),
        ],
    )
    assert refused.exit_code == 1 and "background class 7 is not below 3" in refused.output


def test_region_as_a_base64_png_in_the_service_parameters(seg):
    from scorecam_onnx.protocol.params import parse_params

    region = np.zeros((8, 8), np.uint8)
    region[:4] = 1
    _, png = cv2.imencode(".png", region)
    params = parse_params({"target": "1", "region": base64.b64encode(png.tobytes()).decode()}, 3)
    assert np.array_equal(params.values.get("region"), region > 0)
    ex = Explainer(seg, Runtime(provider="cpu"))
    got = ex.run(_image(), params.request())[0]
    want = ex.explain_one(_image(), Region(region > 0, of=Class(1)))
    assert np.array_equal(got.saliency, want.saliency)


def test_triton_repository_of_a_segmentation_bundle(seg, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from scorecam_onnx.triton import write_explainer

    written = write_explainer(seg, tmp_path / "repo", "seg", backend="python")
    assert sorted(p.name for p in written) == ["seg", "seg-explain"]
    config = text_format.Parse(
        (tmp_path / "repo" / "seg" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    assert [list(o.dims) for o in config.output] == [[3, 8, 8]]


def test_mask_files_read_their_alpha_and_any_bit_depth():
    from scorecam_onnx.images import decode_mask

    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[1:3, 1:3] = (255, 255, 255, 255)  # white inside, transparent outside
    assert np.array_equal(
        decode_mask(cv2.imencode(".png", rgba)[1].tobytes(), "m"), rgba[..., 3] > 0
    )
    labels = np.zeros((6, 6), np.uint16)
    labels[4:, :2] = 1  # a 16-bit label image, value 1
    assert np.array_equal(decode_mask(cv2.imencode(".png", labels)[1].tobytes(), "m"), labels > 0)


def test_v2_outputs_of_a_segmentation_model_follow_the_pixel_counts(seg):
    from scorecam_onnx.protocol.models import ModelService
    from scorecam_onnx.protocol.params import ExplainParams
    from scorecam_onnx.protocol.ticket import Ticket

    ex = Explainer(seg, Runtime(provider="cpu"))
    image = _image()
    png = cv2.imencode(".png", image[:, :, ::-1])[1].tobytes()
    service = ModelService("seg", ex)
    got = service.infer(
        [png],
        ExplainParams({"preset": "pytorch-grad-cam", "top_k": 2}),
        ["class_id", "score", "saliency"],
        Ticket(None),
    )
    want = ex.explain(image, TopK(2), ScoreCam(preset="pytorch-grad-cam"))
    assert got["class_id"].tolist() == [[e.class_id for e in want]]
    np.testing.assert_allclose(got["score"][0], [e.score for e in want], rtol=1e-6)
    np.testing.assert_allclose(got["saliency"][0], [e.saliency_input for e in want], atol=1e-6)
    assert service.metadata()["outputs"][0]["shape"][0] == -1
