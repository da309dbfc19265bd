"""Explaining a dataset on Ray Data: an actor pool, one `Explainer` per actor, rows streamed.

A bad image is a row with an `error`, never a failed task that Ray retries. Outputs (with
`out`) are written by the actors, atomically and `<name>.json` last, so an actor killed
mid-image leaves no half set: Ray restarts it, the image is redone, and it ends with exactly
one complete set of files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..images import find_images
from ..request import ExplainRequest
from ..runtime import Runtime

RAY_MISSING = "Ray is not installed: install scorecam-onnx with the 'ray' extra"


@dataclass(frozen=True)
class RayPool:
    """The actor pool explaining a dataset.

    Args:
        actors: actors in the pool, each holding one `Explainer`.
        gpus_per_actor: GPUs each actor reserves (its ONNX Runtime then picks CUDA with
            provider "auto").
        images_per_task: images per `map_batches` batch.
    """

    actors: int = 2
    gpus_per_actor: float = 0
    images_per_task: int = 4


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

    config: tuple[Any, ExplainRequest, str | None, Runtime]

    def __init__(self) -> None:
        from ..explainer import Explainer

        bundle, request, out, runtime = self.config
        self.explainer = Explainer(bundle, runtime)
        self.request = request
        self.out = Path(out) if out else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        count = len(next(iter(batch.values()))) if batch else 0
        rows = [self._one(batch, i) for i in range(count)]
        return {key: [row[key] for row in rows] for key in rows[0]} if rows else {}

    def _one(self, batch: dict[str, np.ndarray], i: int) -> dict[str, Any]:
        from ..batch import failure_reason, write_outputs
        from ..errors import ScoreCamError
        from ..images import read_file

        path = str(batch["path"][i]) if "path" in batch else f"row {i}"
        name = str(batch["name"][i]) if "name" in batch else Path(path).stem
        row: dict[str, Any] = {
            "path": path,
            "name": name,
            "class_id": -1,
            "label": "",
            "score": float("nan"),
            "forwards": 0,
            "seconds": 0.0,
            "saliency": np.zeros((0, 0), np.float32),
            "error": "",
        }
        try:
            data = bytes(batch["bytes"][i]) if "bytes" in batch else read_file(Path(path))
            picture = self.explainer.read(data, self.request.options.frame, path)
            found = self.explainer.run(picture, self.request)
            if self.out is not None:
                rgb = self.explainer.display(picture)
                write_outputs(self.out, name, Path(path), rgb, found, self.request.target.per_class)
        except (ScoreCamError, ValueError, TypeError, OSError) as exc:
            row["error"] = failure_reason(exc)
            return row
        best = found[0]
        row.update(
            class_id=best.class_id,
            label=best.label,
            score=best.score,
            forwards=best.forwards,
            seconds=best.seconds.get("total", 0.0),
            saliency=best.saliency,
        )
        return row


def explain_dataset(
    source: str | Path | Sequence[str | Path] | Any,
    bundle: str | Path | Bundle | None = None,
    request: ExplainRequest | None = None,
    runtime: Runtime | None = None,
    pool: RayPool | None = None,
    *,
    out: str | Path | None = None,
    skip_existing: bool = False,
) -> Any:
    """Explain every image of `source` on Ray; returns a lazy `ray.data.Dataset` of rows.

    Args:
        source: a local folder, file or glob (expanded as `scorecam-onnx explain` does, each
            file read by an actor, so an unreadable one is a failure row); a URI or list of
            URIs that Ray Data's binary-file reader takes (object stores included); or a Ray
            Dataset with a `bytes` column (and optionally `path`).
        bundle: the bundle folder (or a loaded `Bundle`, such as a plain model opened with
            `open_model`), reachable from every node. Default: the shipped one.
        request: the method, target and options for every image. Default: Score-CAM of the
            top-1 class.
        runtime: each actor's `Runtime` (provider and its options, threads, a served model
            for the full-model forwards…). Default: one ONNX Runtime thread per actor (one
            actor per core is the usual layout).
        pool: the actor pool (`RayPool`).
        out: write each image's outputs here (the files `scorecam-onnx explain` writes,
            atomically, by the actors); the folder must be shared by every node.
        skip_existing: leave out images whose `<name>.json` is already in `out`.

    Returns:
        A Dataset with one row per image: path, name, class_id, label, score, forwards,
        seconds, saliency (float32, original size; empty on failure) and error ("" if none).
        Nothing runs until it is consumed (`iter_batches`, `materialize`, `write_parquet`…).
    """
    request = request or ExplainRequest()
    runtime = runtime or Runtime(threads=1)
    # Actors run in the cluster's working folder: local paths are taken from the caller's.
    out = Path(out).absolute() if out is not None else None
    if isinstance(bundle, str | Path) and Path(bundle).exists():
        bundle = Path(bundle).absolute()
    pool = pool or RayPool()
    ray = import_ray()
    dataset = _source_dataset(ray, source)
    if dataset is None:
        dataset = _local_dataset(ray, source, out if skip_existing else None)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    source = bundle if isinstance(bundle, Bundle) else str(bundle) if bundle else None
    config = (source, request, str(out) if out else None, runtime)
    return dataset.map_batches(
        type("ExplainActor", (ExplainActor,), {"config": config}),
        batch_size=pool.images_per_task,
        batch_format="numpy",
        concurrency=pool.actors,
        num_cpus=max(runtime.threads, 1),
        num_gpus=pool.gpus_per_actor,
        # Ray Data's actor pools restart a killed actor and rerun its batch by default
        # (max_restarts=-1, max_task_retries=-1); the tests kill one to check.
    )


def _local_dataset(ray: Any, source: Any, done_in: str | Path | None) -> Any:
    """Rows (path, output name) of local image files; without those whose `<name>.json` is
    already in `done_in`."""
    from ..batch import output_names

    paths, problems = find_images(_local_inputs(source))
    if problems and not paths:
        raise FileNotFoundError("; ".join(problems))
    names = output_names(paths)
    rows = [{"path": str(Path(p).absolute()), "name": names[p]} for p in paths]
    if done_in is not None:
        rows = [r for r in rows if not (Path(done_in) / f"{r['name']}.json").is_file()]
    return (
        ray.data.from_items(rows)
        if rows
        else ray.data.from_items([{"path": "", "name": ""}]).limit(0)
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
