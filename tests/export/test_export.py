"""Export of PyTorch classifiers: layer choice, faithfulness, reproduction of the default bundle."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import DEFAULT_BUNDLE, SAMPLES
from scorecam_onnx_export import export_bundle, resolve_layer
from scorecam_onnx_export.torch_export import LoadedModel
from torch_models import shared_activation, small_net, xray_net

from scorecam_onnx import Bundle, BundleError, Preprocessing
from scorecam_onnx.images import load_image
from scorecam_onnx.pictures import preprocess

PREP = Preprocessing(height=16, width=16)


def _loaded(module):
    return LoadedModel(module.eval(), {"framework": "pytorch", "model": "test"})


def _captured(module, name, x):
    """Outputs of every call of the named module, captured with forward hooks."""
    calls = []
    handle = module.get_submodule(name).register_forward_hook(lambda m, i, o: calls.append(o))
    with torch.no_grad():
        logits = module(x)
    handle.remove()
    return [c.numpy() for c in calls], logits.numpy()


def _bundle_outputs(bundle: Bundle, x: np.ndarray):
    m = bundle.manifest
    feats = ort.InferenceSession(str(bundle.features_path), providers=["CPUExecutionProvider"])
    model = ort.InferenceSession(str(bundle.model_path), providers=["CPUExecutionProvider"])
    return (
        feats.run([m.activation.name], {m.input.name: x})[0],
        model.run([m.output.name], {m.input.name: x})[0],
    )


def test_automatic_layer_is_the_last_4d_module(tmp_path):
    net = small_net()
    report = export_bundle(_loaded(net), tmp_path / "b", preprocessing=PREP)
    assert report.layer.label == "relu2"
    x = np.random.default_rng(0).normal(size=(3, 3, 16, 16)).astype(np.float32)
    (want_act,), want_logits = _captured(net, "relu2", torch.from_numpy(x))
    acts, logits = _bundle_outputs(report.bundle, x)
    np.testing.assert_allclose(acts, want_act, atol=1e-5)
    np.testing.assert_allclose(logits, want_logits, atol=1e-5)
    assert report.activation_diff < 1e-4 and report.logits_diff < 1e-4
    assert report.bundle.manifest.activation.channels == 16
    assert report.bundle.manifest.layer == "relu2"


def test_non_default_layer(tmp_path):
    net = small_net()
    report = export_bundle(_loaded(net), tmp_path / "b", layer="conv1", preprocessing=PREP)
    x = np.random.default_rng(1).normal(size=(2, 3, 16, 16)).astype(np.float32)
    (want,), _ = _captured(net, "conv1", torch.from_numpy(x))
    acts, _ = _bundle_outputs(report.bundle, x)
    assert acts.shape == (2, 8, 16, 16)
    np.testing.assert_allclose(acts, want, atol=1e-5)


def test_module_called_twice_needs_a_call_index(tmp_path):
    net = shared_activation()
    with pytest.raises(BundleError, match=r"'act' runs 2 times .* 'act#K'"):
        export_bundle(_loaded(net), tmp_path / "b", layer="act", preprocessing=PREP)
    x = np.random.default_rng(2).normal(size=(2, 3, 16, 16)).astype(np.float32)
    calls, _ = _captured(net, "act", torch.from_numpy(x))
    for index, want in ((0, calls[0]), (-1, calls[1]), (1, calls[1])):
        report = export_bundle(
            _loaded(net), tmp_path / f"b{index}", layer=f"act#{index}", preprocessing=PREP
        )
        acts, _ = _bundle_outputs(report.bundle, x)
        np.testing.assert_allclose(acts, want, atol=1e-5)
        assert report.bundle.manifest.layer == f"act#{index % 2}"


def test_automatic_layer_picks_the_last_call_of_a_shared_module():
    net = shared_activation()
    choice = resolve_layer(net, None, torch.zeros(2, 3, 16, 16))
    assert (choice.name, choice.call, choice.calls, choice.label) == ("act", 1, 2, "act#1")


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ("nothing", "no module named 'nothing'"),
        ("act#2", "runs 2 times; #2 is out of range"),
        ("act#x", "bad call index"),
        ("head.1", "expected a 4-D activation map or N×L×C tokens"),
    ],
)
def test_bad_layers(layer, message):
    with pytest.raises(BundleError, match=message):
        resolve_layer(shared_activation(), layer, torch.zeros(2, 3, 16, 16))


def test_default_bundle_is_reproducible(tmp_path):
    """Re-export EfficientNet-Lite0 and compare with the committed graphs."""
    from scorecam_onnx_export import load_model

    fresh = export_bundle(load_model("efficientnet-lite0"), tmp_path / "lite0").bundle
    committed = Bundle.load(DEFAULT_BUNDLE)
    assert fresh.manifest.input == committed.manifest.input
    assert fresh.manifest.activation == committed.manifest.activation
    assert fresh.manifest.layer == committed.manifest.layer == "_swish#1"
    assert fresh.labels == committed.labels
    x = np.concatenate(
        [
            preprocess(load_image(SAMPLES / "chelsea.png"), committed.manifest.input),
            np.random.default_rng(0).normal(size=(1, 3, 224, 224)).astype(np.float32),
        ]
    )
    for got, want in zip(_bundle_outputs(fresh, x), _bundle_outputs(committed, x), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)
    size = sum(p.stat().st_size for p in committed.path.iterdir())
    assert size < 25e6


def test_falls_back_to_torchscript_when_dynamo_cannot_trace(tmp_path):
    from torch_models import data_dependent

    net = data_dependent()
    report = export_bundle(_loaded(net), tmp_path / "b", layer="conv", preprocessing=PREP)
    assert report.bundle.manifest.source["exporter"] == "torchscript"
    x = np.random.default_rng(3).normal(size=(3, 3, 16, 16)).astype(np.float32)
    (want_act,), want_logits = _captured(net, "conv", torch.from_numpy(x))
    acts, logits = _bundle_outputs(report.bundle, x)
    np.testing.assert_allclose(acts, want_act, atol=1e-5)
    np.testing.assert_allclose(logits, want_logits, atol=1e-5)


def test_dynamo_is_the_first_choice(tmp_path):
    report = export_bundle(_loaded(small_net()), tmp_path / "b", preprocessing=PREP)
    assert report.bundle.manifest.source["exporter"] == "dynamo"


def test_several_layers_export_into_one_features_graph(tmp_path):
    """relu1 (8×16×16) and relu2 (16×8×8): both features outputs, equal to PyTorch's own
    activations; the deepest (relu2) is the tail's cut; the fused map equals pytorch-grad-
    cam's aggregation of the two layers computed from the hooked activations."""
    from oracles import correlation, grad_cam_layers

    from scorecam_onnx import Explainer, Runtime, ScoreCam

    net = small_net()
    report = export_bundle(
        _loaded(net), tmp_path / "b", layer=["relu1", "relu2"], preprocessing=PREP
    )
    m = report.bundle.manifest
    assert [name for name, _ in m.targets] == ["relu2", "relu1"] and m.tail is not None
    assert report.layer.label == "relu2" and [c.label for c in report.layers] == ["relu1", "relu2"]
    x = np.random.default_rng(2).normal(size=(2, 3, 16, 16)).astype(np.float32)
    feats = ort.InferenceSession(
        str(report.bundle.features_path), providers=["CPUExecutionProvider"]
    )
    for name, spec in m.targets:
        (want,), _ = _captured(net, name, torch.from_numpy(x))
        (got,) = feats.run([spec.name], {m.input.name: x})
        np.testing.assert_allclose(got, want, atol=1e-5)
    ex = Explainer(report.bundle, Runtime(provider="cpu"))
    image = np.random.default_rng(4).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    xi = ex.preprocess(image)[1]
    acts = [_captured(net, name, torch.from_numpy(xi))[0][0][0] for name in ("relu2", "relu1")]

    def model(batch):
        with torch.no_grad():
            return net(torch.from_numpy(batch)).numpy()

    c = int(np.argmax(model(xi)[0]))
    got = ex.explain_one(image, c, ScoreCam(preset="pytorch-grad-cam"))
    want = grad_cam_layers(xi, acts, model, c)
    assert correlation(got.saliency_input, want) >= 0.9999
    assert float(np.abs(got.saliency_input - want).max()) <= 1e-4


def test_a_grey_model_exports_with_one_channel_and_reads_16_bits(tmp_path):
    """A chest-X-ray-like model (one band, 14 sigmoid findings): the bundle's graphs equal
    PyTorch on 1-channel inputs, and a 16-bit PNG becomes the input computed by hand."""
    import cv2

    from scorecam_onnx import Explainer, Runtime

    net = xray_net()
    prep = Preprocessing(height=16, width=16, mean=(0.5,), std=(0.25,))
    report = export_bundle(_loaded(net), tmp_path / "x", preprocessing=prep, head="multi-label")
    m = report.bundle.manifest
    assert (m.input.channels, m.input.mean, m.output.classes, m.output.head) == (
        1,
        (0.5,),
        14,
        "multi-label",
    )
    x = np.random.default_rng(4).normal(size=(2, 1, 16, 16)).astype(np.float32)
    (want_act,), want_logits = _captured(net, "relu2", torch.from_numpy(x))
    acts, logits = _bundle_outputs(report.bundle, x)
    np.testing.assert_allclose(acts, want_act, atol=1e-5)
    np.testing.assert_allclose(logits, want_logits, atol=1e-5)
    raw = np.random.default_rng(5).integers(0, 65536, (32, 48), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "scan.png"), raw)
    ex = Explainer(report.bundle, Runtime(provider="cpu"))
    _, got = ex.preprocess(tmp_path / "scan.png")
    blocks = raw.reshape(16, 2, 16, 3).astype(np.float64).mean(axis=(1, 3)) / 65535
    np.testing.assert_allclose(got[0, 0], (blocks - 0.5) / 0.25, atol=0.5 / 65535 / 0.25 + 1e-6)
    with torch.no_grad():
        findings = torch.sigmoid(net(torch.from_numpy(got))).numpy()[0]
    present = [int(i) for i in np.argsort(-findings) if findings[i] >= 0.5]
    if present:  # every finding at or above 0.5 is explained, most probable first
        found = ex.explain(tmp_path / "scan.png")
        assert [e.class_id for e in found] == present
        assert [e.score for e in found] == pytest.approx(findings[present].tolist(), abs=1e-5)
    else:
        with pytest.raises(ValueError, match="no label at or above the score threshold"):
            ex.explain(tmp_path / "scan.png")
