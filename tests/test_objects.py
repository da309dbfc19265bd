"""Methods, targets and options as objects: each method carries its settings and builds the
engine they describe; targets choose classes as their definitions say; options check
themselves. Oracles: the engines' own attributes, hand-picked outputs, and the explainer's
maps for the equivalent forms."""

from __future__ import annotations

import numpy as np
import pytest

from scorecam_onnx import Explainer, Runtime
from scorecam_onnx.cam import methods as engines
from scorecam_onnx.cam.rise import Rise as RiseEngine
from scorecam_onnx.cam.tail import ReciproCam as ReciproEngine
from scorecam_onnx.methods import (
    METHODS,
    AblationCam,
    ClusterScoreCam,
    FasterScoreCam,
    ISCam,
    ReciproCam,
    Rise,
    ScoreCam,
    SSCam,
    as_method,
    method_from,
)
from scorecam_onnx.options import ExplainOptions
from scorecam_onnx.targets import Class, Top1, TopK, as_target


def test_wire_parameters_set_each_method_s_own_field():
    assert method_from("faster-scorecam", channels=8) == FasterScoreCam(channels=8)
    assert method_from("cluster-scorecam", channels=8) == ClusterScoreCam(clusters=8)
    assert method_from("sscam", samples=3) == SSCam(samples=3)
    assert method_from("iscam", samples=3) == ISCam(samples=3)
    assert method_from("rise", samples=30) == Rise(samples=30)
    assert method_from("reciprocam", gaussian=True) == ReciproCam(gaussian=True)
    # a parameter of another method is ignored, except gaussian (a switch said by mistake)
    assert method_from("scorecam", channels=8, samples=3) == ScoreCam()
    with pytest.raises(ValueError, match="gaussian applies to reciprocam only"):
        method_from("scorecam", gaussian=True)


def test_a_method_builds_the_engine_its_settings_describe():
    engine = FasterScoreCam(channels=8, preset="torchcam").engine(4)
    assert isinstance(engine, engines.FasterScoreCam)
    assert (engine.channels, engine.batch_size, engine.preset.name) == (8, 4, "torchcam")
    noisy = SSCam(samples=3, sigma=0.5, seed=7).engine(2)
    assert (noisy.samples, noisy.std, noisy.seed, noisy.preset.name) == (3, 0.5, 7, "torchcam")
    rise = Rise(samples=50, grid=4, p=0.25, seed=3).engine(8)
    assert isinstance(rise, RiseEngine)
    assert (rise.masks, rise.grid, rise.keep, rise.seed) == (50, 4, 0.25, 3)
    assert isinstance(ReciproCam(gaussian=True).engine(64), ReciproEngine)
    assert ReciproCam().engine(64).gaussian is False


def test_methods_say_what_they_need():
    needs = {name: (cls().needs_layer, cls().needs_tail) for name, cls in METHODS.items()}
    assert needs["rise"] == (False, False)
    assert needs["reciprocam"] == needs["ablationcam"] == (True, True)
    assert all(needs[n] == (True, False) for n in ("scorecam", "sscam", "eigencam"))
    assert [n for n, cls in METHODS.items() if cls.shares_layer_forwards] == ["scorecam"]
    assert [n for n, cls in METHODS.items() if not cls.on_detectors] == [
        "reciprocam",
        "ablationcam",
    ]
    assert [n for n, cls in METHODS.items() if cls.detectors_only] == ["drise"]
    drise = METHODS["drise"]().engine(8)  # the paper's grid and p
    assert isinstance(drise, RiseEngine)
    assert (drise.masks, drise.grid, drise.keep, drise.seed) == (2000, 16, 0.5, 0)


def test_bad_method_settings_are_refused_when_made():
    with pytest.raises(ValueError, match="unknown preset 'other'"):
        ScoreCam(preset="other")
    with pytest.raises(ValueError, match="channels must be at least 1, got 0"):
        FasterScoreCam(channels=0)
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\]"):
        Rise(p=0.0)
    with pytest.raises(ValueError, match="own convention"):
        AblationCam(preset="paper")
    with pytest.raises(ValueError, match="unknown method 'gradcam'"):
        as_method("gradcam")
    assert as_method("sscam") == SSCam() and hash(SSCam()) == hash(SSCam())


def test_targets_choose_classes_by_their_definitions():
    out = np.array([0.1, np.nan, 3.0, 2.0, 3.0])
    assert Top1().classes(out, 5) == [2]  # NaN never wins; first of ties
    assert TopK(3).classes(out, 5) == [2, 4, 3]
    assert Class([4, 0]).classes(out, 5) == [4, 0]
    assert as_target(3) == Class(3) and as_target([1, 2]) == Class([1, 2])
    assert as_target(None) == Top1()
    with pytest.raises(ValueError, match=r"class id 5 is out of range \(0 to 4\)"):
        Class(5).classes(out, 5)
    with pytest.raises(ValueError, match="top_k must be between 1 and 5, got 6"):
        TopK(6).classes(out, 5)
    with pytest.raises(TypeError, match="class ids must be integers"):
        Class([1.5])


def test_options_check_themselves():
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        ExplainOptions(batch_size=0)
    with pytest.raises(ValueError, match="unknown fuse 'sum'"):
        ExplainOptions(fuse="sum")
    assert ExplainOptions(layers=["a"]).layers == ("a",)
    assert ExplainOptions(fuse="max").fusion(ScoreCam()) == "max"
    assert ExplainOptions().fusion(ScoreCam(preset="torchcam")) == "max"
    assert ExplainOptions().fusion(ScoreCam()) == "mean"


def test_the_call_forms_give_the_same_maps(tiny_bundle, tmp_path):
    ex = Explainer(tiny_bundle, Runtime(provider="cpu"))
    image = np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    by_list = ex.explain(image, [2, 0], "faster-scorecam")
    by_object = ex.explain(image, Class([2, 0]), FasterScoreCam())
    assert [e.class_id for e in by_list] == [2, 0]
    for a, b in zip(by_list, by_object, strict=True):
        np.testing.assert_array_equal(a.saliency, b.saliency)
    one = ex.explain_one(image, 2, FasterScoreCam())
    np.testing.assert_array_equal(one.saliency, by_list[0].saliency)
    top = ex.explain(image, TopK(2))
    assert [e.class_id for e in top] == TopK(2).classes(
        ex.forwards.scores(ex.preprocess(image)[1])[0], ex.classes
    )
