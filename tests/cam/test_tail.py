"""The tail graph (activations → output) and the methods that run only it."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import oracles
import pytest
from builders import batch_read_model, many_channels_model, skip_model, tiny_weights
from click.testing import CliRunner
from conftest import DEFAULT_BUNDLE, SAMPLES, TINY_PREP

from scorecam_onnx import (
    Bundle,
    BundleError,
    Explainer,
    ExplainOptions,
    ReciproCam,
    Runtime,
    TopK,
    method_from,
    write_bundle,
)
from scorecam_onnx.cli import main

RNG = np.random.default_rng(11)


def _head(acts: np.ndarray) -> np.ndarray:
    """The tiny CNN's head in NumPy: global average pooling, then the linear layer."""
    w = tiny_weights()
    return acts.mean(axis=(2, 3)) @ w["w2"].T + w["b2"]


def _image() -> np.ndarray:
    return RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)


@pytest.fixture
def tiny(tiny_bundle) -> Explainer:
    return Explainer(tiny_bundle, Runtime(provider="cpu"))


@pytest.fixture(scope="module")
def default_tail():
    session = ort.InferenceSession(
        str(DEFAULT_BUNDLE / "tail.onnx"), providers=["CPUExecutionProvider"]
    )
    manifest = json.loads((DEFAULT_BUNDLE / "manifest.json").read_text())
    name = manifest["activation"]["name"]
    return lambda acts: session.run(None, {name: acts.astype(np.float32)})[0]


# Cutting -------------------------------------------------------------------------------------
def test_clean_cut_gets_a_tail_that_reproduces_the_model(tiny):
    assert tiny.bundle.manifest.tail == "tail.onnx" and tiny.forwards.tail is not None
    assert tiny.bundle.manifest.tail_missing is None
    x = RNG.standard_normal((3, 3, 8, 8)).astype(np.float32)
    acts = np.concatenate([tiny.forwards.activations(x[i : i + 1])[None] for i in range(3)])
    np.testing.assert_allclose(tiny.forwards.tail_scores(acts), tiny.forwards.scores(x), atol=1e-5)
    np.testing.assert_allclose(tiny.forwards.tail_scores(acts), _head(acts), atol=1e-5)


def test_skip_connection_around_the_target_means_no_tail(tmp_path):
    bundle = write_bundle(skip_model(), tmp_path / "skip", "feat")
    assert bundle.manifest.tail is None and not (bundle.path / "tail.onnx").exists()
    assert "goes around 'feat'" in bundle.manifest.tail_missing
    assert "skip_pool" in bundle.manifest.tail_missing
    explainer = Explainer(bundle, Runtime(provider="cpu"))
    with pytest.raises(BundleError, match="reciprocam needs the bundle's tail graph"):
        explainer.explain_one(_image(), method="reciprocam")
    result = CliRunner().invoke(
        main,
        [
            "explain",
            str(tmp_path / "x.png"),
            "--model",
            str(bundle.path),
            "--method",
            "ablationcam",
        ],
    )
    assert result.exit_code == 1 and "has none: a path from the input" in result.output
    info = CliRunner().invoke(main, ["info", str(bundle.path)])
    assert "tail     none: a path from the input" in info.output


def test_batch_size_read_off_the_input_still_gets_a_tail(tmp_path):
    bundle = write_bundle(batch_read_model(), tmp_path / "b", "feat", preprocessing=TINY_PREP)
    assert bundle.manifest.tail == "tail.onnx"
    explainer = Explainer(bundle, Runtime(provider="cpu"))
    x = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    acts = np.concatenate([explainer.forwards.activations(x[i : i + 1])[None] for i in range(2)])
    np.testing.assert_allclose(
        explainer.forwards.tail_scores(acts), explainer.forwards.scores(x), atol=1e-5
    )
    # Reading the whole shape is not only the batch size: no tail, and why.
    whole = write_bundle(batch_read_model(full_shape=True), tmp_path / "w", "feat")
    assert whole.manifest.tail is None and "read_shape" in whole.manifest.tail_missing


def test_split_default_model_writes_a_tail(tmp_path, default_explainer):
    result = CliRunner().invoke(
        main,
        [
            "split",
            str(DEFAULT_BUNDLE / "model.onnx"),
            "--out",
            str(tmp_path / "b"),
            "--mean",
            "0.5,0.5,0.5",
            "--std",
            "0.5,0.5,0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    split = Explainer(tmp_path / "b", Runtime(provider="cpu"))
    assert split.forwards.tail is not None
    x = split.preprocess(SAMPLES / "coffee.png")[1]
    acts = split.forwards.activations(x)[None]
    np.testing.assert_allclose(
        split.forwards.tail_scores(acts), split.forwards.scores(x), rtol=1e-5, atol=1e-5
    )


def test_shipped_bundle_has_its_tail(default_explainer):
    assert default_explainer.bundle.manifest.tail == "tail.onnx"
    x = default_explainer.preprocess(SAMPLES / "chelsea.png")[1]
    acts = default_explainer.forwards.activations(x)[None]
    np.testing.assert_allclose(
        default_explainer.forwards.tail_scores(acts),
        default_explainer.forwards.scores(x),
        rtol=1e-5,
        atol=1e-5,
    )


def test_format_1_bundle_still_loads_and_says_what_it_lacks(tiny_bundle):
    path = tiny_bundle.path / "manifest.json"
    data = json.loads(path.read_text())
    data["format_version"] = 1
    del data["tail"], data["tail_missing"], data["checksums"]["tail.onnx"]
    path.write_text(json.dumps(data))
    (tiny_bundle.path / "tail.onnx").unlink()
    old = Bundle.load(tiny_bundle.path)
    assert old.manifest.tail is None and "format 1 predates tail graphs" in (
        old.manifest.tail_missing
    )
    assert Explainer(old, Runtime(provider="cpu")).explain_one(_image()).saliency.shape == (8, 8)
    info = CliRunner().invoke(main, ["info", str(tiny_bundle.path)])
    assert "format 1 predates tail graphs" in info.output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tail": 3}, "'tail' must be str"),
        ({"tail": "../tail.onnx"}, "'tail' points outside the bundle"),
        ({"tail": "gone.onnx"}, "the tail file 'gone.onnx' is missing"),
    ],
)
def test_manifest_tail_key_is_validated(tiny_bundle, change, message):
    path = tiny_bundle.path / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(BundleError, match=message):
        Bundle.load(tiny_bundle.path)


# Methods against plain re-implementations ---------------------------------------------------
@pytest.mark.parametrize("gaussian", [False, True])
def test_reciprocam_matches_oracle_on_tiny(tiny, gaussian):
    image = _image()
    x = tiny.preprocess(image)[1]
    acts = tiny.forwards.activations(x)
    found = tiny.explain(image, [0, 1, 3], ReciproCam(gaussian=gaussian))
    for exp in found:
        want = oracles.reciprocam(acts, _head, exp.class_id, (8, 8), gaussian)
        np.testing.assert_allclose(exp.saliency_input, want, atol=1e-5)
        assert exp.forwards == 1 + 4 * 4 and exp.method == "reciprocam"


def test_ablationcam_matches_oracle_on_tiny(tiny):
    image = _image()
    x = tiny.preprocess(image)[1]
    acts = tiny.forwards.activations(x)
    clean = tiny.forwards.scores(x)[0]
    found = tiny.explain(image, [0, 2], method="ablationcam")
    for exp in found:
        want = oracles.ablationcam(acts, _head, clean, exp.class_id, (8, 8))
        np.testing.assert_allclose(exp.saliency_input, want, atol=1e-4)
    # Channel 4 is all zero after the ReLU (ablating it changes nothing): no forward for it.
    assert found[0].forwards == 1 + 4 and found[0].weights[4] == 0.0


def test_reciprocam_matches_oracle_on_default_bundle(default_explainer, default_tail):
    ex = default_explainer
    x = ex.preprocess(SAMPLES / "chelsea.png")[1]
    acts = ex.forwards.activations(x)
    found = ex.explain(SAMPLES / "chelsea.png", [285, 281], method="reciprocam")
    for exp in found:
        want = oracles.reciprocam(acts, default_tail, exp.class_id, (224, 224))
        np.testing.assert_allclose(exp.saliency_input, want, atol=1e-4)
    assert found[0].forwards == 1 + 49


def test_ablationcam_matches_oracle_on_default_bundle(default_explainer, default_tail):
    ex = default_explainer
    x = ex.preprocess(SAMPLES / "coffee.png")[1]
    acts, clean = ex.forwards.activations(x), ex.forwards.scores(x)[0]
    found = ex.explain(SAMPLES / "coffee.png", TopK(2), "ablationcam")
    for exp in found:
        want = oracles.ablationcam(acts, default_tail, clean, exp.class_id, (224, 224))
        assert oracles.correlation(exp.saliency_input, want) > 0.9999
        np.testing.assert_allclose(exp.saliency_input, want, atol=2e-3)


@pytest.mark.parametrize("method", ["reciprocam", "ablationcam"])
def test_batch_size_does_not_change_the_maps(default_explainer, method):
    one = default_explainer.explain(
        SAMPLES / "coffee.png", [967, 504], method, ExplainOptions(batch_size=1)
    )
    many = default_explainer.explain(
        SAMPLES / "coffee.png", [967, 504], method, ExplainOptions(batch_size=64)
    )
    for a, b in zip(one, many, strict=True):
        np.testing.assert_allclose(a.saliency, b.saliency, atol=1e-6)
        assert a.forwards == b.forwards


def test_tail_methods_refuse_other_presets(tiny):
    with pytest.raises(ValueError, match="reciprocam has its own convention"):
        tiny.explain(_image(), method=ReciproCam(preset="torchcam"))
    with pytest.raises(ValueError, match="gaussian applies to reciprocam only"):
        tiny.explain(_image(), method=method_from("ablationcam", gaussian=True))


def test_cli_explains_with_reciprocam(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "explain",
            str(SAMPLES / "chelsea.png"),
            "--method",
            "reciprocam",
            "--gaussian",
            "--out",
            str(tmp_path),
            "--provider",
            "cpu",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "chelsea.json").read_text())
    assert meta["method"] == "reciprocam" and meta["label"] == "Egyptian cat"
    assert meta["forwards"] == 50


def test_tiny_tail_memory_is_bounded_by_the_batch(tmp_path):
    """ReciproCAM on a 2048-channel model holds one batch of activations, not h·w of them."""
    bundle = write_bundle(many_channels_model(), tmp_path / "wide", "feat", preprocessing=TINY_PREP)
    explainer = Explainer(bundle, Runtime(provider="cpu"))
    seen: list[int] = []
    real = explainer.forwards.tail_scores
    explainer.forwards.tail_scores = lambda acts, prefix: (seen.append(acts.shape[0]), real(acts))[
        1
    ]
    explainer.explain(
        np.zeros((32, 32, 3), np.uint8) + 9,
        method="reciprocam",
        options=ExplainOptions(batch_size=5),
    )
    assert seen == [1, 5, 5, 5, 1]  # the unperturbed activations, then 16 positions
