"""Plain re-implementations of Score-CAM, written from its definition one step at a time.

They share no code with the engine: PyTorch does the interpolation, a loop does one channel
at a time, and each preset follows its reference implementation's own order of operations.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

Model = Callable[[np.ndarray], np.ndarray]  # N×3×H×W float32 → N×C logits


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def paper(x: np.ndarray, acts: np.ndarray, model: Model, c: int) -> np.ndarray:
    """The authors' code: probability-weighted sum of upsampled maps at input resolution."""
    size = x.shape[2:]
    cam = torch.zeros(size, dtype=torch.float64)
    xt = _t(x)
    for k in range(acts.shape[0]):
        sal = F.interpolate(
            _t(acts[k])[None, None], size=size, mode="bilinear", align_corners=False
        )[0, 0]
        if sal.max() == sal.min():
            continue
        norm = (sal - sal.min()) / (sal.max() - sal.min())
        out = _t(model((xt * norm).numpy()))
        score = torch.softmax(out.double(), dim=1)[0, c]
        cam += score * sal.double()
    cam = torch.relu(cam)
    if cam.max() == cam.min():
        return np.zeros(size, np.float32)
    return ((cam - cam.min()) / (cam.max() - cam.min())).numpy().astype(np.float32)


def grad_cam_style(
    x: np.ndarray, acts: np.ndarray, model: Model, c: int, eigen: bool = False
) -> np.ndarray:
    """pytorch-grad-cam 1.5 ScoreCAM with the default (raw logit) target; `eigen`: its
    eigen_smooth (the weighted activations' `get_2d_projection` instead of their sum)."""
    size = x.shape[2:]
    weights = _grad_cam_weights(x, acts, model, c)
    weighted = weights[:, None, None] * acts
    cam = projection_2d(weighted) if eigen else weighted.sum(axis=0)
    return _grad_cam_image(cam, size)


def grad_cam_layers(x: np.ndarray, layers: list[np.ndarray], model: Model, c: int) -> np.ndarray:
    """pytorch-grad-cam ScoreCAM with several target layers: per layer its own weights,
    ReLU, scale_cam_image to the input size; `aggregate_multi_layers`: ReLU, the mean,
    scale_cam_image again."""
    size = x.shape[2:]
    per = []
    for acts in layers:
        cam = (_grad_cam_weights(x, acts, model, c)[:, None, None] * acts).sum(axis=0)
        cam = np.maximum(cam, 0) - np.maximum(cam, 0).min()
        cam = cam / (1e-7 + cam.max())
        per.append(cv2.resize(np.float32(cam), (size[1], size[0])))
    mean = np.maximum(np.stack(per), 0).mean(axis=0)
    mean = mean - mean.min()
    return np.float32(mean / (1e-7 + mean.max()))


def _grad_cam_weights(x: np.ndarray, acts: np.ndarray, model: Model, c: int) -> np.ndarray:
    size = x.shape[2:]
    up = torch.nn.UpsamplingBilinear2d(size=size)(_t(acts)[None])[0]
    flat = up.reshape(up.shape[0], -1)
    maxs = flat.max(dim=1).values[:, None, None]
    mins = flat.min(dim=1).values[:, None, None]
    up = (up - mins) / (maxs - mins + 1e-8)
    scores = []
    for k in range(up.shape[0]):
        out = model((_t(x) * up[k]).numpy())
        scores.append(float(out[0, c]))
    return torch.softmax(torch.tensor(scores, dtype=torch.float32), dim=-1).numpy()


def projection_2d(maps: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's `get_2d_projection` for one K×h×w stack: positions × channels,
    centred per channel, full SVD, projection on the first right singular vector."""
    maps = np.where(np.isnan(maps), 0, maps)
    positions = maps.reshape(maps.shape[0], -1).transpose()
    positions = positions - positions.mean(axis=0)
    _, _, vt = np.linalg.svd(positions, full_matrices=True)
    return (positions @ vt[0, :]).reshape(maps.shape[1:])


def aug_smoothed(
    x: np.ndarray, features: Model, model: Model, c: int | None, eigen: bool = False
) -> np.ndarray:
    """pytorch-grad-cam's aug_smooth around `grad_cam_style`: ttach's HorizontalFlip ×
    Multiply([0.9, 1, 1.1]) (identity factor first), each pass on the augmented normalised
    tensor with its own argmax when no class is given, the map flipped back, the mean."""
    cams = []
    for flip in (False, True):
        for factor in (1.0, 0.9, 1.1):
            xa = torch.flip(_t(x), dims=[3]) if flip else _t(x)
            xa = (xa * factor).numpy() if factor != 1.0 else xa.numpy()
            cls = int(np.argmax(model(xa)[0])) if c is None else c
            cam = grad_cam_style(xa, features(xa), model, cls, eigen)
            cams.append(cam[:, ::-1] if flip else cam)
    return np.mean(np.float32(cams), axis=0)


def _grad_cam_image(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """pytorch-grad-cam's BaseCAM from the weighted sum on: ReLU, scale_cam_image with the
    target size (min-max with 1e-7, cv2.resize), then ReLU and scale_cam_image again."""

    def scale(img: np.ndarray, target: tuple[int, int] | None) -> np.ndarray:
        img = img - np.min(img)
        img = img / (1e-7 + np.max(img))
        if target is not None:
            img = cv2.resize(img, target)
        return np.float32(img)

    cam = scale(np.maximum(cam, 0), (size[1], size[0]))
    cam = np.maximum(cam, 0)
    return scale(cam, None)


Tail = Callable[[np.ndarray], np.ndarray]  # N×K×h×w activations → N×C outputs
GAUSSIAN_3X3 = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float64) / 16


def reciprocam(
    acts: np.ndarray, tail: Tail, c: int, size: tuple[int, int], gaussian: bool = False
) -> np.ndarray:
    """ReciproCAM as the authors' code: one spatially masked feature map per position."""
    h, w = acts.shape[1:]
    scores = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            masked = np.zeros_like(acts)
            if not gaussian:
                masked[:, i, j] = acts[:, i, j]
            else:
                for di in (-1, 0, 1):
                    for dj in (-1, 0, 1):
                        if 0 <= i + di < h and 0 <= j + dj < w:
                            masked[:, i + di, j + dj] = acts[:, i, j] * GAUSSIAN_3X3[di + 1, dj + 1]
            out = torch.tensor(tail(masked[None].astype(np.float32))[0], dtype=torch.float64)
            scores[i, j] = float(torch.softmax(out, dim=0)[c])
    norm = (scores - scores.min()) / (scores.max() - scores.min())
    up = F.interpolate(
        torch.tensor(norm)[None, None], size=size, mode="bilinear", align_corners=False
    )
    return up[0, 0].numpy().astype(np.float32)


def ablationcam(
    acts: np.ndarray, tail: Tail, clean: np.ndarray, c: int, size: tuple[int, int]
) -> np.ndarray:
    """pytorch-grad-cam's AblationCAM: each channel ablated in turn, (y − y_k) / y."""
    value = 0.0 if acts.min() == 0 else float(acts.min()) - 1e7
    y = float(clean[c])
    weights = []
    for k in range(acts.shape[0]):
        ablated = acts.copy()
        ablated[k] = value
        weights.append((y - float(tail(ablated[None])[0, c])) / y)
    cam = (np.float32(weights)[:, None, None] * acts).sum(axis=0)
    return _grad_cam_image(cam, size)


def torchcam_style(
    x: np.ndarray, acts: np.ndarray, model: Model, c: int, out_size: tuple[int, int] | None = None
) -> np.ndarray:
    """torch-cam 0.5 ScoreCAM, upsampled to the input size as its metrics do (or to
    `out_size`)."""
    size = x.shape[2:]
    a = _t(acts).clone()
    a -= a.flatten(1).min(dim=-1).values[:, None, None]
    a /= a.flatten(1).max(dim=-1).values[:, None, None] + 1e-8
    up = F.interpolate(a[None], size=size, mode="bilinear", align_corners=False)[0]
    base = float(model(x)[0, c])
    scores = [float(model((_t(x) * up[k]).numpy())[0, c]) - base for k in range(up.shape[0])]
    w = torch.softmax(torch.tensor(scores), dim=-1)
    cam = torch.nansum(w[:, None, None] * _t(acts), dim=0)
    cam = torch.relu(cam)
    cam -= cam.min()
    cam /= cam.max() + 1e-8
    return F.interpolate(
        cam[None, None], size=out_size or size, mode="bilinear", align_corners=False
    )[0, 0].numpy()


def torchcam_layers(x: np.ndarray, layers: list[np.ndarray], model: Model, c: int) -> np.ndarray:
    """torch-cam ScoreCAM with several target layers and `fuse_cams`: each layer's
    normalised CAM resized (bilinear, align_corners=False) to the largest grid, the
    element-wise maximum; then upsampled to the input as one layer's map."""
    grid = (max(a.shape[1] for a in layers), max(a.shape[2] for a in layers))
    fused = torch.stack([_t(torchcam_style(x, a, model, c, grid)) for a in layers]).max(0)
    return F.interpolate(
        fused.values[None, None], size=x.shape[2:], mode="bilinear", align_corners=False
    )[0, 0].numpy()


ORACLES = {"paper": paper, "pytorch-grad-cam": grad_cam_style, "torchcam": torchcam_style}


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


def _torchcam_masks(acts: np.ndarray, size) -> torch.Tensor:
    a = _t(acts).clone()
    a -= a.flatten(1).min(dim=-1).values[:, None, None]
    a /= a.flatten(1).max(dim=-1).values[:, None, None] + 1e-8
    return F.interpolate(a[None], size=size, mode="bilinear", align_corners=False)[0]


def _torchcam_map(acts: np.ndarray, scores: list[float], size) -> np.ndarray:
    w = torch.softmax(torch.tensor(scores, dtype=torch.float64), dim=-1).float()
    cam = torch.relu(torch.nansum(w[:, None, None] * _t(acts), dim=0))
    cam -= cam.min()
    cam /= cam.max() + 1e-8
    return F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[
        0, 0
    ].numpy()


def sscam(x, acts, model: Model, c: int, samples: int, std: float, seed: int = 0):
    """torch-cam SSCAM; the noise of (channel k, sample s) comes from rng((seed, k, s))."""
    size = x.shape[2:]
    up = _torchcam_masks(acts, size)
    base = float(model(x)[0, c])
    scores = []
    for k in range(acts.shape[0]):
        total = 0.0
        for s in range(samples):
            noise = np.random.default_rng((seed, k, s)).standard_normal(
                tuple(size), dtype=np.float32
            ) * np.float32(std)
            total += float(model(((up[k] + _t(noise)) * _t(x)).numpy())[0, c]) - base
        scores.append(total / samples)
    return _torchcam_map(acts, scores, size)


def iscam(x, acts, model: Model, c: int, samples: int):
    """torch-cam ISCAM: the mask scaled by a running sum of (i + 1) / N."""
    size = x.shape[2:]
    up = _torchcam_masks(acts, size)
    base = float(model(x)[0, c])
    scores = []
    for k in range(acts.shape[0]):
        coeff, total = 0.0, 0.0
        for s in range(samples):
            coeff += (s + 1) / samples
            total += float(model((coeff * up[k] * _t(x)).numpy())[0, c]) - base
        scores.append(total / samples)
    return _torchcam_map(acts, scores, size)


def eigencam(x, acts):
    """pytorch-grad-cam's 2-D projection, sign fixed towards the mean map, then as `paper`."""
    k = acts.shape[0]
    reshaped = acts.reshape(k, -1).T.astype(np.float64)
    centred = reshaped - reshaped.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=True)
    projection = centred @ vt[0]
    if np.corrcoef(projection, reshaped.mean(axis=1))[0, 1] < 0:
        projection = -projection
    up = F.interpolate(
        _t(projection.reshape(acts.shape[1:]))[None, None],
        size=x.shape[2:],
        mode="bilinear",
        align_corners=False,
    )[0, 0]
    up = torch.relu(up)
    return ((up - up.min()) / (up.max() - up.min())).numpy()


def rise(explainer, image, c, masks, grid, keep, seed):
    """RISE from its definition: one masked image at a time (the engine's own masks), the
    softmax probability of class c, Σ score·M / (N·p), min-max."""
    from scorecam_onnx.cam.rise import rise_mask

    x = explainer.preprocess(image)[1]
    size = x.shape[2:]
    total = np.zeros(size, np.float64)
    for i in range(masks):
        m = rise_mask(i, size, grid, keep, seed)
        out = explainer.forwards.scores((x * m).astype(np.float32))[0].astype(np.float64)
        p = np.exp(out - out.max()) / np.exp(out - out.max()).sum()
        total += p[c] * m
    total /= masks * keep
    return (total - total.min()) / (total.max() - total.min())
