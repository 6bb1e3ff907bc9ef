"""Reading bioimage.io packages with `load_model` (no bioimageio needed): round trips of
hand-made packages against the original model's probabilities, and clear errors for
what is not supported."""

import shutil
import zipfile

import numpy as np
import pytest
import torch

from napari_unet_stack import CheckpointError, load_model, predict
from napari_unet_stack.models import MilesialUNet, UNet, WrappedNetwork


def _probabilities(model, image):
    return predict(image, model, channel_axis=0, device="cpu")


def test_package_zip_round_trips(tiny, make_package, image_for):
    loaded = load_model(make_package(tiny))
    assert type(loaded) is UNet and loaded.config() == tiny.config()
    assert loaded.class_names == ["background", "cell"]
    assert loaded.normalization == {"mode": "percentile", "low": 1.0, "high": 99.8, "scope": "slice"}
    image = image_for(tiny, seed=3)
    np.testing.assert_allclose(_probabilities(loaded, image), _probabilities(tiny, image), atol=1e-4)


def test_unpacked_rdf_yaml_loads(tiny, make_package, image_for):
    loaded = load_model(make_package(tiny, as_zip=False))
    image = image_for(tiny, seed=4)
    np.testing.assert_allclose(_probabilities(loaded, image), _probabilities(tiny, image), atol=1e-4)


def test_torchscript_only_package_loads(tiny, make_package, image_for):
    def torchscript_only(rdf, _files):
        del rdf["weights"]["pytorch_state_dict"]
        del rdf["weights"]["torchscript"]["parent"]

    loaded = load_model(make_package(tiny, torchscript_only))
    assert isinstance(loaded, WrappedNetwork) and loaded.out_channels == 2
    image = image_for(tiny, seed=5)
    np.testing.assert_allclose(_probabilities(loaded, image), _probabilities(tiny, image), atol=1e-4)


@pytest.mark.slow
def test_foreign_family_state_dict_loads_without_running_its_architecture_file(make_package, image_for):
    milesial = MilesialUNet(1, 2, bilinear=False, base_channels=4, depth=2).eval()
    milesial.meta["normalization"] = {"mode": "scale", "divisor": 255.0}

    def their_architecture(rdf, files):
        (files / "unet_model.py").write_text("raise SystemExit('never run')\n")
        rdf["weights"]["pytorch_state_dict"]["architecture"] = {
            "source": "unet_model.py", "callable": "UNet",
            "kwargs": {"n_channels": 1, "n_classes": 2, "bilinear": False}}
        del rdf["config"]

    loaded = load_model(make_package(milesial, their_architecture))
    assert type(loaded) is MilesialUNet
    assert loaded.normalization["mode"] == "meanstd"  # scale_linear gain 1/255 read back
    assert loaded.meta["provenance"]["imported_from"] == "bioimage.io"
    image = image_for(milesial, seed=6)
    np.testing.assert_allclose(_probabilities(loaded, image), _probabilities(milesial, image), atol=1e-4)


def test_missing_activation_needs_an_override(tiny, make_package):
    def no_postprocessing(rdf, _files):
        rdf["outputs"][0].pop("postprocessing")
        del rdf["config"]

    path = make_package(tiny, no_postprocessing)
    with pytest.raises(CheckpointError, match="sigmoid or softmax postprocessing"):
        load_model(path)
    assert load_model(path, activation="softmax").activation == "softmax"


def _set(*keys, value):
    def edit(rdf, _files):
        target = rdf
        for key in keys[:-1]:
            target = target[key]
        if value is KeyError:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return edit


def _unknown_architecture(rdf, _files):
    del rdf["weights"]["torchscript"]
    rdf["weights"]["pytorch_state_dict"]["architecture"] = {"source": "net.py", "callable": "MyNet", "kwargs": {}}


@pytest.mark.parametrize(("edit", "message"), [
    (_unknown_architecture, "architecture 'MyNet'.*does not know"),
    (_set("weights", value={"onnx": {"source": "model.onnx"}}), "weights in onnx only"),
    (_set("weights", value={"keras_hdf5": {"source": "m.h5"}, "tensorflow_saved_model_bundle": {"source": "m"}}),
     "weights in keras_hdf5, tensorflow_saved_model_bundle only"),
    (_set("format_version", value="0.4.10"), "format_version '0.4.10'"),
    (_set("type", value="dataset"), "type 'dataset'"),
    (_set("inputs", 0, "preprocessing", value=[{"id": "clip", "kwargs": {"min": 0, "max": 1}}]),
     "preprocessing 'clip'"),
    (_set("outputs", 0, "postprocessing", value=[{"id": "binarize", "kwargs": {"threshold": 0.5}}]),
     "postprocessing 'binarize'"),
    (_set("weights", "pytorch_state_dict", "source", value="../weights.pt"), "outside the package"),
    (_set("weights", "pytorch_state_dict", "source", value="https://example.org/w.pt"), "remote file"),
    (_set("weights", "pytorch_state_dict", "source", value="absent.pt"), "absent.pt, which the package lacks"),
    (lambda rdf, _f: rdf["inputs"][0]["axes"].insert(2, {"type": "space", "id": "z", "size": {"min": 8, "step": 4}}),
     r"inputs axes \(batch, channel, z, y, x\)"),
    (_set("inputs", 0, "axes", 2, "size", value=64), "fixed or unparameterized input size"),
    (_set("outputs", 0, "axes", 1, "channel_names", value=["a", "b", "c"]), "n_classes=3, its weights 2"),
])
def test_unsupported_packages_name_what(tiny, make_package, edit, message):
    with pytest.raises(CheckpointError, match=message):
        load_model(make_package(tiny, edit))


def test_zip_without_rdf_and_corrupt_zip(tiny, make_package, tmp_path):
    bare = tmp_path / "bare.zip"
    with zipfile.ZipFile(bare, "w") as archive:
        archive.writestr("weights.pt", b"not much")
    with pytest.raises(CheckpointError, match="cannot load"):
        load_model(bare)
    good = make_package(tiny)
    broken = tmp_path / "broken.zip"
    data = good.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot load"):
        load_model(broken)
    damaged = tmp_path / "damaged.zip"
    shutil.copyfile(good, damaged)
    with zipfile.ZipFile(damaged) as archive:
        info = archive.getinfo("weights.pt")
    raw = bytearray(damaged.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + 200:start + 400] = b"\0" * 200  # inside the stored weights: a bad CRC
    damaged.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"weights\.pt cannot be read|cannot load"):
        load_model(damaged)


def test_rdf_that_is_no_description(tmp_path):
    path = tmp_path / "rdf.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(CheckpointError, match=r"not a bioimage\.io description"):
        load_model(path)
    path.write_text("a: [unclosed\n")
    with pytest.raises(CheckpointError, match="not valid YAML"):
        load_model(path)


def test_wrapped_models_cannot_be_exported(tiny, make_package, tmp_path):
    from napari_unet_stack.bioimageio import export_bioimageio

    def torchscript_only(rdf, _files):
        del rdf["weights"]["pytorch_state_dict"]
        del rdf["weights"]["torchscript"]["parent"]

    wrapped = load_model(make_package(tiny, torchscript_only))
    with pytest.raises(TypeError, match="export_torchscript"):
        export_bioimageio(wrapped, tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()


def test_export_without_the_extra_says_how_to_install(tiny, tmp_path, monkeypatch):
    from napari_unet_stack.bioimageio import export_bioimageio

    monkeypatch.setitem(__import__("sys").modules, "bioimageio.spec", None)
    with pytest.raises(ImportError, match=r"napari-unet-stack\[bioimageio\]"):
        export_bioimageio(tiny, tmp_path / "out.zip")
    assert list(tmp_path.iterdir()) == []


def test_package_weights_with_nan_are_refused(tiny, make_package):
    def poison(_rdf, files):
        state = torch.load(files / "weights.pt", weights_only=True)
        next(v for v in state.values() if v.is_floating_point()).fill_(float("nan"))
        torch.save(state, files / "weights.pt")

    with pytest.raises(CheckpointError, match="non-finite"):
        load_model(make_package(tiny, poison))


def test_instance_model_package_keeps_its_decoding(make_package, image_for):
    from napari_unet_stack.training.instances import instance_meta

    model = UNet(1, 3, base_channels=4, depth=2).eval()
    model.meta.update(instances=instance_meta(), class_values=[0, 1, 1],
                      class_names=["background", "interior", "boundary"])
    loaded = load_model(make_package(model))
    # the package states the normalization the engine used (the default, the model had none)
    assert {k: v for k, v in loaded.meta.items() if k != "normalization"} == model.meta
    assert loaded.normalization["mode"] == "percentile" and loaded.out_channels == 3
    image = image_for(model, seed=7)
    np.testing.assert_allclose(_probabilities(loaded, image), _probabilities(model, image), atol=1e-4)


def test_strided_unet_package_round_trips(make_package, image_for):
    model = UNet(1, 2, base_channels=4, depth=2, downsampling="strided").eval()
    loaded = load_model(make_package(model))
    assert loaded.config() == model.config() and loaded.downsampling == "strided"
    image = image_for(model, seed=8)
    np.testing.assert_allclose(_probabilities(loaded, image), _probabilities(model, image), atol=1e-4)
