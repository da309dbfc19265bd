"""The model-parameter randomisation test: which weights change at each step (against the
graph itself), that the randomised graphs still agree with each other (against a NumPy
forward of the tiny CNN with the same weights), and what the report says."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import onnx
import pytest
from builders import tiny_forward, tiny_weights
from click.testing import CliRunner
from conftest import DEFAULT_BUNDLE
from onnx import numpy_helper

from scorecam_onnx import Bundle, EigenCam, Explainer, FasterScoreCam, Runtime
from scorecam_onnx.cli import main
from scorecam_onnx.evaluation.randomise import RandomisableBundle
from scorecam_onnx.evaluation.sanity_checks import SanityPlan, SanityReport, SanityStep, sanity
from scorecam_onnx.evaluation.similarity import similarities

RNG = np.random.default_rng(3)


def _initialisers(path):
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def test_layers_run_from_the_output_and_only_their_weights_change(tmp_path):
    bundle = Bundle.load(DEFAULT_BUNDLE)
    model = RandomisableBundle(bundle, seed=5)
    graph = onnx.load(str(bundle.model_path), load_external_data=False).graph
    position = {i: n for n, node in enumerate(graph.node) for i in node.input}
    order = [position[layer.tensors[0]] for layer in model.layers]
    assert order == sorted(order, reverse=True)  # the classifier first, the stem last
    assert model.layers[0].tensors == ("model._fc.weight", "model._fc.bias")
    chosen = model.layers[:3]
    changed = {t for layer in chosen for t in layer.tensors}
    randomised = model.write(chosen, tmp_path / "r")
    before = {**_initialisers(bundle.features_path), **_initialisers(bundle.model_path)}
    for path in (randomised.model_path, randomised.features_path, randomised.tail_path):
        for name, value in _initialisers(path).items():
            if name in changed:
                assert not np.array_equal(value, before[name]), name
                assert value.std() == pytest.approx(before[name].std(), rel=0.1)
            else:
                assert np.array_equal(value, before[name]), name
    again = model.write(chosen, tmp_path / "again")  # seeded: the same weights again
    assert _initialisers(again.model_path).keys() == _initialisers(randomised.model_path).keys()
    for name, value in _initialisers(again.model_path).items():
        assert np.array_equal(value, _initialisers(randomised.model_path)[name])
    Bundle.load(DEFAULT_BUNDLE, verify=True)  # the bundle itself is untouched


@pytest.mark.parametrize("depth", [1, 2])
def test_randomised_graphs_agree_with_each_other_and_with_numpy(tiny_bundle, tmp_path, depth):
    model = RandomisableBundle(tiny_bundle, seed=1)
    assert [layer.tensors for layer in model.layers] == [("w2", "b2"), ("w1", "b1")]
    layers = model.layers[:depth]
    values = model.randomised(layers)
    weights = tiny_weights()
    weights.update({k: v.reshape(weights[k].shape) for k, v in values.items()})
    explainer = Explainer(model.write(layers, tmp_path / "r"), Runtime(provider="cpu"))
    x = RNG.normal(size=(3, 3, 8, 8)).astype(np.float32)
    acts, logits = tiny_forward(x, weights)
    assert explainer.forwards.scores(x) == pytest.approx(logits, abs=1e-5)
    features = np.stack([explainer.forwards.activations(x[i : i + 1]) for i in range(3)])
    assert features == pytest.approx(acts, abs=1e-5)
    assert explainer.forwards.tail_scores(features) == pytest.approx(logits, abs=1e-5)


def test_sanity_compares_each_randomised_map_with_the_trained_one(tiny_bundle, tmp_path):
    images = []
    for i in range(2):
        path = tmp_path / f"img{i}.png"
        cv2.imwrite(str(path), RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8))
        images.append(path)
    explainer = Explainer(tiny_bundle, Runtime(provider="cpu"))
    methods = [FasterScoreCam(channels=3), EigenCam()]
    report = sanity(explainer, images, SanityPlan(methods, steps=None, seed=4))
    assert [(s.mode, s.depth) for s in report.steps] == [
        ("cascading", 1),
        ("cascading", 2),
        ("independent", 1),
        ("independent", 2),
    ]
    # EigenCAM never reads the classifier: randomising it alone leaves its maps as they were.
    top = report.steps[0].similarity["eigencam"]
    assert top["spearman"] == pytest.approx(1.0) and top["ssim"] == pytest.approx(1.0)
    # Every number is the mean of the similarities of maps explained by hand on the same
    # randomised bundle, for the class the trained model predicts.
    model = RandomisableBundle(tiny_bundle, seed=4)
    randomised = Explainer(model.write(model.layers[:2], tmp_path / "all"), Runtime(provider="cpu"))
    for method in methods:
        found = []
        for image in images:
            class_id = explainer.chosen_classes(image)[0][0]
            trained = explainer.explain(image, class_id, method)[0].saliency_input
            other = randomised.explain(image, class_id, method)[0].saliency_input
            found.append(similarities(trained, other))
        expected = np.nanmean([f["spearman"] for f in found])
        assert report.steps[1].similarity[method.name]["spearman"] == pytest.approx(expected)


def test_an_fp16_model_graph_gets_its_new_weights_in_its_own_precision(tiny_bundle, tmp_path):
    from scorecam_onnx.quantize import quantize_bundle

    image = tmp_path / "img.png"
    cv2.imwrite(str(image), RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    half = tmp_path / "half"
    quantize_bundle(tiny_bundle.path, half, "fp16", calibrate=[image])
    model = RandomisableBundle(Bundle.load(half), seed=2)
    randomised = model.write(model.layers, tmp_path / "r")
    kinds = {
        path.name: {i.name: i.data_type for i in onnx.load(str(path)).graph.initializer}
        for path in (randomised.model_path, randomised.features_path, randomised.tail_path)
    }
    assert kinds["model.onnx"]["w2"] == onnx.TensorProto.FLOAT16
    assert kinds["tail.onnx"]["w2"] == onnx.TensorProto.FLOAT
    found = Explainer(randomised, Runtime(provider="cpu")).explain_one(image, method="eigencam")
    assert np.isfinite(found.saliency).all()


def test_the_verdict_follows_the_rank_correlation_after_full_randomisation():
    def report(rank):
        step = SanityStep("cascading", ("a", "b"), 2, {"m": {"spearman": rank}})
        return SanityReport(["m"], ["x"], ["a", "b"], [step])

    assert report(0.2).verdicts()["m"].startswith("passes")
    assert report(math.nan).verdicts()["m"].startswith("cannot tell")  # a constant map
    assert report(0.8).verdicts()["m"].startswith("fails")
    assert report(0.8).to_dict()["verdicts"]["m"].startswith("fails")


def test_the_sanity_command_writes_its_report_and_names_an_unreadable_image(tiny_bundle, tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    out = tmp_path / "out"
    args = ["sanity", str(good), str(bad), "--model", str(tiny_bundle.path)]
    result = CliRunner().invoke(main, [*args, "--methods", "eigencam", "--out", str(out), "-q"])
    assert result.exit_code == 1, result.output
    assert f"error: {bad}:" in result.output and "Traceback" not in result.output
    assert {p.name for p in out.iterdir()} == {"sanity.json", "sanity.md", "sanity.png"}
    assert cv2.imread(str(out / "sanity.png")) is not None
    assert "eigencam" in (out / "sanity.md").read_text()


def test_evaluate_runs_the_sanity_checks_beside_its_report(tiny_bundle, tmp_path):
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    out = tmp_path / "out"
    args = ["evaluate", str(image), "--model", str(tiny_bundle.path), "--methods", "eigencam"]
    result = CliRunner().invoke(
        main, [*args, "--no-baselines", "--sanity", "-q", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert {"report.json", "sanity.json", "sanity.md", "sanity.png"} <= names
    steps = json.loads((out / "sanity.json").read_text())["steps"]
    assert [(s["mode"], s["depth"]) for s in steps] == [
        ("cascading", 1),
        ("cascading", 2),
        ("independent", 1),
        ("independent", 2),
    ]
