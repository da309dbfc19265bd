"""Multi-label and binary heads: each preset scores a masked input as its reference does
(the paper's probability is a label's sigmoid; pytorch-grad-cam's `ClassifierOutputTarget`
the raw logit, its `BinaryClassifierOutputTarget` the logit signed by the class), checked
against the plain Score-CAM loops of `oracles` on the tiny CNN computed in NumPy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from builders import head_model, head_weights, tiny_forward
from click.testing import CliRunner
from conftest import TINY_PREP
from oracles import grad_cam_style, paper
from test_engine import _tiny_image

from scorecam_onnx import (
    BundleError,
    Class,
    Explainer,
    ExplainOptions,
    Runtime,
    ScoreCam,
    TopK,
    write_bundle,
)
from scorecam_onnx.cli import main


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def bundle_of(tmp_path, columns, sigmoid_node=False, head=None):
    return write_bundle(
        head_model(columns, sigmoid_node),
        tmp_path / f"h{columns}",
        "feat",
        preprocessing=TINY_PREP,
        head=head,
    )


def logits_of(columns):
    w = head_weights(columns)
    return lambda batch: tiny_forward(batch.astype(np.float32), w)[1].astype(np.float64)


@pytest.mark.parametrize("sigmoid_node", [False, True])
def test_a_multi_label_head_scores_each_label_by_its_sigmoid(tmp_path, sigmoid_node):
    bundle = bundle_of(tmp_path, 6, sigmoid_node, None if sigmoid_node else "multi-label")
    assert bundle.manifest.output.head == "multi-label"
    ex = Explainer(bundle, Runtime(provider="cpu"))
    image = _tiny_image()
    rgb, x = ex.preprocess(image)
    logits = logits_of(6)
    acts = tiny_forward(x, head_weights(6))[0][0]
    p = sigmoid(logits(x)[0])
    present = [int(i) for i in np.argsort(-p) if p[i] >= 0.5]
    found = ex.explain(rgb, None, ScoreCam())  # every label at or above 0.5
    assert [e.class_id for e in found] == present and len(present) >= 2
    assert [e.score for e in found] == pytest.approx(p[present], rel=1e-5)
    for exp in found:
        c = exp.class_id

        def as_logits(b, c=c):  # softmax([log σ, log(1 − σ)]) is σ: the paper's oracle
            s = sigmoid(logits(b)[:, c])
            return np.stack([np.log(s), np.log1p(-s)], axis=1)

        assert np.abs(exp.saliency_input - paper(x, acts, as_logits, 0)).max() <= 1e-5
    # the model's own output: its logit, or its probability where the graph ends in Sigmoid
    raw = (lambda b: sigmoid(logits(b))) if sigmoid_node else logits
    for exp in ex.explain(rgb, TopK(2), ScoreCam(preset="pytorch-grad-cam")):
        want = grad_cam_style(x, acts, raw, exp.class_id)
        assert np.abs(exp.saliency_input - want).max() <= 1e-5
    between = float((p[present[0]] + p[present[1]]) / 2)
    high = ex.explain(rgb, None, ScoreCam(), ExplainOptions(score_threshold=between))
    assert [e.class_id for e in high] == [present[0]]
    with pytest.raises(ValueError, match="no label at or above the score threshold 0.999"):
        ex.explain(rgb, None, ScoreCam(), ExplainOptions(score_threshold=0.999))


def test_a_binary_head_explains_its_positive_class(tmp_path):
    bundle = bundle_of(tmp_path, 1)
    out = bundle.manifest.output
    assert (out.head, out.classes, out.columns) == ("binary", 2, 1)
    ex = Explainer(bundle, Runtime(provider="cpu"))
    rgb, x = ex.preprocess(_tiny_image())
    acts = tiny_forward(x, head_weights(1))[0][0]
    z = logits_of(1)

    def signed(b):  # BinaryClassifierOutputTarget: ∓z for class 0/1
        return np.concatenate([-z(b), z(b)], axis=1)

    [positive] = ex.explain(rgb, None, ScoreCam())
    assert positive.class_id == 1 and positive.score == pytest.approx(sigmoid(z(x)[0, 0]))
    for c in (0, 1):
        [grad] = ex.explain(rgb, Class(c), ScoreCam(preset="pytorch-grad-cam"))
        assert np.abs(grad.saliency_input - grad_cam_style(x, acts, signed, c)).max() <= 1e-5

        def two(b, c=c):  # the class's probability, for the paper's oracle
            s = sigmoid(z(b)[:, 0]) if c == 1 else 1 - sigmoid(z(b)[:, 0])
            return np.stack([np.log(s), np.log1p(-s)], axis=1)

        [exp] = ex.explain(rgb, Class(c), ScoreCam())
        assert np.abs(exp.saliency_input - paper(x, acts, two, 0)).max() <= 1e-5
    probabilities = ex.forwards.probabilities(x)[0]
    assert probabilities == pytest.approx([1 - positive.score, positive.score])


def test_the_head_is_read_off_the_graph_and_checked(tmp_path):
    assert bundle_of(tmp_path / "a", 6).manifest.output.head == "softmax"
    assert bundle_of(tmp_path / "b", 6, True).manifest.output.kind == "probabilities"
    with pytest.raises(BundleError, match="a binary head has one output column; this output has 6"):
        bundle_of(tmp_path / "c", 6, head="binary")
    with pytest.raises(BundleError, match="a multi-label head needs several output columns"):
        bundle_of(tmp_path / "d", 1, head="multi-label")
    path = tmp_path / "m.onnx"
    import onnx

    onnx.save(head_model(6), str(path))
    result = CliRunner().invoke(
        main,
        [
            "split",
            str(path),
            "--layer",
            "feat",
            "--head",
            "multi-label",
            "--out",
            str(tmp_path / "s"),
            "--mean",
            "0.5,0.5,0.5",
            "--std",
            "0.25,0.25,0.25",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["output"]["head"] == "multi-label"
