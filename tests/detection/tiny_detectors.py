"""Small detectors in each output layout a decoder reads, exported by PyTorch's own ONNX
exporter: a convolutional backbone (its last stage is the layer methods' target) and a head
whose anchors predict boxes on a 16×16 grid of a 64×64 input."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

SIZE, GRID, CLASSES = 64, 16, 3
STRIDE = SIZE // GRID
LAYER = "features"  # the backbone's output tensor, named in every export
LAYOUTS = ("yolov8", "yolov5", "end2end", "torchvision", "detr")
KEPT = 20  # detections an end-to-end graph reports


class TinyDetector(nn.Module):
    def __init__(self, layout: str, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.layout = layout
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 12, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Conv2d(12, 5 + CLASSES, 1)
        with torch.no_grad():
            for conv in (self.backbone[0], self.backbone[2]):
                conv.weight.mul_(2.5)
            self.head.weight.mul_(20.0)
            self.head.bias[5:] = -2.0
        ys, xs = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
        self.register_buffer("grid", torch.stack([xs, ys]).reshape(1, 2, -1).float())

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.backbone(x)
        h = self.head(features).flatten(2)  # N × (5 + C) × A
        xy = (torch.sigmoid(h[:, :2]) + self.grid) * STRIDE
        wh = torch.exp(h[:, 2:4].clamp(-3.0, 1.5)) * STRIDE * 2
        return xy, wh, torch.sigmoid(h[:, 4:5]), torch.sigmoid(h[:, 5:])

    def reported(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The KEPT best anchors: boxes (N×K×4, x1 y1 x2 y2), scores, labels (as floats)."""
        xy, wh, _, cls = self.heads(x)
        scores, labels = cls.max(dim=1)
        best = scores.topk(KEPT, dim=1).indices
        corners = torch.cat([xy - wh / 2, xy + wh / 2], 1).transpose(1, 2)
        boxes = torch.gather(corners, 1, best[..., None].expand(-1, -1, 4))
        return boxes, torch.gather(scores, 1, best), torch.gather(labels, 1, best).float()

    def forward(self, x: torch.Tensor):
        if self.layout == "torchvision":
            boxes, scores, labels = self.reported(x[None])
            return boxes[0], labels[0].long(), scores[0]
        if self.layout == "end2end":
            boxes, scores, labels = self.reported(x)
            return torch.cat([boxes, scores[..., None], labels[..., None]], 2)
        xy, wh, objectness, cls = self.heads(x)
        if self.layout == "yolov8":
            return torch.cat([xy, wh, cls], 1)
        if self.layout == "yolov5":
            return torch.cat([xy, wh, objectness, cls], 1).transpose(1, 2)
        logits = torch.logit(torch.cat([cls, 1 - objectness], 1).clamp(1e-4, 1 - 1e-4))
        keep = torch.arange(0, GRID * GRID, GRID * GRID // KEPT)[:KEPT]
        boxes = torch.cat([xy, wh], 1)[..., keep] / SIZE
        return logits[..., keep].transpose(1, 2), boxes.transpose(1, 2)


OUTPUTS = {
    "yolov8": ["output0"],
    "yolov5": ["output0"],
    "end2end": ["output0"],
    "torchvision": ["boxes", "labels", "scores"],
    "detr": ["logits", "pred_boxes"],
}


def export(layout: str, path: Path, seed: int = 0) -> Path:
    """The detector of `layout` as an ONNX file with a free batch axis (torchvision's takes
    one 3×H×W image), its backbone output named `features`."""
    model = TinyDetector(layout, seed).eval()
    unbatched = layout == "torchvision"
    example = torch.rand(3, SIZE, SIZE) if unbatched else torch.rand(1, 3, SIZE, SIZE)
    names = OUTPUTS[layout]
    axes = {} if unbatched else {"images": {0: "batch"}, **{n: {0: "batch"} for n in names}}
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["images"],
            output_names=names,
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    _name_features(path)
    return path


def _name_features(path: Path) -> None:
    """Rename the backbone's last ReLU output to `features` (what --layer names)."""
    import onnx

    model = onnx.load(str(path))
    relus = [n for n in model.graph.node if n.op_type == "Relu"]
    old = relus[1].output[0]
    for node in model.graph.node:
        node.input[:] = [LAYER if i == old else i for i in node.input]
        node.output[:] = [LAYER if o == old else o for o in node.output]
    onnx.save(model, str(path))
