"""Clustered Score-CAM against a plain re-implementation from its definition: the channels'
normalised maps clustered by k-means weighted by each channel's energy ‖A_k‖² (checked here to
be a fixed point of weighted Lloyd iterations, and no worse than unweighted OpenCV k-means on
the weighted objective), one masked forward per cluster with the energy-weighted mean of its
members' masks, every channel weighted by its cluster's score, the paper's map."""

from __future__ import annotations

import cv2
import numpy as np
import oracles
import torch
import torch.nn.functional as F

from scorecam_onnx import ClusterScoreCam as ClusterMethod
from scorecam_onnx import Explainer, ExplainOptions, Runtime
from scorecam_onnx.cam.methods import ClusterScoreCam


def _normalised(x: np.ndarray, acts: np.ndarray):
    """Each varying channel's upsampled map, its min-max mask, and its low-resolution map
    normalised with the upsampled map's range (the paper preset's), with its energy."""
    size = x.shape[2:]
    ups, norms, data, energy = [], [], [], []
    for k in range(acts.shape[0]):
        sal = F.interpolate(
            torch.from_numpy(acts[k])[None, None], size=size, mode="bilinear", align_corners=False
        )[0, 0].double()
        if sal.max() == sal.min():
            continue
        low, span = sal.min(), sal.max() - sal.min()
        ups.append(sal)
        norms.append((sal - low) / span)
        data.append(((torch.from_numpy(acts[k]).double() - low) / span).numpy().ravel())
        energy.append(float((acts[k].astype(np.float64) ** 2).sum()))
    return ups, norms, np.asarray(data), np.asarray(energy)


def _oracle(x, ups, norms, energy, labels, model, c: int) -> np.ndarray:
    cam = torch.zeros(x.shape[2:], dtype=torch.float64)
    for g in np.unique(labels):
        members = np.flatnonzero(labels == g)
        weights = torch.tensor(energy[members] + 1e-12)
        mask = (torch.stack([norms[m] for m in members]) * weights[:, None, None]).sum(0)
        mask = mask / weights.sum()
        out = torch.from_numpy(model((torch.from_numpy(x).double() * mask).float().numpy()))
        score = torch.softmax(out.double(), dim=1)[0, c]
        for m in members:
            cam += score * ups[m]
    cam = torch.relu(cam)
    return ((cam - cam.min()) / (cam.max() - cam.min())).numpy().astype(np.float32)


def _weighted_inertia(data, energy, labels):
    total = 0.0
    for g in np.unique(labels):
        members = labels == g
        centre = energy[members] @ data[members] / energy[members].sum()
        total += float(energy[members] @ ((data[members] - centre) ** 2).sum(1))
    return total


def test_clustered_scorecam_matches_its_definition(default_explainer, chelsea):
    ex = default_explainer
    x = ex.preprocess(chelsea)[1]
    acts = ex.forwards.activations(x)
    ups, norms, data, energy = _normalised(x, acts)
    flat = acts.reshape(acts.shape[0], -1)
    varying = flat.max(axis=1) > flat.min(axis=1)
    engine = ClusterScoreCam(channels=16)
    _, labels, _ = engine.group(flat[varying], data.reshape(-1, *acts.shape[1:]).astype(np.float32))
    # The clusters are a fixed point of weighted Lloyd: every channel is nearest its own
    # cluster's energy-weighted centre.
    centres = {
        g: energy[labels == g] @ data[labels == g] / energy[labels == g].sum() for g in set(labels)
    }
    for k in range(data.shape[0]):
        distances = {g: ((data[k] - c) ** 2).sum() for g, c in centres.items()}
        assert distances[labels[k]] <= min(distances.values()) + 1e-9
    # ... and no worse on the weighted objective than OpenCV's unweighted k-means.
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-5)
    plain = cv2.kmeans(data.astype(np.float32), 16, None, criteria, 3, cv2.KMEANS_PP_CENTERS)[1]
    ours, theirs = (
        _weighted_inertia(data, energy, labels),
        _weighted_inertia(data, energy, plain.ravel()),
    )
    assert ours < theirs
    got = ex.explain_one(chelsea, method=ClusterMethod(clusters=16))
    want = _oracle(x, ups, norms, energy, labels, ex.forwards.scores, got.class_id)
    assert got.forwards == 17  # the unmasked forward and one per cluster
    assert float(np.abs(got.saliency_input - want).max()) <= 1e-4
    assert oracles.correlation(got.saliency_input, want) > 0.99999


def test_the_same_seed_gives_the_same_map_at_any_batch_size(default_explainer, chelsea):
    one = default_explainer.explain_one(
        chelsea, None, ClusterMethod(clusters=24), ExplainOptions(batch_size=1)
    )
    many = default_explainer.explain_one(
        chelsea, None, ClusterMethod(clusters=24), ExplainOptions(batch_size=64)
    )
    assert float(np.abs(one.saliency - many.saliency).max()) <= 1e-6


def test_as_many_clusters_as_channels_is_exact_scorecam(tiny_bundle):
    from test_engine import _tiny_image

    tiny = Explainer(tiny_bundle, Runtime(provider="cpu"))
    image = _tiny_image()
    exact = tiny.explain_one(image, method="scorecam")
    clustered = tiny.explain_one(image, method=ClusterMethod(clusters=64))
    assert np.array_equal(exact.saliency, clustered.saliency)
    assert ClusterScoreCam(channels=3).name == "cluster-scorecam"
