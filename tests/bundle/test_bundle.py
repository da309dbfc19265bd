"""Bundles written from ONNX graphs: shared weights, dynamic batch, validation on load."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from builders import CLASSES, tiny_forward, tiny_model, tiny_weights, wide_model

from scorecam_onnx import Bundle, BundleError, write_bundle
from scorecam_onnx.bundle.manifest import MANIFEST_NAME


def _run(path, output, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([output], {"input": x})[0]


def test_split_graphs_reproduce_the_model(tiny_bundle):
    m = tiny_bundle.manifest
    x = np.random.default_rng(0).normal(size=(3, 3, 8, 8)).astype(np.float32)
    want_acts, want_logits = tiny_forward(x.astype(np.float64), tiny_weights())
    np.testing.assert_allclose(_run(tiny_bundle.features_path, "feat", x), want_acts, atol=1e-5)
    np.testing.assert_allclose(_run(tiny_bundle.model_path, "logits", x), want_logits, atol=1e-5)
    assert (m.activation.channels, m.activation.height, m.activation.width) == (5, 4, 4)
    assert m.output.classes == CLASSES and m.output.kind == "logits"
    assert tiny_bundle.labels == tuple(f"label{i}" for i in range(CLASSES))


def test_fixed_batch_of_one_becomes_dynamic(tmp_path):
    bundle = write_bundle(tiny_model(batch=1), tmp_path / "b", "feat")
    x = np.zeros((5, 3, 8, 8), np.float32)
    assert _run(bundle.model_path, "logits", x).shape == (5, CLASSES)
    assert _run(bundle.features_path, "feat", x).shape == (5, 5, 4, 4)


def test_weights_are_stored_once(tmp_path):
    bundle = write_bundle(wide_model(), tmp_path / "b", "feat")
    weights = bundle.path / "weights.bin"
    referenced = {}
    for graph_file in (bundle.features_path, bundle.model_path):
        graph = onnx.load(str(graph_file), load_external_data=False)
        for t in graph.graph.initializer:
            assert t.data_location == onnx.TensorProto.EXTERNAL and not t.raw_data
            entries = {e.key: e.value for e in t.external_data}
            assert entries["location"] == "weights.bin"
            referenced[t.name] = int(entries["length"])
    # conv_w (used by both graphs) and fc_w, each stored once: 32·3·3·3 + 100·32 floats.
    assert set(referenced) == {"conv_w", "fc_w"}
    assert weights.stat().st_size == (32 * 27 + 100 * 32) * 4


def test_probability_output_is_recorded(tmp_path):
    bundle = write_bundle(tiny_model(softmax=True), tmp_path / "b", "feat")
    assert bundle.manifest.output.kind == "probabilities"


def test_refuses_existing_folder_unless_forced(tiny_bundle):
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(tiny_model(), tiny_bundle.path, "feat")
    again = write_bundle(tiny_model(), tiny_bundle.path, "feat", force=True)
    assert again.manifest.activation.name == "feat"


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ("nope", "no tensor named 'nope'"),
        ("input", "no tensor named 'input'"),
    ],
)
def test_bad_target_tensor(tmp_path, tensor, message):
    with pytest.raises(BundleError, match=message):
        write_bundle(tiny_model(), tmp_path / "b", tensor)
    assert not (tmp_path / "b").exists()


def test_non_4d_target_is_refused(tmp_path):
    with pytest.raises(
        BundleError, match=r"has shape \(2, 5\), expected N×K×h×w, N×h×w×K or N×L×K"
    ):
        write_bundle(tiny_model(), tmp_path / "b", "flat")
    assert not (tmp_path / "b").exists()
    assert not list(tmp_path.iterdir())


def test_wrong_label_count(tmp_path):
    with pytest.raises(BundleError, match="2 labels given for a model with 4 classes"):
        write_bundle(tiny_model(), tmp_path / "b", "feat", labels=["a", "b"])


# Loading damaged bundles -------------------------------------------------------------------


def _edit_manifest(bundle, **changes):
    path = bundle.path / MANIFEST_NAME
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_missing_graph(tiny_bundle):
    tiny_bundle.features_path.unlink()
    with pytest.raises(BundleError, match="the features file 'features.onnx' is missing"):
        Bundle.load(tiny_bundle.path)


def test_modified_graph_fails_its_checksum(tiny_bundle):
    with tiny_bundle.model_path.open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match="model.onnx does not match its checksum"):
        Bundle.load(tiny_bundle.path)


def test_corrupt_graph_without_checksum(tiny_bundle):
    _edit_manifest(tiny_bundle, checksums={})
    tiny_bundle.features_path.write_bytes(b"this is not a protobuf at all \xff\xfe")
    with pytest.raises(BundleError, match="not a readable ONNX model"):
        Bundle.load(tiny_bundle.path)


@pytest.mark.parametrize("name", ["../labels.txt", "/etc/passwd"])
def test_labels_outside_the_bundle(tiny_bundle, name):
    _edit_manifest(tiny_bundle, labels=name)
    with pytest.raises(BundleError, match="'labels' points outside the bundle"):
        Bundle.load(tiny_bundle.path)


def test_external_data_outside_the_bundle(tmp_path):
    bundle = write_bundle(wide_model(), tmp_path / "b", "feat")
    graph = onnx.load(str(bundle.model_path), load_external_data=False)
    for entry in graph.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../../secret.bin"
    onnx.save(graph, str(bundle.model_path))
    _edit_manifest(bundle, checksums={})
    with pytest.raises(BundleError, match="points outside the bundle"):
        Bundle.load(bundle.path)


def test_manifest_names_a_tensor_the_graph_lacks(tiny_bundle):
    data = json.loads((tiny_bundle.path / MANIFEST_NAME).read_text())
    data["activation"]["name"] = "other"
    (tiny_bundle.path / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="no output named 'other'"):
        Bundle.load(tiny_bundle.path)


def test_labels_count_must_match(tiny_bundle):
    (tiny_bundle.path / "labels.txt").write_text("a\nb\n")
    _edit_manifest(tiny_bundle, checksums={})
    with pytest.raises(BundleError, match="2 labels for 4 classes"):
        Bundle.load(tiny_bundle.path)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="no such bundle folder"):
        Bundle.load(tmp_path / "missing")
    with pytest.raises(BundleError, match="no manifest"):
        Bundle.load(tmp_path)


def test_copied_bundle_still_loads(tiny_bundle, tmp_path):
    copy = shutil.copytree(tiny_bundle.path, tmp_path / "elsewhere")
    assert Bundle.load(copy).manifest == tiny_bundle.manifest


def test_nhwc_model_explains_like_its_nchw_twin(tmp_path):
    from builders import nhwc_model
    from conftest import TINY_PREP

    from scorecam_onnx import Explainer, Preprocessing, Runtime, ScoreCam

    nhwc = Preprocessing(layout="NHWC", mean=TINY_PREP.mean, std=TINY_PREP.std)
    bundle = write_bundle(nhwc_model(), tmp_path / "nhwc", "feat_nhwc", preprocessing=nhwc)
    m = bundle.manifest
    assert (m.activation.channels, m.activation.height, m.activation.width) == (5, 4, 4)
    assert m.input.layout == m.activation.layout == "NHWC"
    twin = write_bundle(tiny_model(), tmp_path / "nchw", "feat", preprocessing=TINY_PREP)
    image = np.random.default_rng(8).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for preset in ("paper", "pytorch-grad-cam", "torchcam"):
        a = Explainer(bundle, Runtime(provider="cpu")).explain_one(
            image, method=ScoreCam(preset=preset)
        )
        b = Explainer(twin, Runtime(provider="cpu")).explain_one(
            image, method=ScoreCam(preset=preset)
        )
        assert a.class_id == b.class_id and a.forwards == b.forwards
        np.testing.assert_allclose(a.saliency, b.saliency, atol=1e-5)


def test_crop_policy_bundle_maps_back_to_the_image(tmp_path):
    from scorecam_onnx import Explainer, Preprocessing, Runtime, ScoreCam

    bundle = write_bundle(
        tiny_model(), tmp_path / "crop", "feat", preprocessing=Preprocessing(resize="crop")
    )
    assert bundle.manifest.input.resize == "crop"
    image = np.random.default_rng(2).integers(0, 256, (8, 24, 3), dtype=np.uint8)
    res = Explainer(bundle, Runtime(provider="cpu")).explain_one(
        image, method=ScoreCam(preset="torchcam")
    )
    assert res.saliency.shape == (8, 24)
    assert res.saliency[:, :7].max() == 0 and res.saliency[:, -7:].max() == 0
    assert res.saliency[:, 8:16].max() > 0
