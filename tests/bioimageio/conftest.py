"""Packages for the bioimage.io tests.

bioimageio.spec reads its settings from the environment when first imported: its cache
goes to a temporary folder here, so that no test writes to the user's cache. The tests
never need the network: packages are local files and every file they name is inside them.

`write_package` (fixture `make_package`) writes a package the way `export_bioimageio` does, without bioimageio
(the rdf is not validated), so that the import tests run where the extra is missing and
can edit the description first.
"""

import copy
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

os.environ.setdefault("BIOIMAGEIO_CACHE_PATH", tempfile.mkdtemp(prefix="bioimageio-cache-"))

from napari_unet_stack.bioimageio.export import package_fields, write_files
from napari_unet_stack.bioimageio.rdf import size_constraints
from napari_unet_stack.models import UNet


def small_input(model, seed: int = 0) -> np.ndarray:
    """(C, S, S) uint16-valued float image of the smallest admissible side."""
    side = size_constraints(model)[0]["min"]
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4000, (model.in_channels, side, side)).astype(np.float32)


def write_package(model, folder: Path, base: tuple[Path, dict], edit=None, as_zip: bool = True) -> Path:
    """A package of ``model`` in ``folder`` (``package.zip``, or the folder's ``rdf.yaml``)
    from ``base`` (files written by `write_files` and their rdf), ``edit(rdf, files)``
    changing the description and files first."""
    files = folder / "files"
    shutil.copytree(base[0], files)
    rdf = copy.deepcopy(base[1])
    if edit is not None:
        edit(rdf, files)
    (files / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))
    if not as_zip:
        return files / "rdf.yaml"
    target = folder / "package.zip"
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(files.iterdir()):
            archive.write(path, path.name)
    return target


@pytest.fixture(scope="session")
def tiny():
    """A small trained-looking UNet (BatchNorm statistics not the defaults)."""
    model = UNet(1, 2, base_channels=4, depth=2).eval()
    for module in model.modules():
        if hasattr(module, "running_var"):
            module.running_var.uniform_(0.5, 2.0)
            module.running_mean.uniform_(-0.2, 0.2)
    model.meta["class_names"] = ["background", "cell"]
    return model


@pytest.fixture(scope="session")
def base_files(tmp_path_factory):
    """The files of each model's package, written once (model id -> (folder, rdf, model))."""
    return {}


@pytest.fixture
def make_package(tmp_path, tmp_path_factory, base_files):
    """`write_package` into a new folder of ``tmp_path`` (``name``)."""

    def make(model, edit=None, as_zip: bool = True, name: str = "pkg") -> Path:
        if id(model) not in base_files:
            folder = tmp_path_factory.mktemp("package-files")
            fields = package_fields(model, None, None, "Tester", None, "CC-BY-4.0", None, {})
            base_files[id(model)] = (folder, write_files(model, folder, fields, small_input(model)), model)
        folder, rdf, _ = base_files[id(model)]
        return write_package(model, tmp_path / name, (folder, rdf), edit, as_zip)

    return make


@pytest.fixture
def image_for():
    """`small_input`: an admissible test image for a model."""
    return small_input
