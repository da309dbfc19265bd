"""Reference detectors and their own libraries' outputs, for checking the ONNX detector support
outside CI (random weights throughout: no hub downloads).

Runs in its own environment, outside CI (ultralytics and pytorch-grad-cam are not test
dependencies):

    python3 -m venv /tmp/zoo
    /tmp/zoo/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/zoo/bin/pip install ultralytics grad-cam onnx onnxscript onnxruntime \\
        opencv-python-headless click scikit-image transformers
    YOLO_OFFLINE=1 /tmp/zoo/bin/python scripts/detector_references.py [--out /tmp/det]
        [--only yolo,frcnn,scorecam,detr]

It writes into --out (default /tmp/det):

- chelsea.png, coffee.png: skimage's photos, RGB PNG.
- yolov8n.onnx (dynamic batch/height/width, output0 N×84×A) and yolov8n_nms.onnx (end-to-end,
  N×300×6, conf 0.25 and IoU 0.7 baked in, its per-image NMS loop unrolled for batch ≤ 16): one
  random YOLOv8n whose BatchNorm statistics are recomputed on four photos, class biases -12 +
  N(0, 0.5), and 10 classes' rows fitted to fire on 8 planted anchors per photo (plant_yolo).
- yolov8n[_nms]_<photo>[_square].json: ultralytics' own predict on the ONNX file (conf 0.25,
  IoU 0.7, imgsz 640, max_det 300); boxes xyxy in original pixels. Without _square, predict as
  it comes (a dynamic ONNX gets the minimum-rectangle letterbox); _square passes rect=False
  (640×640). Beside each: _input.npy (the tensor ultralytics fed the model, RGB 0-1 NCHW) and
  _raw.npy (the model's output on it).
- frcnn.onnx: torchvision's fasterrcnn_mobilenet_v3_large_320_fpn (random, BatchNorm statistics
  recomputed, cls_score weight ×15), input `image` 3×320×320 (0-1 RGB, no batch axis),
  outputs boxes, labels, scores; frcnn_<photo>.json (torch's own outputs and ONNX Runtime's
  difference) and frcnn_<photo>_input.npy.
- frcnn_scorecam_chelsea.npy (pytorch-grad-cam's ScoreCAM, 320×320), _layer (the target
  tensor: FPN level "0", 1×256×10×10), _scores (the 256 masked-forward target scores), and
  frcnn_scorecam_chelsea.json (target box, label, the layer's ONNX tensor name).
- detr.onnx (small random Hugging Face DETR, ResNet backbone, 20 queries, 10 labels; dynamo
  export, pixel_values N×3×320×320 → logits N×20×11, pred_boxes N×20×4), detr_chelsea.json (the
  image processor's post_process_object_detection at threshold 0) and detr_chelsea_input.npy.
- summary.json: timings, each ONNX file's inputs and outputs, detection counts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("YOLO_OFFLINE", "1")

PHOTOS = ("chelsea", "coffee")
CALIBRATION = ("chelsea", "coffee", "astronaut", "rocket")
STEPS = ("yolo", "frcnn", "scorecam", "detr")
FRCNN_SIZE = 320


def photo(name: str) -> np.ndarray:
    """An skimage photo as H×W×3 uint8 RGB."""
    from skimage import data

    return np.ascontiguousarray(getattr(data, name)()[..., :3])


def dump(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=1))


def onnx_io(path: Path) -> dict:
    """Inputs and outputs of an ONNX file: name → shape (symbolic axes by name)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph

    def shape(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    inits = {i.name for i in graph.initializer}
    return {
        "inputs": {v.name: shape(v) for v in graph.input if v.name not in inits},
        "outputs": {v.name: shape(v) for v in graph.output},
    }


def session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def recalibrate_batchnorm(model, forward, batches) -> int:
    """Recompute every BatchNorm's running statistics as the plain average over `batches`
    (momentum None, BatchNorm layers alone in train mode, no gradients); then eval again."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [n.momentum for n in norms]
    for n in norms:
        n.reset_running_stats()
        n.momentum = None
        n.train()
    with torch.no_grad():
        for batch in batches:
            forward(batch)
    for n, momentum in zip(norms, momenta, strict=True):
        n.momentum = momentum
        n.eval()
    return len(norms)


# --------------------------------------------------------------------------- YOLOv8n


def letterboxed(rgb: np.ndarray, auto: bool):
    """ultralytics' LetterBox (pad 114, INTER_LINEAR, centred) to 640: 1×3×H×W float 0-1."""
    import torch
    from ultralytics.data.augment import LetterBox

    img = LetterBox(640, auto=auto, stride=32)(image=rgb)
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255


def yolo_detections(net, inputs) -> list:
    """Per input: (boxes, conf, cls) after ultralytics' NMS at conf 0.25, IoU 0.7."""
    import torch
    from ultralytics.utils.nms import non_max_suppression

    out = []
    with torch.no_grad():
        for x in inputs:
            y = net(x)
            y = y[0] if isinstance(y, tuple | list) else y
            out.append(non_max_suppression(y, 0.25, 0.7, max_det=300)[0])
    return out


def anchor_features(net, inputs) -> list:
    """Per input, per level: the 80-channel input of the last class conv, as anchors × 80."""
    import torch

    convs = [c[-1] for c in net.model[-1].cv3]
    seen: dict = {}
    hooks = [
        c.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, i[0].detach()))
        for k, c in enumerate(convs)
    ]
    out = []
    with torch.no_grad():
        for x in inputs:
            net(x)
            out.append([seen[k][0].flatten(1).T for k in range(len(convs))])
    for h in hooks:
        h.remove()
    return out


def plant_yolo(net, per_photo: int = 8, steps: int = 600) -> dict:
    """Give the random head a few real detections.

    Every class conv bias is set to -12 + N(0, 0.5) (seed 0). That alone, at any weight scale,
    cannot give chelsea and coffee a few boxes each: the random net's head features are ~5×
    weaker on chelsea than on coffee (std 0.07 vs 0.37), so the scale that lets 5 boxes through
    on chelsea lets 300 through on coffee. So `per_photo` anchors per photo (seeded: points in
    the central 70% of the photo, levels 0, 1, 2 in turn, classes drawn with repetition from a
    pool of 10) are planted: the class conv rows of the pool's classes are fitted (logistic
    regression, Adam, `steps` steps) on the frozen features of chelsea and coffee (both
    letterboxes) as positives there and negatives everywhere else, astronaut and rocket
    all negatives. The other 70 classes keep their random weights and never fire."""
    import torch
    from ultralytics.data.augment import LetterBox

    head = net.model[-1]
    convs = [c[-1] for c in head.cv3]
    strides = [int(s) for s in head.stride]
    offsets = torch.from_numpy(np.random.default_rng(0).normal(0, 0.5, head.nc)).float()
    with torch.no_grad():
        for conv in convs:
            conv.bias.copy_(-12 + offsets)
    rng = np.random.default_rng(1)
    pool = sorted(int(c) for c in rng.choice(head.nc, 10, replace=False))
    plants = {}
    for name in PHOTOS:
        h, w = photo(name).shape[:2]
        plants[name] = [
            (
                float(rng.uniform(0.15, 0.85) * w),
                float(rng.uniform(0.15, 0.85) * h),
                k % head.nl,
                int(rng.choice(pool)),
            )
            for k in range(per_photo)
        ]
    inputs, positives = [], []
    for name in CALIBRATION:
        rgb = photo(name)
        for auto in (True, False):
            g = LetterBox(640, auto=auto, stride=32).get_params({"img": rgb})
            inputs.append(letterboxed(rgb, auto))
            positives.append(
                [
                    (
                        lvl,
                        int((g["ratio"][1] * v + g["top"]) // strides[lvl]),
                        int((g["ratio"][0] * u + g["left"]) // strides[lvl]),
                        c,
                    )
                    for u, v, lvl, c in plants.get(name, [])
                ]
            )
    feats = anchor_features(net, inputs)
    column = {c: i for i, c in enumerate(pool)}
    xs, ys = [], []
    for lvl in range(head.nl):
        xs.append(torch.cat([f[lvl] for f in feats]))
        parts = []
        for x, pos in zip(inputs, positives, strict=True):
            width = x.shape[3] // strides[lvl]
            y = torch.zeros(x.shape[2] // strides[lvl] * width, len(pool))
            for level, row, col, c in pos:
                if level == lvl:
                    y[row * width + col, column[c]] = 1
            parts.append(y)
        ys.append(torch.cat(parts))
    weights = [torch.zeros(xs[0].shape[1], len(pool), requires_grad=True) for _ in xs]
    biases = [torch.full((len(pool),), -6.0, requires_grad=True) for _ in xs]
    optimiser = torch.optim.Adam(weights + biases, lr=0.05)
    softplus = torch.nn.functional.softplus
    for _ in range(steps):
        optimiser.zero_grad()
        loss = sum(
            (20 * y * softplus(-(x @ w + b)) + (1 - y) * softplus(x @ w + b)).sum()
            for x, y, w, b in zip(xs, ys, weights, biases, strict=True)
        )
        loss = loss + 1e-3 * sum((w**2).sum() for w in weights)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        for conv, w, b in zip(convs, weights, biases, strict=True):
            conv.weight[pool, :, 0, 0] = w.T
            conv.bias[pool] = b
    counts = {}
    for name in (*PHOTOS, "astronaut", "rocket"):
        for auto in (True, False):
            d = yolo_detections(net, [letterboxed(photo(name), auto)])[0]
            counts[f"{name}_{'rect' if auto else 'square'}"] = {
                "n": len(d),
                "classes": sorted({int(c) for c in d[:, 5].tolist()}),
            }
    for name in PHOTOS:
        for how in ("rect", "square"):
            n, classes = counts[f"{name}_{how}"]["n"], counts[f"{name}_{how}"]["classes"]
            if not (5 <= n <= 30 and len(classes) >= 2):
                raise RuntimeError(f"planting failed: {counts}")
    return {
        "bias": "-12 + N(0, 0.5) per class (seed 0); the pool's rows fitted",
        "pool": pool,
        "plants_xy_level_class": plants,
        "final_loss": float(loss.detach()),
        "torch_detections": counts,
    }


def predict_json(
    model_path: Path, name: str, image: Path, out: Path, stem: str, rect: bool, results: dict
) -> None:
    """ultralytics' predict on an ONNX file; saves detections, the fed input and raw output."""
    from ultralytics import YOLO

    yolo = YOLO(str(model_path), task="detect")
    args = {
        "conf": 0.25,
        "iou": 0.7,
        "imgsz": 640,
        "max_det": 300,
        "verbose": False,
        "save": False,
        "rect": rect,
    }
    yolo.predict(str(image), **args)  # builds the predictor
    seen = {}
    predictor = yolo.predictor
    inference = predictor.inference

    def spy(im, *a, **k):
        y = inference(im, *a, **k)
        seen["input"] = im.detach().cpu().numpy()
        first = y[0] if isinstance(y, tuple | list) else y
        seen["raw"] = np.asarray(first.cpu().numpy() if hasattr(first, "cpu") else first)
        return y

    predictor.inference = spy
    result = yolo.predict(str(image), **args)[0]
    boxes = result.boxes
    np.save(out / f"{stem}_input.npy", seen["input"])
    np.save(out / f"{stem}_raw.npy", seen["raw"])
    # The same input through ONNX Runtime directly: must give the same raw output.
    sess = session(model_path)
    raw = sess.run(None, {sess.get_inputs()[0].name: seen["input"]})[0]
    record = {
        "model": model_path.name,
        "photo": name,
        "orig_shape_hw": list(result.orig_shape),
        "input_shape": list(seen["input"].shape),
        "raw_shape": list(seen["raw"].shape),
        "predict_args": args,
        "boxes_xyxy": boxes.xyxy.tolist(),
        "conf": boxes.conf.tolist(),
        "cls": [int(c) for c in boxes.cls.tolist()],
        "ort_raw_max_abs_diff": float(np.abs(raw - seen["raw"]).max()),
    }
    dump(out / f"{stem}.json", record)
    results[stem] = {
        "n": len(record["cls"]),
        "classes": sorted(set(record["cls"])),
        "input_shape": record["input_shape"],
        "raw_shape": record["raw_shape"],
        "ort_raw_max_abs_diff": record["ort_raw_max_abs_diff"],
    }


def step_yolo(out: Path, images: dict, summary: dict) -> None:
    import torch
    from ultralytics import YOLO

    t0 = time.perf_counter()
    torch.manual_seed(0)
    yolo = YOLO("yolov8n.yaml")
    net = yolo.model.eval()
    calibration = torch.cat([letterboxed(photo(n), auto=False) for n in CALIBRATION])
    n_bn = recalibrate_batchnorm(net, net, [calibration])
    tuning = plant_yolo(net)
    tuning["batchnorm_layers"] = n_bn
    tuning["calibration"] = f"{', '.join(CALIBRATION)}: one batch, square letterbox 640, /255"
    summary["yolo_tuning"] = tuning
    summary["timings_s"]["yolo_build_tune"] = round(time.perf_counter() - t0, 2)

    exports = {"yolov8n.onnx": {"nms": False}, "yolov8n_nms.onnx": {"nms": True, "batch": 16}}
    for fname, extra in exports.items():
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            cwd = os.getcwd()
            os.chdir(tmp)
            try:
                try:
                    made = yolo.export(
                        format="onnx",
                        imgsz=640,
                        dynamic=True,
                        simplify=False,
                        opset=17,
                        conf=0.25,
                        iou=0.7,
                        **extra,
                    )
                    summary.setdefault("notes", []).append(f"{fname}: dynamic=True, {extra}")
                except Exception as error:  # report, then retry without dynamic
                    if not extra["nms"]:
                        raise
                    summary.setdefault("notes", []).append(
                        f"{fname}: dynamic+nms failed ({error!r}); exported without dynamic"
                    )
                    made = yolo.export(
                        format="onnx",
                        imgsz=640,
                        dynamic=False,
                        simplify=False,
                        opset=17,
                        conf=0.25,
                        iou=0.7,
                        nms=True,
                    )
            finally:
                os.chdir(cwd)
            shutil.move(str(Path(tmp) / made), out / fname)
        summary["timings_s"][f"export_{fname}"] = round(time.perf_counter() - t0, 2)
        summary["onnx"][fname] = onnx_io(out / fname)

    t0 = time.perf_counter()
    for fname in exports:
        prefix = fname.removesuffix(".onnx")
        for name in PHOTOS:
            for rect, suffix in ((True, ""), (False, "_square")):
                predict_json(
                    out / fname,
                    name,
                    images[name],
                    out,
                    f"{prefix}_{name}{suffix}",
                    rect,
                    summary["detections"],
                )
    # Batches: the plain export with two photos at once; the NMS one (loop unrolled to batch 16).
    for fname in exports:
        sess = session(out / fname)
        a = np.load(out / f"yolov8n_{PHOTOS[0]}_square_input.npy")
        b = np.load(out / f"yolov8n_{PHOTOS[1]}_square_input.npy")
        both = sess.run(None, {"images": np.concatenate([a, b])})[0]
        ones = [sess.run(None, {"images": x})[0] for x in (a, b)]
        summary.setdefault("batch_checks", {})[fname] = float(
            max(np.abs(both[i : i + 1] - ones[i]).max() for i in range(2))
        )
    summary["timings_s"]["yolo_predict"] = round(time.perf_counter() - t0, 2)


# --------------------------------------------------------------------------- Faster R-CNN


def frcnn_input(rgb: np.ndarray):
    """Photo stretched to 320×320 (cv2 INTER_LINEAR), RGB, /255: a 3×H×W float tensor."""
    import cv2
    import torch

    small = cv2.resize(rgb, (FRCNN_SIZE, FRCNN_SIZE), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(small.astype(np.float32) / 255).permute(2, 0, 1).contiguous()


def build_frcnn(summary: dict):
    """Random Faster R-CNN: BatchNorm statistics recomputed (else its features vanish, ~1e-8),
    cls_score weight ×15, background bias raised in steps of 0.5 until chelsea keeps 5..30
    boxes. Coffee then keeps the maximum, 100 (detections_per_img): its random features are
    much stronger than chelsea's, so no single raise gives both a few boxes."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=91, box_score_thresh=0.05
    ).eval()
    batch = model.transform([frcnn_input(photo(n)) for n in CALIBRATION])[0].tensors
    n_bn = recalibrate_batchnorm(model, model.backbone, [batch])
    cls = model.roi_heads.box_predictor.cls_score
    inputs = [frcnn_input(photo(n)) for n in PHOTOS]
    counts = []
    with torch.no_grad():
        cls.weight.mul_(15)
        bias0 = float(cls.bias[0])
        for raise_ in np.arange(0, 10.01, 0.5):
            cls.bias[0] = bias0 + raise_
            n = [len(model([x])[0]["boxes"]) for x in inputs]
            counts.append({"background_bias_raise": float(raise_), "detections": n})
            if 5 <= n[0] <= 30 and min(n) >= 5:
                break
        else:
            raise RuntimeError(f"no background bias gives chelsea 5..30 boxes: {counts}")
    summary["frcnn_tuning"] = {
        "batchnorm_layers": n_bn,
        "cls_score_weight_scale": 15,
        "search": counts,
    }
    return model


def layer_tensor_name(model_path: Path, x, wanted: np.ndarray) -> dict:
    """The ONNX tensor equal to `wanted` (torch's FPN level "0"): every float intermediate under
    /backbone is exposed as an output and compared."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    names = [
        o
        for n in model.graph.node
        for o in n.output
        if o.startswith("/backbone/")
        and n.op_type not in {"Shape", "Constant", "Gather", "Unsqueeze", "Concat", "Cast"}
    ]
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = sess.run(names, {"image": x})
    best = None
    for name, v in zip(names, values, strict=True):
        if v.shape == wanted.shape:
            diff = float(np.abs(v - wanted).max())
            if best is None or diff < best[1]:
                best = (name, diff)
    return {"onnx_tensor": best[0], "max_abs_diff_vs_torch": best[1]}


def step_frcnn(out: Path, summary: dict):
    import torch

    t0 = time.perf_counter()
    model = build_frcnn(summary)
    summary["timings_s"]["frcnn_build_tune"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    path = out / "frcnn.onnx"
    x = frcnn_input(photo(PHOTOS[0]))
    torch.onnx.export(
        model,
        ([x],),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["image"],
        output_names=["boxes", "labels", "scores"],
    )
    summary["timings_s"]["frcnn_export"] = round(time.perf_counter() - t0, 2)
    summary["onnx"]["frcnn.onnx"] = onnx_io(path)
    t0 = time.perf_counter()
    sess = session(path)
    for name in PHOTOS:
        x = frcnn_input(photo(name))
        np.save(out / f"frcnn_{name}_input.npy", x.numpy())
        with torch.no_grad():
            ref = {k: v.numpy() for k, v in model([x])[0].items()}
        boxes, labels, scores = sess.run(None, {"image": x.numpy()})
        same = len(labels) == len(ref["labels"])
        record = {
            "photo": name,
            "input": "cv2.resize to 320×320 INTER_LINEAR, RGB, /255, 3×H×W",
            "boxes_xyxy": ref["boxes"].tolist(),
            "labels": ref["labels"].tolist(),
            "scores": ref["scores"].tolist(),
            "ort_count": len(labels),
            "ort_labels_equal": bool(same and (labels == ref["labels"]).all()),
            "ort_max_abs_diff_boxes": float(np.abs(boxes - ref["boxes"]).max()) if same else None,
            "ort_max_abs_diff_scores": float(np.abs(scores - ref["scores"]).max())
            if same
            else None,
        }
        dump(out / f"frcnn_{name}.json", record)
        summary["detections"][f"frcnn_{name}"] = {
            "n": len(record["labels"]),
            "classes": sorted(set(record["labels"])),
            **{k: record[k] for k in record if k.startswith("ort_")},
        }
    summary["timings_s"]["frcnn_check"] = round(time.perf_counter() - t0, 2)
    return model


class RecordingTarget:
    """FasterRCNNBoxScoreTarget that keeps every score it gives (one per masked forward)."""

    def __init__(self, target, scores: list):
        self.target, self.scores = target, scores

    def __call__(self, outputs):
        value = self.target(outputs)
        self.scores.append(float(value))
        return value


def step_scorecam(out: Path, model, summary: dict) -> None:
    import torch
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

    t0 = time.perf_counter()
    name = PHOTOS[0]
    x = frcnn_input(photo(name))[None]
    with torch.no_grad():
        top = model(x)[0]
    box, label = top["boxes"][0].numpy(), int(top["labels"][0])
    scores: list[float] = []
    target = RecordingTarget(FasterRCNNBoxScoreTarget(labels=[label], bounding_boxes=[box]), scores)
    cam = ScoreCAM(model, target_layers=[model.backbone], reshape_transform=lambda f: f["0"])
    cam.batch_size = 16
    gray = cam(input_tensor=x, targets=[target])[0]
    layer = cam.activations_and_grads.activations[0]
    layer = layer.numpy() if hasattr(layer, "numpy") else np.asarray(layer)
    with torch.no_grad():
        direct = model.backbone(model.transform(list(x))[0].tensors)["0"].numpy()
    np.save(out / f"frcnn_scorecam_{name}.npy", gray)
    np.save(out / f"frcnn_layer_{name}.npy", layer)
    np.save(out / f"frcnn_scorecam_{name}_scores.npy", np.asarray(scores, np.float32))
    record = {
        "photo": name,
        "input": "frcnn_chelsea_input.npy, batched 1×3×320×320",
        "target": "FasterRCNNBoxScoreTarget(labels=[label], bounding_boxes=[box]), iou 0.5",
        "box_xyxy": box.tolist(),
        "label": label,
        "score": float(top["scores"][0]),
        "target_layers": "[model.backbone]",
        "reshape_transform": 'lambda f: f["0"]',
        "layer": 'FPN level "0" (backbone.fpn.layer_blocks[0] output, after the top-down add)',
        "layer_shape": list(layer.shape),
        "batch_size": 16,
        "cam_shape": list(gray.shape),
        "hook_vs_direct_max_abs_diff": float(np.abs(layer - direct).max()),
        "n_target_scores": len(scores),
        "n_scores_nonzero": int(np.count_nonzero(scores)),
        **layer_tensor_name(out / "frcnn.onnx", x[0].numpy(), layer),
    }
    dump(out / f"frcnn_scorecam_{name}.json", record)
    summary["scorecam"] = {
        k: record[k]
        for k in (
            "box_xyxy",
            "label",
            "layer_shape",
            "onnx_tensor",
            "max_abs_diff_vs_torch",
            "n_scores_nonzero",
        )
    }
    summary["timings_s"]["scorecam"] = round(time.perf_counter() - t0, 2)


# --------------------------------------------------------------------------- DETR


def step_detr(out: Path, summary: dict) -> None:
    import torch
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    t0 = time.perf_counter()
    torch.manual_seed(0)
    backbone = ResNetConfig(
        embedding_size=16,
        hidden_sizes=[16, 32, 64, 128],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=["stage4"],
    )
    config = DetrConfig(
        backbone_config=backbone,
        num_queries=20,
        num_labels=10,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
    )
    model = DetrForObjectDetection(config).eval()

    class Heads(torch.nn.Module):
        def __init__(self, detr):
            super().__init__()
            self.detr = detr

        def forward(self, pixel_values):
            o = self.detr(pixel_values=pixel_values)
            return o.logits, o.pred_boxes

    processor = DetrImageProcessor(do_resize=False, do_pad=False)
    rgb = frcnn_input(photo(PHOTOS[0])).permute(1, 2, 0).numpy()
    pixels = processor(images=rgb, do_rescale=False, return_tensors="pt")["pixel_values"]
    np.save(out / "detr_chelsea_input.npy", pixels.numpy())
    path = out / "detr.onnx"
    kwargs = {
        "input_names": ["pixel_values"],
        "output_names": ["logits", "pred_boxes"],
        "opset_version": 17,
    }
    heads = Heads(model).eval()  # a new Module is in train mode; export would restore that
    torch.onnx.export(
        heads,
        (pixels,),
        str(path),
        dynamo=True,
        dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch")}},
        **kwargs,
    )
    summary["onnx"]["detr.onnx"] = onnx_io(path)
    with torch.no_grad():
        o = model(pixel_values=pixels)
    post = processor.post_process_object_detection(
        o, threshold=0.0, target_sizes=[(FRCNN_SIZE, FRCNN_SIZE)]
    )[0]
    pair = torch.cat([pixels, pixels.flip(3)])
    with torch.no_grad():
        pair_ref = model(pixel_values=pair)
    logits, boxes = session(path).run(None, {"pixel_values": pair.numpy()})
    record = {
        "photo": PHOTOS[0],
        "export": "torch.onnx.export(dynamo=True, opset 17, batch dynamic)",
        "input": "chelsea stretched to 320×320 (as frcnn), DetrImageProcessor(do_resize=False, "
        "do_pad=False) ImageNet mean/std",
        "post_process": "post_process_object_detection(threshold=0.0, target_sizes=[(320, 320)])",
        "boxes_xyxy": post["boxes"].tolist(),
        "labels": post["labels"].tolist(),
        "scores": post["scores"].tolist(),
        "logits": o.logits[0].tolist(),
        "pred_boxes_cxcywh": o.pred_boxes[0].tolist(),
        "ort_batch2_max_abs_diff_logits": float(np.abs(logits - pair_ref.logits.numpy()).max()),
        "ort_batch2_max_abs_diff_boxes": float(np.abs(boxes - pair_ref.pred_boxes.numpy()).max()),
    }
    dump(out / "detr_chelsea.json", record)
    summary["detections"]["detr_chelsea"] = {
        "n": len(record["labels"]),
        "classes": sorted(set(record["labels"])),
        **{k: record[k] for k in record if k.startswith("ort_")},
    }
    summary["timings_s"]["detr"] = round(time.perf_counter() - t0, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/det"))
    parser.add_argument(
        "--only", default=",".join(STEPS), help="comma-separated steps (scorecam needs frcnn)"
    )
    args = parser.parse_args()
    steps = set(args.only.split(","))
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    import cv2

    images = {}
    for name in PHOTOS:
        images[name] = out / f"{name}.png"
        cv2.imwrite(str(images[name]), photo(name)[..., ::-1])
    summary: dict = {"timings_s": {}, "onnx": {}, "detections": {}}
    if "yolo" in steps:
        step_yolo(out, images, summary)
    if steps & {"frcnn", "scorecam"}:
        model = step_frcnn(out, summary)
        if "scorecam" in steps:
            step_scorecam(out, model, summary)
    if "detr" in steps:
        step_detr(out, summary)
    dump(out / "summary.json", summary)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
