"""The relatives of Score-CAM that mask the input with the layer's channels, each a small
variant of `ScoreCam` (one hook), and EigenCAM, which needs no forward."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .engine import (
    PAPER,
    TORCHCAM,
    Attribution,
    Preset,
    ScoreCam,
    ScoreFn,
    Scores,
    at_least_one,
    form_cam,
)


class FasterScoreCam(ScoreCam):
    """Faster Score-CAM: only the `channels` maps with the largest spatial standard deviation.

    As tf-keras-vis's ``max_N``; every other channel weighs 0. Cost: `channels` forwards.
    """

    name = "faster-scorecam"
    scores_constant = False

    def __init__(
        self, preset: Preset | str = PAPER, batch_size: int = 8, channels: int = 64
    ) -> None:
        super().__init__(preset, batch_size)
        self.channels = at_least_one("channels", channels)

    def select(self, activations: NDArray[np.float32], varying: NDArray[np.bool_]) -> NDArray:
        spread = activations.reshape(activations.shape[0], -1).std(axis=1)
        spread[~varying] = -1.0
        order = np.argsort(-spread, kind="stable")[: self.channels]
        return np.sort(order[spread[order] > 0])


class ClusterScoreCam(ScoreCam):
    """Clustered Score-CAM: the normalised activation maps are grouped into `channels`
    clusters, each cluster is one masked forward, and every channel gets its cluster's score.
    Then weights and the map as the preset says. Cost: `channels` forwards, like Faster
    Score-CAM, but every channel counts.

    Giving channel k its cluster's score instead of its own moves the map by
    (s_k − s) · A_k, which grows with the channel's energy ‖A_k‖². So the clusters are found
    by k-means weighted by that energy (k-means++ seeding and Lloyd iterations, seeded, the
    best of `attempts` runs), and each cluster's mask is the energy-weighted mean of its
    members': the channels that shape the map get tight clusters and masks like their own.
    """

    name = "cluster-scorecam"
    scores_constant = False

    def __init__(
        self,
        preset: Preset | str = PAPER,
        batch_size: int = 8,
        channels: int = 64,
        seed: int = 0,
        attempts: int = 3,
    ) -> None:
        super().__init__(preset, batch_size)
        self.channels = at_least_one("channels", channels)
        self.seed = seed
        self.attempts = at_least_one("attempts", attempts)

    def group(
        self, flat: NDArray[np.float32], scaled: NDArray[np.float32]
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
        if flat.shape[0] <= self.channels:
            return super().group(flat, scaled)
        data = scaled.reshape(scaled.shape[0], -1).astype(np.float64)
        energy = np.square(flat, dtype=np.float64).sum(axis=1) + 1e-12
        runs = [
            weighted_kmeans(data, energy, self.channels, (self.seed, attempt))
            for attempt in range(self.attempts)
        ]
        labels = min(runs, key=lambda found: found[1])[0]
        used, group = np.unique(labels, return_inverse=True)  # no empty cluster
        first = np.array([np.flatnonzero(group == g)[0] for g in range(used.size)])
        sums = np.zeros((used.size, data.shape[1]))
        np.add.at(sums, group, data * energy[:, None])
        means = sums / np.bincount(group, weights=energy, minlength=used.size)[:, None]
        return first, group, means.astype(np.float32).reshape(used.size, *scaled.shape[1:])


def weighted_kmeans(
    data: NDArray[np.float64],
    weights: NDArray[np.float64],
    k: int,
    seed: tuple[int, int],
    iterations: int = 100,
) -> tuple[NDArray[np.int64], float]:
    """Each row's cluster and the weighted inertia, by k-means minimising
    Σ weight · ‖row − its centre‖² (k-means++ seeding in proportion to weight × distance²)."""
    rng = np.random.default_rng(seed)
    centres = data[[rng.choice(data.shape[0], p=weights / weights.sum())]]
    nearest = _distances(data, centres)[:, 0]
    while centres.shape[0] < k and (weights * nearest).sum() > 0:
        odds = weights * nearest
        pick = data[rng.choice(data.shape[0], p=odds / odds.sum())]
        centres = np.vstack([centres, pick])
        nearest = np.minimum(nearest, _distances(data, pick[None])[:, 0])
    labels = np.full(data.shape[0], -1)
    for _ in range(iterations):
        found = _distances(data, centres).argmin(axis=1)
        if np.array_equal(found, labels):
            break
        labels = found
        for c in np.unique(labels):
            members = labels == c
            centres[c] = weights[members] @ data[members] / weights[members].sum()
    spread = _distances(data, centres)[np.arange(data.shape[0]), labels]
    return labels, float(weights @ spread)


def _distances(data: NDArray[np.float64], centres: NDArray[np.float64]) -> NDArray[np.float64]:
    """Squared distances of every row to every centre."""
    found = (data**2).sum(1)[:, None] - 2 * data @ centres.T + (centres**2).sum(1)[None]
    return np.maximum(found, 0.0)


class SSCam(ScoreCam):
    """SS-CAM, Smoothed Score-CAM (arXiv 2006.14255), as torch-cam computes it.

    Each normalised mask is scored `samples` times with Gaussian noise of standard deviation
    `std` added to it; a channel's score is the mean. The noise of (channel k, sample s) is
    drawn from a generator seeded with (seed, k, s), so maps do not depend on the batch size.
    Constant channels (a zero mask plus noise) are scored like the others unless the preset
    skips them. Cost: `samples` forwards per channel.
    """

    name = "sscam"
    perturbs_linearly = False  # the noise is drawn at input resolution
    dedupe = False  # and per channel

    def __init__(
        self,
        preset: Preset | str = TORCHCAM,
        batch_size: int = 8,
        samples: int = 35,
        std: float = 2.0,
        seed: int = 0,
    ) -> None:
        super().__init__(preset, batch_size)
        self.samples = at_least_one("samples", samples)
        self.std = std
        self.seed = seed

    def perturb(
        self, masks: NDArray[np.float32], channels: NDArray[np.int64], sample: int
    ) -> NDArray[np.float32]:
        for i, channel in enumerate(channels):
            rng = np.random.default_rng((self.seed, int(channel), sample))
            masks[i] += rng.standard_normal(masks.shape[1:], dtype=np.float32) * np.float32(
                self.std
            )
        return masks


class ISCam(ScoreCam):
    """IS-CAM, Integrated Score-CAM (arXiv 2010.03023), as torch-cam computes it.

    Sample s (0-based) scores the mask scaled by Σ_{i≤s} (i+1)/N, N = `samples`; a channel's
    score is the mean over the samples. Cost: `samples` forwards per channel.
    """

    name = "iscam"

    def __init__(
        self, preset: Preset | str = TORCHCAM, batch_size: int = 8, samples: int = 10
    ) -> None:
        super().__init__(preset, batch_size)
        self.samples = at_least_one("samples", samples)

    def coefficient(self, sample: int) -> float:
        """The scale of the masks of sample `sample`: Σ_{i=0}^{sample} (i+1)/N."""
        return sum(i + 1 for i in range(sample + 1)) / self.samples

    def perturb(
        self, masks: NDArray[np.float32], channels: NDArray[np.int64], sample: int
    ) -> NDArray[np.float32]:
        masks *= np.float32(self.coefficient(sample))
        return masks


class EigenCam(Attribution):
    """EigenCAM: the first principal component of the activations; no masked forwards.

    The activations (h·w positions × K channels) are centred per channel and projected on
    their first right singular vector; the sign is chosen so that the projection correlates
    positively with the mean activation map (SVD leaves it arbitrary). The map is class-
    agnostic: every target gets the same one.
    """

    name = "eigencam"

    def score(
        self,
        x: NDArray[np.float32],
        activations: NDArray[np.float32],
        model: ScoreFn,
        targets: list[int],
        clean_output: NDArray[np.float32],
        output_kind: str = "logits",
        progress: object = None,
        maps_model: object = None,
    ) -> Scores:
        k = activations.shape[0]
        positions = activations.reshape(k, -1).T.astype(np.float64)
        centred = positions - positions.mean(axis=0)
        if not np.any(centred):
            direction = np.zeros(k)
        else:
            direction = np.linalg.svd(centred, full_matrices=False)[2][0]
            if np.dot(centred @ direction, positions.mean(axis=1)) < 0:
                direction = -direction
        values = np.repeat(direction[:, None], len(targets), axis=1)
        return Scores(values, seconds={"masks": 0.0, "forwards": 0.0})

    def weights(self, values: NDArray[np.float64]) -> NDArray[np.float32]:
        return np.nan_to_num(values).astype(np.float32)

    def cam(
        self,
        activations: NDArray[np.float32],
        weights: NDArray[np.float32],
        size: tuple[int, int],
        eigen: bool = False,
        layer_part: bool = False,
    ) -> tuple[NDArray[np.float32], bool]:
        means = activations.reshape(activations.shape[0], -1).mean(axis=1)
        centred = activations - means[:, None, None].astype(np.float32)
        return form_cam(centred, weights, size, self.preset, layer_part=layer_part)
