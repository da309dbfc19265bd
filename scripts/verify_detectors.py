"""The detector support against the exporters' and the peers' own outputs, written by
`scripts/detector_references.py` (run that first, in its own environment): ultralytics'
predict on a YOLOv8n and its end-to-end export, torchvision's Faster R-CNN outputs,
pytorch-grad-cam's ScoreCAM with `FasterRCNNBoxScoreTarget` on that detector, and the
DETR image processor's post-processing. Needs only this package:

    python scripts/verify_detectors.py [--refs /tmp/det]

It prints a Markdown table, one row per check; a check whose files are missing is a row too.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROWS: list[tuple[str, str, str]] = []


def row(check: str, reference: str, result: str) -> None:
    ROWS.append((check, reference, result))
    print(f"| {check} | {reference} | {result} |", flush=True)


def detections_against(ex, image: Path, ref: dict) -> str:
    """Boxes (original pixels), scores and classes against a reference, in its order."""
    found = ex.detect(image)
    boxes = np.array(ref.get("boxes_xyxy") or ref.get("boxes"), np.float64).reshape(-1, 4)
    scores = np.array(ref.get("conf") or ref.get("scores"), np.float64)
    labels = [int(v) for v in (ref.get("cls") or ref.get("labels"))]
    if len(found) != len(boxes):
        return f"{len(found)} detections, the reference {len(boxes)}"
    got = np.array([d.box for d in found])
    same = [d.class_id for d in found] == labels
    return (
        f"{len(found)} detections, classes {'equal' if same else 'DIFFER'}, boxes "
        f"±{np.abs(got - boxes).max():.1e} px, scores ±"
        f"{np.abs(np.array([d.score for d in found]) - scores).max():.1e}"
    )


def yolo(refs: Path) -> None:
    from scorecam_onnx import Explainer

    for name, kind in (("yolov8n", "yolov8"), ("yolov8n_nms", "end2end")):
        path = refs / f"{name}.onnx"
        if not path.is_file():
            row(f"{kind} decoding", "ultralytics predict", "missing")
            continue
        ex = Explainer(path)
        assert ex.bundle.manifest.decoder.kind == kind
        for photo in ("chelsea", "coffee"):
            ref = json.loads((refs / f"{name}_{photo}_square.json").read_text())
            _, x = ex.preprocess(refs / f"{photo}.png")
            fed = np.load(refs / f"{name}_{photo}_square_input.npy")
            result = detections_against(ex, refs / f"{photo}.png", ref)
            row(
                f"{kind} decoding, {photo}",
                "ultralytics predict (640×640 letterbox)",
                f"input ±{np.abs(x - fed).max():.1e}; {result}",
            )


def frcnn(refs: Path) -> None:
    from scorecam_onnx import Explainer

    path = refs / "frcnn.onnx"
    if not path.is_file():
        row("torchvision decoding", "torchvision outputs", "missing")
        return
    ex = Explainer(path)
    for photo in ("chelsea", "coffee"):
        ref_path = refs / f"frcnn_{photo}.json"
        if not ref_path.is_file():
            continue
        ref = json.loads(ref_path.read_text())
        _, x = ex.preprocess(refs / f"{photo}.png")
        fed = np.load(refs / f"frcnn_{photo}_input.npy").reshape(x.shape)
        scores = np.array(ref["scores"])
        keep = scores > 0.0  # all it reports (above its own 0.05)
        kept = {
            "boxes": np.array(ref["boxes_xyxy"])[keep].tolist(),
            "scores": scores[keep].tolist(),
            "labels": np.array(ref["labels"])[keep].tolist(),
        }
        in_input = ex.forwards.detections(x, 0.0)[0]
        boxes = np.array(kept["boxes"]).reshape(-1, 4)
        same = len(in_input) == len(boxes)
        detail = (
            f"{len(in_input)} detections, boxes (input pixels) ±"
            f"{np.abs(in_input.boxes - boxes).max():.1e}, labels "
            f"{'equal' if in_input.labels.tolist() == kept['labels'] else 'DIFFER'}"
            if same
            else f"{len(in_input)} detections, torchvision {len(boxes)}"
        )
        row(
            f"torchvision decoding, {photo}",
            "torchvision's own outputs",
            f"input ±{np.abs(x - fed).max():.1e}; {detail}",
        )


def gradcam_preset(refs: Path) -> None:
    from scorecam_onnx import Box, Explainer, ExplainOptions, ScoreCam
    from scorecam_onnx.bundle.detector import write_detector_bundle
    from scorecam_onnx.bundle.graphs import load_model

    meta_path = refs / "frcnn_scorecam_chelsea.json"
    if not meta_path.is_file():
        row(
            "Score-CAM on a box, pytorch-grad-cam preset",
            "ScoreCAM + FasterRCNNBoxScoreTarget",
            "missing",
        )
        return
    meta = json.loads(meta_path.read_text())
    want = np.load(refs / "frcnn_scorecam_chelsea.npy")
    with tempfile.TemporaryDirectory() as tmp:
        path = refs / "frcnn.onnx"
        bundle = write_detector_bundle(
            load_model(path), path, Path(tmp) / "b", [meta["onnx_tensor"]]
        ).path
        ex = Explainer(bundle)
        x1, y1, x2, y2 = meta["box_xyxy"]
        rgb, _ = ex.preprocess(refs / "chelsea.png")
        h, w = rgb.shape[:2]
        sx, sy = w / ex.bundle.manifest.input.width, h / ex.bundle.manifest.input.height
        target = Box(x1 * sx, y1 * sy, x2 * sx, y2 * sy, class_id=int(meta["label"]))
        # pytorch-grad-cam sees every detection the model reports: no threshold of ours
        [got] = ex.explain(
            rgb, target, ScoreCam(preset="pytorch-grad-cam"), ExplainOptions(score_threshold=0.0)
        )
        corr = float(np.corrcoef(got.saliency_input.ravel(), want.ravel())[0, 1])
        row(
            "Score-CAM on a box, pytorch-grad-cam preset",
            "pytorch-grad-cam ScoreCAM + FasterRCNNBoxScoreTarget",
            f"correlation {corr:.6f}, largest difference "
            f"{np.abs(got.saliency_input - want).max():.1e}, {got.forwards} forwards",
        )


def detr(refs: Path) -> None:
    from scorecam_onnx import Explainer

    path = refs / "detr.onnx"
    if not path.is_file():
        row("DETR decoding", "transformers post_process_object_detection", "missing")
        return
    ref = json.loads((refs / "detr_chelsea.json").read_text())
    ex = Explainer(path)
    fed = np.load(refs / "detr_chelsea_input.npy")
    threshold = 0.0  # the reference's post_process threshold
    outputs = ex.forwards.model.run(
        list(ex.bundle.manifest.decoder.outputs),
        {ex.bundle.manifest.input.name: fed.astype(np.float32)},
    )
    from scorecam_onnx.detection import decode

    h, w = fed.shape[2:]
    [found] = decode(ex.bundle.manifest.decoder, outputs, ex.classes, threshold, (h, w))
    boxes = np.array(ref["boxes_xyxy"]).reshape(-1, 4)
    order = np.argsort(-np.array(ref["scores"]), kind="stable")
    same = len(found) == len(boxes)
    detail = (
        f"{len(found)} detections, boxes ±{np.abs(found.boxes - boxes[order]).max():.1e}"
        f" px, scores ±{np.abs(found.scores - np.array(ref['scores'])[order]).max():.1e}"
        if same
        else f"{len(found)} detections, the reference {len(boxes)}"
    )
    row("DETR decoding", "transformers post_process_object_detection", detail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=Path, default=Path("/tmp/det"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print("| check | reference | result |\n|---|---|---|")
    for check in (yolo, frcnn, gradcam_preset, detr):
        try:
            check(args.refs)
        except Exception as exc:  # noqa: BLE001 - a failed check is a row
            row(check.__name__, "-", f"FAILED: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
