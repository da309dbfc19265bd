"""Model-only bundles: a plain .onnx classifier opened in place or written by `split
--no-layer`; RISE on them equals its definition, the layer methods refuse them in one line."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from builders import save, tiny_model
from click.testing import CliRunner
from conftest import TINY_PREP
from oracles import rise

from scorecam_onnx import (
    Bundle,
    BundleError,
    Explainer,
    ExplainOptions,
    Preprocessing,
    Rise,
    Runtime,
)
from scorecam_onnx.bundle import open_model, write_model_bundle
from scorecam_onnx.bundle.manifest import FORMAT_VERSION, Manifest
from scorecam_onnx.cli import main
from scorecam_onnx.triton import write_explainer

IMAGE = np.random.default_rng(3).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)


def test_a_plain_model_assumes_imagenet_preprocessing_and_says_so(tiny_onnx):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bundle = open_model(tiny_onnx)
    (line,) = [str(w.message) for w in caught]
    assert "assumed mean 0.485,0.456,0.406, std 0.229,0.224,0.225, resize stretch" in line
    assert "input size" not in line  # the graph fixes 8×8
    m = bundle.manifest
    assert m.model_only and m.features is None and m.layer is None and bundle.plain
    assert (m.input.height, m.input.width, m.input.layout) == (8, 8, "NCHW")
    assert (m.output.name, m.output.classes, m.output.kind) == ("logits", 4, "logits")
    assert bundle.model_path == tiny_onnx
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        open_model(tiny_onnx, TINY_PREP)
    assert not caught


def test_rise_on_a_plain_model_equals_its_definition_and_the_full_bundle(tiny_onnx, tiny_bundle):
    plain = Explainer(open_model(tiny_onnx, TINY_PREP), Runtime(provider="cpu"))
    got = plain.explain_one(IMAGE, method=Rise(samples=50), options=ExplainOptions(batch_size=6))
    assert got.forwards == 51
    want = rise(plain, IMAGE, got.class_id, 50, 7, 0.5, 0)
    assert float(np.abs(got.saliency_input - want).max()) <= 1e-5
    full = Explainer(tiny_bundle, Runtime(provider="cpu")).explain_one(
        IMAGE, got.class_id, method=Rise(samples=50)
    )
    assert float(np.abs(got.saliency - full.saliency).max()) <= 1e-6


@pytest.mark.parametrize("method", ["scorecam", "faster-scorecam", "eigencam", "reciprocam"])
def test_layer_methods_refuse_a_model_only_bundle_in_one_line(tiny_onnx, method):
    plain = Explainer(open_model(tiny_onnx, TINY_PREP), Runtime(provider="cpu"))
    with pytest.raises(BundleError) as caught:
        plain.explain(IMAGE, method=method)
    text = str(caught.value)
    assert "\n" not in text and f"{method} needs a target layer" in text
    assert "split MODEL.onnx --layer TENSOR" in text


def test_a_fixed_batch_axis_is_refused_and_split_frees_it(tmp_path):
    path = save(tiny_model(batch=1), tmp_path / "one.onnx")
    with pytest.raises(BundleError, match="batch axis is fixed at 1.*--no-layer"):
        open_model(path, TINY_PREP)
    bundle = write_model_bundle(tiny_model(batch=1), tmp_path / "freed", preprocessing=TINY_PREP)
    ex = Explainer(bundle.path, Runtime(provider="cpu"))
    got = ex.explain_one(IMAGE, method=Rise(samples=20), options=ExplainOptions(batch_size=7))
    want = rise(ex, IMAGE, got.class_id, 20, 7, 0.5, 0)
    assert float(np.abs(got.saliency_input - want).max()) <= 1e-5


def test_split_no_layer_keeps_the_preprocessing_in_a_format_3_manifest(tmp_path, tiny_onnx):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\nd\n")
    out = tmp_path / "mo"
    run = CliRunner().invoke(
        main,
        [
            "split",
            str(tiny_onnx),
            "--no-layer",
            "--mean",
            "0.5,0.5,0.5",
            "--std",
            "0.25,0.25,0.25",
            "--labels",
            str(labels),
            "--out",
            str(out),
        ],
    )
    assert run.exit_code == 0, run.output
    assert "no layer" in run.output and "assumed resize stretch" in run.output
    data = json.loads((out / "manifest.json").read_text())
    assert data["format_version"] == FORMAT_VERSION
    assert data["activation"] is None and data["features"] is None and data["layer"] is None
    assert sorted(data["checksums"]) == ["model.onnx"] and not (out / "features.onnx").exists()
    bundle = Bundle.load(out)
    assert bundle.manifest.input.mean == (0.5, 0.5, 0.5) and bundle.label(2) == "c"
    info = CliRunner().invoke(main, ["info", str(out)])
    assert "layer    none (a model-only bundle" in info.output
    (out / "model.onnx").write_bytes((out / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(BundleError, match="does not match its checksum"):
        Bundle.load(out)


def test_model_only_manifests_are_checked(tiny_bundle):
    data = json.loads((tiny_bundle.path / "manifest.json").read_text())
    data["format_version"] = 3
    data["activation"] = None
    with pytest.raises(BundleError, match="'features' must be null when 'activation' is null"):
        Manifest.from_dict(data)
    data["format_version"] = 2
    with pytest.raises(BundleError, match="'activation' must be dict"):
        Manifest.from_dict(data)


def test_cli_explains_a_plain_model_with_rise_and_refuses_scorecam_before_any_image(
    tmp_path, tiny_onnx
):
    image = tmp_path / "img.png"
    import cv2

    cv2.imwrite(str(image), IMAGE[:, :, ::-1])
    args = [
        "explain",
        str(image),
        "--model",
        str(tiny_onnx),
        "-q",
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25,0.25,0.25",
    ]
    run = CliRunner().invoke(
        main, [*args, "--method", "rise", "--samples", "30", "--out", str(tmp_path / "o")]
    )
    assert run.exit_code == 0, run.output
    assert "note:" in run.output and "assumed resize stretch" in run.output
    saved = np.load(tmp_path / "o" / "img.npy")
    want = Explainer(open_model(tiny_onnx, TINY_PREP), Runtime(provider="cpu")).explain_one(
        image, method=Rise(samples=30)
    )
    assert saved.tobytes() == want.saliency.tobytes()
    refused = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "s")])
    assert refused.exit_code == 1
    assert "scorecam needs a target layer" in refused.output
    assert not (tmp_path / "s").exists() or not list((tmp_path / "s").iterdir())
    wrong = CliRunner().invoke(main, [*args[:-4], "--input-size", "16", "--method", "rise"])
    assert wrong.exit_code == 1 and "differs from the graph's 8x8" in wrong.output


def test_preprocessing_flags_are_for_plain_models_only(tiny_bundle, tmp_path):
    run = CliRunner().invoke(
        main, ["explain", "x.png", "--model", str(tiny_bundle.path), "--mean", "0.5,0.5,0.5"]
    )
    assert run.exit_code == 2 and "--mean: only for a plain .onnx model" in run.output


def test_triton_repository_of_a_model_only_bundle_has_no_masked_scorers(tmp_path, tiny_onnx):
    bundle = write_model_bundle(tiny_model(), tmp_path / "mo", preprocessing=TINY_PREP)
    written = write_explainer(bundle, tmp_path / "repo", "tiny", method="rise")
    assert sorted(p.name for p in written) == ["tiny", "tiny-explain"]
    config = (tmp_path / "repo" / "tiny-explain" / "config.pbtxt").read_text()
    assert 'key: "forwards" value: { string_value: "classifier" }' in config
    assert 'key: "masked" value: { string_value: "" }' in config
    with pytest.raises(BundleError, match="needs a bundle folder.*--no-layer"):
        write_explainer(
            open_model(tiny_onnx, Preprocessing(mean=(0.5,) * 3)), tmp_path / "r2", "plain"
        )


@pytest.mark.parametrize(
    ("shape", "layout"),
    [
        (["N", 3, 224, 224], "NCHW"),
        (["N", 224, 224, 3], "NHWC"),
        (["N", 1, 64, 64], "NCHW"),
        (["N", 64, 64, 1], "NHWC"),
        (["N", 13, 120, 120], "NCHW"),
        (["N", 13, 8, 8], "NCHW"),
        (["N", 120, 120, 13], "NCHW"),  # ambiguous: --layout NHWC says it
        (["N", "H", "W", 4], "NHWC"),
        (["N", 4, "H", "W"], "NCHW"),
    ],
)
def test_the_layout_is_read_off_the_axis_of_few_channels(shape, layout):
    from onnx import TensorProto, helper

    from scorecam_onnx.bundle.model_only import graph_layout

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    assert graph_layout(helper.make_model(graph)) == layout
