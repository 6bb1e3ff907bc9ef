"""`export_bioimageio` against bioimageio's own tools: each bundled model's package passes
``bioimageio.core.test_model`` (its test outputs reproduced from its test inputs by both
weight formats) and loads back with the original's probabilities. Needs the
``[bioimageio]`` extra (skipped without it); slow (bioimageio tests every weight format
at several sizes)."""

import numpy as np
import pytest
import torch
import yaml

from napari_unet_stack import CheckpointError, NestedUNet, UNet, load_model, predict
from napari_unet_stack.cli import main
from napari_unet_stack.samples import load_sample

bioimageio_core = pytest.importorskip("bioimageio.core")

pytestmark = pytest.mark.slow


def _passes_test_model(path):
    summary = bioimageio_core.test_model(str(path))
    failed = [f"{d.name}: {[e.msg[:300] for e in d.errors]}" for d in summary.details if d.status == "failed"]
    assert summary.status in ("passed", "valid-format") and not failed, failed
    formats = {d.name.split("(")[-1].rstrip(")") for d in summary.details if "Reproduce" in d.name}
    assert formats == {"pytorch_state_dict", "torchscript"}


def _same_probabilities(original, loaded, image, **options):
    np.testing.assert_allclose(predict(image, loaded, **options), predict(image, original, **options), atol=1e-4)


@pytest.mark.parametrize("name", ["nuclei-unet", "nuclei-unetpp"])
def test_bundled_model_package_passes_bioimageio_test_and_round_trips(name, tmp_path):
    from napari_unet_stack.bioimageio import export_bioimageio

    original = load_model(name)
    path = export_bioimageio(original, tmp_path / f"{name}.zip", authors=["A. Tester"], description=f"{name} test")
    _passes_test_model(path)
    loaded = load_model(path)
    assert type(loaded) is type(original) and loaded.config() == original.config()
    assert loaded.meta == original.meta and loaded.activation == original.activation
    _same_probabilities(original, loaded, load_sample("nuclei_stack").image[5:7])


def test_cli_export_and_predict_from_the_package(tmp_path, capsys):
    path = tmp_path / "unet.zip"
    assert main(["export-bioimageio", "nuclei-unet", "-o", str(path), "--author", "A. Tester"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["export-bioimageio", "nuclei-unet", "-o", str(path)]) == 2  # exists, no --overwrite
    assert "exists" in capsys.readouterr().err
    import tifffile

    tifffile.imwrite(tmp_path / "img.tif", load_sample("nuclei_stack").image[:2])
    assert main(["predict", str(tmp_path / "img.tif"), "-o", str(tmp_path / "labels.tif"), "--model", str(path), "-q"]) == 0
    expected = main(["predict", str(tmp_path / "img.tif"), "-o", str(tmp_path / "ref.tif"), "-q"])
    assert expected == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "labels.tif"), tifffile.imread(tmp_path / "ref.tif"))


@pytest.mark.parametrize("kind", ["valid", "multilabel", "strided"])
def test_other_geometries_and_activations_pass(kind, tmp_path, rng):
    from napari_unet_stack.bioimageio import export_bioimageio

    if kind == "valid":  # unpadded: the output is 2 * valid_margin smaller (a size offset)
        model = UNet(1, 2, base_channels=4, depth=2, padding="valid").eval()
    elif kind == "strided":  # strided-convolution down-sampling
        model = UNet(1, 2, base_channels=4, depth=2, downsampling="strided").eval()
    else:  # three input channels, three independent sigmoid classes, UNet++
        model = NestedUNet(3, 3, base_channels=4, depth=2).eval()
        model.activation = "sigmoid"
        model.meta["normalization"] = {"mode": "zscore"}
    path = export_bioimageio(model, tmp_path / "m.zip", authors="A. Tester")
    _passes_test_model(path)
    loaded = load_model(path)
    assert loaded.activation == model.activation and loaded.valid_margin == model.valid_margin
    image = rng.random((model.in_channels, 70, 90)).astype(np.float32)
    _same_probabilities(model, loaded, image, channel_axis=0)


def test_failed_export_leaves_the_old_file_and_no_temporary_one(tmp_path):
    from napari_unet_stack.bioimageio import export_bioimageio

    target = tmp_path / "pkg.zip"
    target.write_bytes(b"old")
    model = UNet(1, 2, base_channels=4, depth=2).eval()
    with pytest.raises(ValueError, match=r"bioimageio\.spec rejects"):
        export_bioimageio(model, target, license="not a licence", overwrite=True)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["pkg.zip"]
    with pytest.raises(FileExistsError):
        export_bioimageio(model, target)


def test_exported_description_is_what_bioimageio_consumers_read(tmp_path):
    import zipfile

    from napari_unet_stack.bioimageio import export_bioimageio

    model = UNet(1, 1, base_channels=4, depth=2).eval()
    path = export_bioimageio(model, tmp_path / "m.zip", authors="A. Tester")
    with zipfile.ZipFile(path) as archive:
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        x = np.load(archive.open("test_input.npy"))
    assert rdf["format_version"].startswith("0.5")
    step = next(a for a in rdf["inputs"][0]["axes"] if a.get("id") == "y")["size"]["step"]
    assert step == model.size_multiple and x.shape[-1] % step == 0
    assert [p["id"] for p in rdf["inputs"][0]["preprocessing"]][:2] == ["ensure_dtype", "scale_range"]
    assert rdf["outputs"][0]["postprocessing"][0]["id"] == "sigmoid"
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["import_from"] == "napari_unet_stack.models"
    assert torch.jit.load(archive_member(path, "weights_torchscript.pt", tmp_path)) is not None
    with pytest.raises(CheckpointError):
        load_model(path, n_classes=2)


def archive_member(path, name, folder):
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return archive.extract(name, folder)
