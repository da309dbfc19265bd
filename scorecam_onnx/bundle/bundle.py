"""A bundle folder as loaded: its manifest, graphs and labels, checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import BundleError
from ..fileio import sha256
from . import graphs
from .manifest import MANIFEST_NAME, Manifest

WEIGHTS_NAME = "weights.bin"
TAIL_NAME = "tail.onnx"


@dataclass(frozen=True)
class Bundle:
    """A validated bundle folder.

    Load one with `Bundle.load(path)`; the graphs, the weights and the labels it names are
    checked to exist inside the folder and to match the manifest's checksums.
    """

    path: Path
    manifest: Manifest
    labels: tuple[str, ...] | None
    # A plain .onnx file opened in place (`open_model`): `path` is its folder, not a bundle.
    plain: bool = False

    def require_folder(self, action: str) -> None:
        """Refuse a plain .onnx model where a bundle folder is copied or rewritten."""
        if self.plain:
            raise BundleError(
                f"{self.model_path}: {action} needs a bundle folder; write one "
                f"with `scorecam-onnx split {self.model_path.name} --no-layer "
                "--out DIR` (or --layer TENSOR)"
            )

    @property
    def features_path(self) -> Path | None:
        """The features graph (input → activations); None for a model-only bundle."""
        return self.path / self.manifest.features if self.manifest.features else None

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.model

    @property
    def tail_path(self) -> Path | None:
        """The tail graph (activations → output), when the bundle has one."""
        return self.path / self.manifest.tail if self.manifest.tail else None

    def label(self, class_id: int) -> str:
        """The class name, or 'class N' when the bundle has no labels."""
        if self.labels is not None and 0 <= class_id < len(self.labels):
            return self.labels[class_id]
        return f"class {class_id}"

    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> Bundle:
        """Read a bundle folder; `verify` checks checksums and the graphs' external data."""
        root = Path(path)
        if not root.is_dir():
            raise BundleError(f"{root}: no such bundle folder")
        manifest = Manifest.load(root / MANIFEST_NAME)
        files = {"model": manifest.model}
        if manifest.features:
            files["features"] = manifest.features
        if manifest.tail:
            files["tail"] = manifest.tail
        if manifest.weights:
            files["weights"] = manifest.weights
        for key, name in files.items():
            target = _inside(root, name, key)
            if not target.is_file():
                raise BundleError(f"{root}: the {key} file {name!r} is missing")
        if verify:
            for name, expected in manifest.checksums.items():
                target = _inside(root, name, f"checksums.{name}")
                if not target.is_file():
                    raise BundleError(f"{root}: checksummed file {name!r} is missing")
                if sha256(target) != expected:
                    raise BundleError(
                        f"{root}: {name} does not match its checksum in the manifest "
                        "(modified or corrupt)"
                    )
            for _, activation in manifest.targets:
                _check_graph(root, manifest.features or "", [manifest.input.name], activation.name)
            _check_graph(root, manifest.model, [manifest.input.name], manifest.output.name)
            if manifest.tail and manifest.activation:
                _check_graph(root, manifest.tail, [manifest.activation.name], manifest.output.name)
        labels = _read_labels(root, manifest) if manifest.labels else None
        return cls(root, manifest, labels)


def _inside(root: Path, name: str, key: str) -> Path:
    """`root/name`, refusing absolute names and names that leave the folder."""
    candidate = Path(name)
    resolved = (root / candidate).resolve()
    if candidate.is_absolute() or not resolved.is_relative_to(root.resolve()):
        raise BundleError(f"manifest: '{key}' points outside the bundle: {name!r}")
    return root / candidate


def _check_graph(root: Path, name: str, inputs: list[str], output: str) -> None:
    path = root / name
    model = graphs.load_model(path, load_weights=False)
    graph_inputs = {i.name for i in model.graph.input}
    graph_outputs = {o.name for o in model.graph.output}
    for want in inputs:
        if want not in graph_inputs:
            raise BundleError(f"{path}: the graph has no input named {want!r} (manifest)")
    if output not in graph_outputs:
        raise BundleError(f"{path}: the graph has no output named {output!r} (manifest)")
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                _inside(root, entry.value, f"{name}: external data of {tensor.name}")


def _read_labels(root: Path, manifest: Manifest) -> tuple[str, ...]:
    assert manifest.labels is not None
    path = _inside(root, manifest.labels, "labels")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: cannot read labels: {exc}") from None
    if len(lines) != manifest.output.classes:
        raise BundleError(
            f"{path}: {len(lines)} labels for {manifest.output.classes} classes (one per line)"
        )
    return tuple(lines)
