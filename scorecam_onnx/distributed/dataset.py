"""Explaining a dataset on Ray Data: an actor pool, one `Explainer` per actor, rows streamed.

A bad image is a row with an `error`, never a failed task that Ray retries. Outputs (with
`out`) are written by the actors, atomically and `<name>.json` last, so an actor killed
mid-image leaves no half set: Ray restarts it, the image is redone, and it ends with exactly
one complete set of files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..images import DEFAULT_MAX_PIXELS, find_images

RAY_MISSING = "Ray is not installed: install scorecam-onnx with the 'ray' extra"


@dataclass(frozen=True)
class ExplainSettings:
    """How each image is explained (the keyword arguments of `Explainer.explain`)."""

    method: str = "scorecam"
    preset: str | None = None
    target: list[int] = field(default_factory=list)
    top_k: int | None = None
    channels: int = 64
    samples: int | None = None
    batch_size: int | None = None
    gaussian: bool = False
    aug_smooth: bool = False
    eigen_smooth: bool = False
    layers: list[str] | None = None
    fuse: str | None = None
    region: Any = None                  # a segmentation region (H×W boolean mask)
    background: int | None = None


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError(RAY_MISSING) from None
    return ray


class ExplainActor:
    """Holds one `Explainer` (built once per actor) and explains batches of rows.

    Its settings are a class attribute of a subclass made per dataset (`config`), not
    constructor arguments: Ray keeps those in its object store and warns that a restarted
    actor could lose them.
    """

    config: tuple[str | None, dict[str, Any], str | None, dict[str, Any]]

    def __init__(self) -> None:
        from ..explainer import Explainer

        bundle, settings, out, options = self.config
        self.explainer = Explainer(bundle, **options)
        self.settings = ExplainSettings(**settings)
        self.out = Path(out) if out else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        count = len(next(iter(batch.values()))) if batch else 0
        rows = [self._one(batch, i) for i in range(count)]
        return {key: [row[key] for row in rows] for key in rows[0]} if rows else {}

    def _one(self, batch: dict[str, np.ndarray], i: int) -> dict[str, Any]:
        from ..batch import failure_reason, write_outputs
        from ..errors import ScoreCamError
        from ..images import decode_image, read_file

        path = str(batch["path"][i]) if "path" in batch else f"row {i}"
        name = str(batch["name"][i]) if "name" in batch else Path(path).stem
        row: dict[str, Any] = {"path": path, "name": name, "class_id": -1, "label": "",
                               "score": float("nan"), "forwards": 0, "seconds": 0.0,
                               "saliency": np.zeros((0, 0), np.float32), "error": ""}
        s = self.settings
        try:
            data = bytes(batch["bytes"][i]) if "bytes" in batch else read_file(Path(path))
            rgb = decode_image(data, path, self.explainer.max_pixels)
            options = {"preset": s.preset, "method": s.method, "channels": s.channels,
                       "samples": s.samples, "batch_size": s.batch_size,
                       "gaussian": s.gaussian, "aug_smooth": s.aug_smooth,
                       "eigen_smooth": s.eigen_smooth, "layers": s.layers, "fuse": s.fuse,
                       "region": s.region, "background": s.background}
            found = self.explainer.explain_list(rgb, s.target, s.top_k, **options)
            if self.out is not None:
                per_class = bool(s.target) or s.top_k is not None
                write_outputs(self.out, name, Path(path), rgb, found, per_class)
        except (ScoreCamError, ValueError, TypeError, OSError) as exc:
            row["error"] = failure_reason(exc)
            return row
        best = found[0]
        row.update(class_id=best.class_id, label=best.label, score=best.score,
                   forwards=best.forwards, seconds=best.seconds.get("total", 0.0),
                   saliency=best.saliency)
        return row


def explain_dataset(
    source: str | Path | Sequence[str | Path] | Any,
    bundle: str | Path | Bundle | None = None,
    *,
    method: str = "scorecam",
    preset: str | None = None,
    target: Sequence[int] | None = None,
    top_k: int | None = None,
    channels: int = 64,
    samples: int | None = None,
    batch_size: int | None = None,
    gaussian: bool = False,
    aug_smooth: bool = False,
    eigen_smooth: bool = False,
    layers: Sequence[str] | None = None,
    fuse: str | None = None,
    region: Any = None,
    background: int | None = None,
    actors: int = 2,
    gpus_per_actor: float = 0,
    threads: int = 1,
    provider: str = "auto",
    provider_options: dict[str, str] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    images_per_task: int = 4,
    out: str | Path | None = None,
    skip_existing: bool = False,
    model_url: str | None = None,
    remote_timeout: float = 60.0,
) -> Any:
    """Explain every image of `source` on Ray; returns a lazy `ray.data.Dataset` of rows.

    Args:
        source: a local folder, file or glob (expanded as `scorecam-onnx explain` does, each
            file read by an actor, so an unreadable one is a failure row); a URI or list of
            URIs that Ray Data's binary-file reader takes (object stores included); or a Ray
            Dataset with a `bytes` column (and optionally `path`).
        bundle: the bundle folder (or a loaded `Bundle`, such as a plain model opened with
            `open_model`), reachable from every node. Default: the shipped one.
        method, preset, target, top_k, channels, samples, batch_size, gaussian, aug_smooth,
            eigen_smooth, layers, fuse, region, background: as
            `Explainer.explain` (one target list for every image).
        actors: actors in the pool, each holding one `Explainer`.
        gpus_per_actor: GPUs each actor reserves (its ONNX Runtime then picks CUDA with
            provider "auto").
        threads: ONNX Runtime threads per actor (one actor per core is the usual layout).
        provider, provider_options: the execution provider of each actor and its options.
        images_per_task: images per `map_batches` batch.
        out: write each image's outputs here (the files `scorecam-onnx explain` writes,
            atomically, by the actors); the folder must be shared by every node.
        skip_existing: leave out images whose `<name>.json` is already in `out`.
        model_url, remote_timeout: every actor sends its full-model forwards to this served
            model (as `Explainer`'s).

    Returns:
        A Dataset with one row per image: path, name, class_id, label, score, forwards,
        seconds, saliency (float32, original size; empty on failure) and error ("" if none).
        Nothing runs until it is consumed (`iter_batches`, `materialize`, `write_parquet`…).
    """
    ray = import_ray()
    from ..batch import output_names

    if top_k is not None and target:
        raise ValueError("give either target or top_k, not both")
    dataset = _source_dataset(ray, source)
    if dataset is None:
        paths, problems = find_images(_local_inputs(source))
        if problems and not paths:
            raise FileNotFoundError("; ".join(problems))
        names = output_names(paths)
        rows = [{"path": str(p), "name": names[p]} for p in paths]
        if skip_existing and out is not None:
            rows = [r for r in rows if not (Path(out) / f"{r['name']}.json").is_file()]
        dataset = ray.data.from_items(rows) if rows else ray.data.from_items(
            [{"path": "", "name": ""}]).limit(0)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    settings = asdict(ExplainSettings(method, preset, list(target or []), top_k, channels,
                                      samples, batch_size, gaussian, aug_smooth,
                                      eigen_smooth, list(layers) if layers else None, fuse,
                                      region, background))
    options = {"provider": provider, "threads": threads, "max_pixels": max_pixels,
               "provider_options": provider_options, "model_url": model_url,
               "remote_timeout": remote_timeout}
    source = bundle if isinstance(bundle, Bundle) else str(bundle) if bundle else None
    config = (source, settings, str(out) if out else None, options)
    return dataset.map_batches(
        type("ExplainActor", (ExplainActor,), {"config": config}),
        batch_size=images_per_task, batch_format="numpy", concurrency=actors,
        num_cpus=threads, num_gpus=gpus_per_actor,
        # Ray Data's actor pools restart a killed actor and rerun its batch by default
        # (max_restarts=-1, max_task_retries=-1); the tests kill one to check.
    )


def _source_dataset(ray: Any, source: Any) -> Any:
    """A Dataset for Ray-readable sources (an existing Dataset, URIs); None for local ones."""
    if isinstance(source, ray.data.Dataset):
        return source
    items = [source] if isinstance(source, str | Path) else list(source)
    if items and all(isinstance(s, str) and "://" in s for s in items):
        return ray.data.read_binary_files(items, include_paths=True)
    return None


def _local_inputs(source: Any) -> list[str]:
    return [str(source)] if isinstance(source, str | Path) else [str(s) for s in source]
