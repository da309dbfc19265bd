"""Clustered Score-CAM against a plain re-implementation from its definition: k-means (OpenCV,
seeded) over the channels' normalised maps, one masked forward per cluster with the mean of its
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


def _oracle(x: np.ndarray, acts: np.ndarray, model, c: int, clusters: int) -> np.ndarray:
    size = x.shape[2:]
    ups, norms, data = [], [], []
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
    cv2.setRNGSeed(0)
    _, labels, _ = cv2.kmeans(
        np.asarray(data, np.float32),
        clusters,
        None,
        (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-5),
        3,
        cv2.KMEANS_PP_CENTERS,
    )
    labels = labels.ravel()
    cam = torch.zeros(size, dtype=torch.float64)
    for g in np.unique(labels):
        members = np.flatnonzero(labels == g)
        mask = torch.stack([norms[m] for m in members]).mean(0)
        out = torch.from_numpy(model((torch.from_numpy(x).double() * mask).float().numpy()))
        score = torch.softmax(out.double(), dim=1)[0, c]
        for m in members:
            cam += score * ups[m]
    cam = torch.relu(cam)
    return ((cam - cam.min()) / (cam.max() - cam.min())).numpy().astype(np.float32)


def test_clustered_scorecam_matches_its_definition(default_explainer, chelsea):
    ex = default_explainer
    x = ex.preprocess(chelsea)[1]
    acts = ex.forwards.activations(x)
    got = ex.explain_one(chelsea, method=ClusterMethod(clusters=16))
    want = _oracle(x, acts, ex.forwards.scores, got.class_id, 16)
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
