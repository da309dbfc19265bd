"""Decoding each detector layout, against a plain re-implementation of each exporter's
post-processing written from its definition (loops and a greedy suppression by hand), on
the raw outputs of the same input."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from conftest import SAMPLES
from tiny_detectors import CLASSES, KEPT, LAYOUTS, OUTPUTS

from scorecam_onnx import BundleError, Explainer
from scorecam_onnx.bundle.detector import probe, recognise
from scorecam_onnx.bundle.graphs import load_model
from scorecam_onnx.bundle.manifest import DecoderSpec
from scorecam_onnx.detection import decode

THRESHOLD = 0.25


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def greedy(rows: list[tuple], limit: float) -> list[tuple]:
    """Class-aware greedy suppression: best first, drop a box overlapping a kept one of its
    class by more than `limit`."""
    kept: list[tuple] = []
    for row in sorted(rows, key=lambda r: -r[1]):
        if all(k[2] != row[2] or iou(k[0], row[0]) <= limit for k in kept):
            kept.append(row)
    return kept


def corners(cx, cy, w, h) -> tuple:
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def reference(layout: str, outputs: list[np.ndarray]) -> list[tuple]:
    """(box, score, label) of image 0, best first, as each exporter post-processes."""
    rows = []
    if layout == "yolov8":
        for anchor in outputs[0][0].T:
            label = int(np.argmax(anchor[4:]))
            if anchor[4 + label] > THRESHOLD:
                rows.append((corners(*anchor[:4]), float(anchor[4 + label]), label))
        return greedy(rows, 0.7)
    if layout == "yolov5":
        for anchor in outputs[0][0]:
            joint = anchor[5:] * anchor[4]
            label = int(np.argmax(joint))
            if joint[label] > THRESHOLD:
                rows.append((corners(*anchor[:4]), float(joint[label]), label))
        return greedy(rows, 0.45)
    if layout == "detr":
        for logits, box in zip(outputs[0][0], outputs[1][0], strict=True):
            p = np.exp(logits - logits.max())
            p = p[:-1] / p.sum()
            label = int(np.argmax(p))
            if p[label] > THRESHOLD:
                cx, cy, w, h = box * 64
                rows.append((corners(cx, cy, w, h), float(p[label]), label))
        return sorted(rows, key=lambda r: -r[1])
    if layout == "end2end":
        triples = [(r[:4], r[4], r[5]) for r in outputs[0][0]]
    else:
        triples = list(zip(outputs[0], outputs[2], outputs[1], strict=True))
    rows = [(tuple(b), float(s), int(c)) for b, s, c in triples if s > THRESHOLD]
    return sorted(rows, key=lambda r: -r[1])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_decodes_as_its_exporter_post_processes(layout, detectors):
    ex = Explainer(detectors[layout])
    assert ex.bundle.manifest.decoder.kind == layout
    _, x = ex.preprocess(SAMPLES / "coffee.png")
    session = ort.InferenceSession(str(detectors[layout]))
    outputs = session.run(OUTPUTS[layout], {"images": x[0] if layout == "torchvision" else x})
    want = reference(layout, outputs)
    [got] = ex.forwards.detections(x, THRESHOLD)
    assert len(want) > 1 and len(got) == len(want)
    np.testing.assert_allclose(got.boxes, [w[0] for w in want], atol=1e-4)
    np.testing.assert_allclose(got.scores, [w[1] for w in want], rtol=1e-6)
    assert got.labels.tolist() == [w[2] for w in want]


def test_yolo_heads_keep_each_anchor_class_vector_and_objectness(detectors):
    """D-RISE compares class vectors: a raw head's are its anchors' class scores (YOLOv5:
    with the objectness apart); a reported detection's are rebuilt from its score."""
    ex = Explainer(detectors["yolov5"])
    _, x = ex.preprocess(SAMPLES / "coffee.png")
    raw = ort.InferenceSession(str(detectors["yolov5"])).run(None, {"images": x})[0][0]
    [found] = ex.forwards.detections(x, THRESHOLD)
    for vector, objectness, score in zip(
        found.vectors, found.objectness, found.scores, strict=True
    ):
        row = raw[np.argmin(np.abs(raw[:, 5:] - vector).sum(axis=1))]
        np.testing.assert_allclose(vector, row[5:], rtol=1e-6)
        assert objectness == pytest.approx(row[4]) and score == pytest.approx(
            (row[5:] * row[4]).max()
        )
    reported = Explainer(detectors["end2end"])
    [e2e] = reported.forwards.detections(x, THRESHOLD)
    c = reported.classes
    for vector, score, label in zip(e2e.vectors, e2e.scores, e2e.labels, strict=True):
        assert vector[label] == pytest.approx(score)
        assert np.delete(vector, label) == pytest.approx((1 - score) / (c - 1))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_layout_is_recognised_from_one_run(layout, detectors):
    model = load_model(detectors[layout], load_weights=False)
    spec, classes = recognise(probe(detectors[layout], model, (64, 64)))
    assert spec.kind == layout and list(spec.outputs) == OUTPUTS[layout]
    assert classes == (None if layout in ("end2end", "torchvision") else CLASSES)


def test_an_output_that_fits_no_layout_is_one_line_naming_it_and_the_choices():
    outputs = {"scores": np.zeros((1, 10), np.float32), "extra": np.zeros((1, 2), np.float32)}
    with pytest.raises(BundleError) as caught:
        recognise(outputs)
    message = str(caught.value)
    assert "\n" not in message and "scores 1×10" in message and "extra 1×2" in message
    assert "--decoder (yolov8, yolov5, end2end, torchvision, detr)" in message
    with pytest.raises(BundleError, match="unknown decoder 'ssd'"):
        recognise(outputs, "ssd")


def test_a_forced_decoder_reads_the_output_its_way(detectors):
    """A one-class YOLOv5 head is N×A×6, the shape of an end-to-end output: --decoder
    yolov5 settles it."""
    out = {"output0": np.zeros((1, 25, 6), np.float32)}
    assert recognise(out)[0].kind == "end2end"
    spec, classes = recognise(out, "yolov5")
    assert spec.kind == "yolov5" and classes == 1 and spec.iou == 0.45


def test_reported_detections_keep_at_most_the_kept_and_drop_unknown_classes():
    rows = np.zeros((1, KEPT, 6), np.float32)
    rows[0, :, :4] = [0, 0, 10, 10]
    rows[0, :, 4] = np.linspace(0.9, 0.3, KEPT)
    rows[0, :, 5] = 1
    rows[0, 0, 5] = 7  # a class the model does not have
    [found] = decode(DecoderSpec("end2end", ("o",)), [rows], 3, 0.5, (64, 64))
    assert found.labels.tolist() == [1] * int((rows[0, 1:, 4] > 0.5).sum())


def test_layouts_told_apart_at_their_edges():
    """torchvision with exactly four detections (scores also end in 4), DETR forced on boxes
    outside [0, 1], and an end-to-end graph's float class ids rounded, not truncated."""
    four = {
        "boxes": np.zeros((4, 4), np.float32),
        "labels": np.zeros(4, np.int64),
        "scores": np.zeros(4, np.float32),
    }
    assert recognise(four)[0].outputs == ("boxes", "labels", "scores")
    wide = {
        "logits": np.zeros((1, 5, 4), np.float32),
        "pred_boxes": np.full((1, 5, 4), 1.5, np.float32),
    }
    assert recognise(wide, "detr")[0].outputs == ("logits", "pred_boxes")
    rows = np.zeros((1, 2, 6), np.float32)
    rows[0, :, 2:4] = 5.0
    rows[0, :, 4] = [0.9, 0.8]
    rows[0, :, 5] = [2.0000001, 1.9999999]
    [found] = decode(DecoderSpec("end2end", ("o",)), [rows], 3, 0.5, (64, 64))
    assert found.labels.tolist() == [2, 2]


def test_a_fixed_batch_export_runs_one_input_per_call(detectors, tmp_path):
    """ultralytics exports a batch axis fixed at 1 unless asked otherwise: the masked
    inputs then go one per call, and the maps equal the free-batch graph's."""
    import onnx

    from scorecam_onnx import DRise

    model = onnx.load(str(detectors["yolov8"]))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].Clear()
        value.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, str(tmp_path / "fixed.onnx"))
    fixed, free = Explainer(tmp_path / "fixed.onnx"), Explainer(detectors["yolov8"])
    got = fixed.explain(SAMPLES / "coffee.png", None, DRise(samples=24))
    want = free.explain(SAMPLES / "coffee.png", None, DRise(samples=24))
    assert [g.box for g in got] == [w.box for w in want]
    for g, w in zip(got, want, strict=True):
        assert float(np.abs(g.saliency - w.saliency).max()) <= 1e-5
