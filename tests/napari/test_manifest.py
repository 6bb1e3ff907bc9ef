"""The npe2 manifest is valid, ships with the package, and napari finds the plugin."""

import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_packaged_manifest_is_the_root_manifest():
    packaged = files("napari_unet_stack") / "napari.yaml"
    assert packaged.read_text() == (ROOT / "napari.yaml").read_text()


def test_npe2_validate():
    npe2 = shutil.which("npe2", path=str(Path(sys.executable).parent))
    assert npe2, "npe2 is a test dependency"
    result = subprocess.run([npe2, "validate", "napari-unet-stack"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in (result.stdout + result.stderr).lower()


def test_napari_lists_the_plugin():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-unet-stack")
    assert manifest.display_name == "UNet Stack"


@pytest.mark.gui
def test_viewer_opens_with_opengl(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.arange(64, dtype=np.uint8).reshape(8, 8))
    shot = viewer.screenshot(canvas_only=True)
    assert shot.ndim == 3 and shot.shape[-1] == 4


def test_every_contribution_exists():
    """Each command imports, and widgets / samples / writers point at declared commands."""
    from importlib import import_module

    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(ROOT / "napari.yaml")
    contributions = manifest.contributions
    ids = set()
    for command in contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert callable(getattr(import_module(module), attr)), command.python_name
        ids.add(command.id)
    used = [w.command for w in contributions.widgets] + [s.command for s in contributions.sample_data]
    used += [w.command for w in contributions.writers] + [r.command for r in contributions.readers]
    assert set(used) == ids  # nothing declared that is not used, nothing used that is not declared
    assert {w.display_name for w in contributions.widgets} == {"Predict", "Train"}
    assert {s.key for s in contributions.sample_data} == {"nuclei_stack", "large_image"}
    writers = {ext for w in contributions.writers for ext in w.filename_extensions}
    assert writers == {".tif", ".tiff", ".zarr"}
    assert all(w.layer_types == ["labels"] for w in contributions.writers)
    [reader] = contributions.readers
    assert set(reader.filename_patterns) == {"*.tif", "*.tiff", "*.zarr"} and reader.accepts_directories


def test_napari_finds_the_reader_for_tiff_and_zarr(tmp_path):
    """npe2 offers the plugin's reader for the files it writes (a zarr store is a folder)."""
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    (tmp_path / "seg.zarr").mkdir()
    for name in ("seg.tif", "seg.ome.tif", "seg.zarr", "seg.ome.zarr"):
        found = {r.plugin_name for r in pm.iter_compatible_readers([str(tmp_path / name)])}
        assert "napari-unet-stack" in found, name
