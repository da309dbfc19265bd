"""Write a Triton model repository for a bundle: its classifier (`model.onnx`) and masked
scorers, with Triton's onnxruntime backend or with ONNX Runtime inside its Python backend
(for Triton builds without the onnxruntime backend, such as PyPI's nvidia-pytriton); and the
explainer, a Python-backend model whose masked forwards go to them through BLS."""

from __future__ import annotations

import re
import shutil
from importlib.resources import files
from pathlib import Path

import onnx

from ..bundle import Bundle
from ..cam.graph_masks import IMAGE, maps_input, masked_scorer_graph
from ..errors import BundleError
from ..fileio import staged_folder, write_bytes_atomic
from ..request import read_settings, request_from

BACKENDS = ("onnxruntime", "python")
KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}
# Where the explainer's masked batches go: the masked scorers (only maps cross) or the
# classifier (masked images).
FORWARDS = ("masked", "classifier")
BUNDLE_FOLDER = "bundle"


def classifier_config(
    bundle: Bundle,
    name: str,
    backend: str = "python",
    max_batch: int = 64,
    instances: int = 1,
    kind: str = "cpu",
) -> str:
    """The classifier's config.pbtxt: inputs and outputs from the manifest (without the batch
    dimension, which `max_batch_size` adds), dynamic batching, an instance group."""
    if backend not in BACKENDS:
        raise BundleError(f"backend {backend!r}: choose from {', '.join(BACKENDS)}")
    if kind not in KINDS:
        raise BundleError(f"kind {kind!r}: choose from {', '.join(KINDS)}")
    if max_batch < 1 or instances < 1:
        raise BundleError("max batch and instances must be at least 1")
    m = bundle.manifest
    dims = (
        (m.input.channels, m.input.height, m.input.width)
        if m.input.layout == "NCHW"
        else (m.input.height, m.input.width, m.input.channels)
    )
    out = m.output
    out_dims = (out.classes, out.height, out.width) if out.segmentation else (out.classes,)
    outputs: list[tuple[str, str, tuple[int, ...]]] = [(m.output.name, "TYPE_FP32", out_dims)]
    batched = True
    if m.decoder is not None:
        outputs, batched = _detector_outputs(bundle)
    return "\n".join(
        [
            f'name: "{name}"',
            f'backend: "{backend}"',
            f"max_batch_size: {max_batch if batched else 0}",
            "input [",
            f'  {{ name: "{m.input.name}" data_type: TYPE_FP32 dims: [ {_list(dims)} ] }}',
            "]",
            "output [",
            ",\n".join(
                f'  {{ name: "{n}" data_type: {t} dims: [ {_list(d)} ] }}' for n, t, d in outputs
            ),
            "]",
            *(["dynamic_batching { }"] if batched else []),
            f"instance_group [ {{ count: {instances} kind: {KINDS[kind]} }} ]",
            "",
        ]
    )


def _detector_outputs(bundle: Bundle) -> tuple[list[tuple[str, str, tuple[int, ...]]], bool]:
    """A detector's outputs as the graph declares them ((name, Triton type, dims without
    the batch axis), variable dimensions as -1), and whether it takes batches."""
    graph = onnx.load(str(bundle.model_path), load_external_data=False)
    image = next(i for i in graph.graph.input if i.name == bundle.manifest.input.name)
    batched = len(image.type.tensor_type.shape.dim) == 4
    declared = {o.name: o for o in graph.graph.output}
    outputs = []
    decoder = bundle.manifest.decoder
    for name in decoder.outputs if decoder is not None else ():
        value = declared[name]
        dims = [
            d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim
        ][1 if batched else 0 :]
        integer = value.type.tensor_type.elem_type == onnx.TensorProto.INT64
        outputs.append((name, "TYPE_INT64" if integer else "TYPE_FP32", tuple(dims)))
    return outputs, batched


def masked_config(
    bundle: Bundle,
    name: str,
    align_corners: bool,
    instances: int = 1,
    kind: str = "cpu",
    backend: str = "python",
) -> str:
    """A masked scorer's config.pbtxt: one image (1×C×H×W) and a batch of h×w maps per
    request (no batching across requests: each request has its own image)."""
    m, activation = bundle.manifest, bundle.manifest.activation
    if activation is None:
        raise BundleError(f"{bundle.path}: a model-only bundle has no maps to mask with")
    return "\n".join(
        [
            f'name: "{name}"',
            f'backend: "{backend}"',
            "max_batch_size: 0",
            "input [",
            f'  {{ name: "{IMAGE}" data_type: TYPE_FP32 dims: '
            f"[ 1, {m.input.channels}, {m.input.height}, {m.input.width} ] }},",
            f'  {{ name: "{maps_input(align_corners)}" data_type: TYPE_FP32 dims: [ -1, '
            f"{activation.height}, {activation.width} ] }}",
            "]",
            "output [",
            f'  {{ name: "{m.output.name}" data_type: TYPE_FP32 '
            f"dims: [ -1, {m.output.classes} ] }}",
            "]",
            f"instance_group [ {{ count: {instances} kind: {KINDS[kind]} }} ]",
            "",
        ]
    )


def _list(values: tuple[int, ...]) -> str:
    return ", ".join(str(v) for v in values)


def explain_config(
    bundle: Bundle,
    name: str,
    classifier: str,
    masked: list[str],
    forwards: str = "masked",
    instances: int = 1,
    kind: str = "cpu",
    defaults: dict[str, str] | None = None,
    execution_env: str | None = None,
) -> str:
    """The explainer's config.pbtxt: encoded images in (TYPE_STRING, one or a batch), the
    service's V2 outputs, and the parameters `explain_adapter` reads."""
    if forwards not in FORWARDS:
        raise BundleError(f"forwards {forwards!r}: choose from {', '.join(FORWARDS)}")
    if kind not in KINDS:
        raise BundleError(f"kind {kind!r}: choose from {', '.join(KINDS)}")
    m = bundle.manifest
    parameters = {
        "classifier": classifier,
        "masked": ",".join(masked),
        "forwards": forwards,
        **(defaults or {}),
    }
    if execution_env:
        parameters["EXECUTION_ENV_PATH"] = execution_env
    for key, value in parameters.items():
        if any(c in value for c in '"\\\n'):
            raise BundleError(
                f"{key} {value!r}: quotes, backslashes and line breaks cannot go into config.pbtxt"
            )
    return "\n".join(
        [
            f'name: "{name}"',
            'backend: "python"',
            "max_batch_size: 0",
            "input [",
            '  { name: "image" data_type: TYPE_STRING dims: [ -1 ] }',
            "]",
            "output [",
            f'  {{ name: "probabilities" data_type: TYPE_FP32 dims: [ -1, {m.output.classes} ] }},'
            if m.decoder is None
            else '  { name: "boxes" data_type: TYPE_FP32 dims: [ -1, -1, 4 ] },',
            '  { name: "class_id" data_type: TYPE_INT64 dims: [ -1, -1 ] },',
            '  { name: "score" data_type: TYPE_FP32 dims: [ -1, -1 ] },',
            f'  {{ name: "saliency" data_type: TYPE_FP32 dims: [ -1, -1, {m.input.height}, '
            f"{m.input.width} ] }}",
            "]",
            f"instance_group [ {{ count: {instances} kind: {KINDS[kind]} }} ]",
            "parameters [",
            ",\n".join(
                f'  {{ key: "{k}" value: {{ string_value: "{v}" }} }}'
                for k, v in parameters.items()
            ),
            "]",
            "",
        ]
    )


def write_repository(
    bundle: Bundle | str | Path,
    out: str | Path,
    name: str = "classifier",
    backend: str = "python",
    max_batch: int = 64,
    instances: int = 1,
    kind: str = "cpu",
    force: bool = False,
    masked: bool = False,
) -> Path:
    """Write (or, with `force`, replace) `out/name/`: config.pbtxt and version 1 holding
    model.onnx with its weights, plus model.py for the Python backend. With `masked`, also
    the masked scorers `name-masked` (half-pixel upsampling: the paper's and torch-cam's
    presets) and `name-masked-aligned` (align corners: pytorch-grad-cam's) for the same
    backend. Returns the classifier's folder."""
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(Path(bundle))
    target = Path(out) / name
    if target.exists() and not force:
        raise BundleError(f"{target} exists (use force to replace it)")
    config = classifier_config(bundle, name, backend, max_batch, instances, kind)
    Path(out).mkdir(parents=True, exist_ok=True)
    if masked:
        m = bundle.manifest
        if m.model_only or m.output.segmentation or m.decoder is not None:
            raise BundleError(
                "masked scorers score a layer's maps into class scores: not for "
                "a model-only, segmentation or detector bundle"
            )
        if bundle.manifest.input.layout == "NHWC":
            raise BundleError("masked scorers build NCHW images; this bundle's input is NHWC")
        write_masked_scorers(bundle, out, name, backend, instances, kind, force)
    with staged_folder(target) as staging:
        version = staging / "1"
        version.mkdir(parents=True)
        shutil.copyfile(bundle.model_path, version / "model.onnx")
        weights = bundle.manifest.weights
        if weights:
            shutil.copyfile(bundle.path / weights, version / weights)
        if backend == "python":
            _copy_template("onnx_model.py", version / "model.py")
        (staging / "config.pbtxt").write_text(config, encoding="utf-8")
    return target


def write_masked_scorers(
    bundle: Bundle,
    out: str | Path,
    name: str,
    backend: str = "python",
    instances: int = 1,
    kind: str = "cpu",
    force: bool = False,
) -> list[str]:
    """Write the masked scorers `name-masked` and `name-masked-aligned`; their names."""
    names = []
    for align, suffix in ((False, "masked"), (True, "masked-aligned")):
        target = Path(out) / f"{name}-{suffix}"
        if target.exists() and not force:
            raise BundleError(f"{target} exists (use force to replace it)")
        _write_masked(bundle, target, align, instances, kind, backend)
        names.append(target.name)
    return names


def _write_masked(
    bundle: Bundle, target: Path, align: bool, instances: int, kind: str, backend: str
) -> None:
    m = bundle.manifest
    graph = masked_scorer_graph(
        onnx.load(str(bundle.model_path)), m.input.name, (m.input.height, m.input.width), align
    )
    with staged_folder(target) as staging:
        version = staging / "1"
        version.mkdir(parents=True)
        onnx.save(
            graph,
            str(version / "model.onnx"),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location="weights.bin",
            size_threshold=1024,
        )
        if backend == "python":
            _copy_template("onnx_model.py", version / "model.py")
        (staging / "config.pbtxt").write_text(
            masked_config(bundle, target.name, align, instances, kind, backend), encoding="utf-8"
        )


def write_explainer(
    bundle: Bundle | str | Path,
    out: str | Path,
    name: str,
    backend: str = "onnxruntime",
    max_batch: int = 64,
    instances: int = 1,
    kind: str = "cpu",
    classifier: str | None = None,
    forwards: str = "masked",
    method: str | None = None,
    preset: str | None = None,
    execution_env: str | None = None,
    force: bool = False,
) -> list[Path]:
    """Write a model repository in which Triton explains images with `bundle`:

    - `name/`: the classifier (unless `classifier` names a model already in the repository,
      whose inputs and outputs the explainer checks when it loads);
    - `name-masked/`, `name-masked-aligned/`: the masked scorers (image + h×w maps → scores),
      to which the explainer sends its masked batches (`forwards="masked"`); with
      `forwards="classifier"` none are written and masked images go to the classifier;
    - `name-explain/`: the explainer (Python backend);
    - `README.md`: how to start Triton on it and call the explainer.

    `method` and `preset` set the defaults of requests that name none. A bundle whose input
    is NHWC, or that has no layer, gets no masked scorers (they build NCHW images from a
    layer's maps): its masked images go to the classifier. Returns the folders written.
    Existing folders are refused unless `force`.
    """
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(Path(bundle))
    out = Path(out)
    for model in (name, classifier):
        if model is not None:
            check_model_name(model)
    if method is None and bundle.manifest.model_only:
        # the one method a model-only bundle can run
        method = "rise" if bundle.manifest.decoder is None else "drise"
    defaults = {k: v for k, v in (("method", method), ("preset", preset)) if v}
    _check_defaults(defaults)
    bundle.require_folder("a Triton repository")
    if forwards == "masked" and (
        bundle.manifest.input.layout == "NHWC"
        or bundle.manifest.model_only
        or bundle.manifest.decoder is not None
        or bundle.manifest.output.segmentation
    ):
        forwards = "classifier"  # masked scorers build NCHW images from a layer's maps
    explain = out / f"{name}-explain"
    masked = [f"{name}-masked", f"{name}-masked-aligned"] if forwards == "masked" else []
    targets = [out / name] if classifier is None else []
    targets += [*(out / m for m in masked), explain]
    for target in targets:
        if target.exists() and not force:
            raise BundleError(f"{target} exists (use force to replace it)")
    config = explain_config(
        bundle,
        explain.name,
        classifier or name,
        masked,
        forwards,
        instances,
        kind,
        defaults,
        execution_env,
    )
    classifier_config(bundle, name, backend, max_batch, instances, kind)  # checks the options
    out.mkdir(parents=True, exist_ok=True)
    if classifier is None:
        write_repository(bundle, out, name, backend, max_batch, instances, kind, force)
    if masked:
        write_masked_scorers(bundle, out, name, backend, instances, kind, force)
    with staged_folder(explain) as staging:
        version = staging / "1"
        version.mkdir(parents=True)
        shutil.copytree(bundle.path, version / BUNDLE_FOLDER)
        _copy_template("explain_model.py", version / "model.py")
        (staging / "config.pbtxt").write_text(config, encoding="utf-8")
    _write_readme(bundle, out, name, explain.name, classifier, bool(masked))
    return targets


def _write_readme(
    bundle: Bundle, out: Path, name: str, explain: str, classifier: str | None, masked: bool
) -> None:
    """The repository's README: its models and how to call the explainer."""
    readme = files("scorecam_onnx.triton").joinpath("repository_readme.md").read_text()
    m = bundle.manifest
    scorers = (
        (
            f"| `{name}-masked`, `{name}-masked-aligned` | masked scorers: one image and a "
            "batch of low-resolution maps in, one score row per map out (half-pixel and "
            "align-corners upsampling) |\n"
        )
        if masked
        else ""
    )
    shape = (
        f"{m.input.channels}×{m.input.height}×{m.input.width}"
        if m.input.layout == "NCHW"
        else f"{m.input.height}×{m.input.width}×{m.input.channels}"
    )
    write_bytes_atomic(
        out / "README.md",
        readme.format(
            explain=explain,
            classifier=classifier or name,
            scorers=scorers,
            shape=shape,
            classes=m.output.classes,
            height=m.input.height,
            width=m.input.width,
            where="the masked scorers" if masked else "the classifier, as masked images",
        ).encode("utf-8"),
    )


def check_model_name(name: str) -> None:
    """Refuse a name that is not one folder of the repository."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or set(name) == {"."}:
        raise BundleError(
            f"model name {name!r}: use letters, digits, '_', '.' and '-' (not only dots)"
        )


def _check_defaults(defaults: dict[str, str]) -> None:
    """The explainer's request defaults, checked as request parameters are."""
    try:
        request_from(read_settings(defaults))
    except ValueError as exc:
        raise BundleError(str(exc)) from None


def _copy_template(template: str, target: Path) -> None:
    source = files("scorecam_onnx.triton").joinpath(template).read_text()
    target.write_text(source, encoding="utf-8")
