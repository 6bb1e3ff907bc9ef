"""The core and the CLI install and run without napari, Qt or magicgui (issue 10, item 6).

Each check runs in a fresh interpreter in which importing napari, any Qt binding, magicgui
or vispy raises ImportError, as on a dask worker or a headless server that installed
``napari-unet-stack`` without the ``[gui]`` extra.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile

ROOT = Path(__file__).resolve().parents[1]
GUI_PACKAGES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy", "superqt")

BLOCKER = textwrap.dedent(f"""
    import importlib.abc, sys
    BLOCKED = {GUI_PACKAGES!r}
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is blocked: not installed on this headless machine")
            return None
    sys.meta_path.insert(0, Blocker())
""")


def _run_headless(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "headless.py"
    script.write_text(BLOCKER + textwrap.dedent(code) + textwrap.dedent("""
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
        assert not loaded, f"GUI packages imported: {loaded}"
    """))
    env = {"NAPARI_UNET_STACK_DEVICE": "cpu", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=env, check=False)


def test_blocker_really_blocks(tmp_path):
    # the check itself: with the blocker installed, napari cannot be imported
    result = _run_headless("import napari\n", tmp_path)
    assert result.returncode != 0 and "napari is blocked" in result.stderr


def test_library_runs_without_napari(tmp_path):
    result = _run_headless("""
        import numpy as np
        import napari_unet_stack as nus
        model = nus.load_model("nuclei-unet")
        sample = nus.load_sample("nuclei_stack")
        image = sample.image[:2]
        labels = nus.segment(image, model)
        assert labels.shape == image.shape and 0 < labels.mean() < 1, labels.mean()
        net = nus.UNet(1, 2, base_channels=4, depth=2)
        probs = nus.predict(np.zeros((40, 40), np.float32), net)
        assert probs.shape == (2, 40, 40)
        print("library ok")
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "library ok" in result.stdout


@pytest.mark.slow
def test_cli_predict_and_train_run_without_napari(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(48, 48)).astype(np.float32)
    mask = np.zeros((48, 48), np.uint8)
    mask[10:30, 12:34] = 1
    image[mask > 0] += 3
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    result = _run_headless("""
        from napari_unet_stack.cli import main
        assert main(["info"]) == 0
        assert main(["predict", "img.tif", "-o", "labels.tif", "-q"]) == 0
        assert main(["train", "img.tif", "mask.tif", "-o", "m.pt", "--steps", "2", "--patch-size", "32",
                     "--batch-size", "2", "-q"]) == 0
        assert main(["predict", "img.tif", "--model", "m.pt", "-o", "labels2.tif", "-q"]) == 0
        print("cli ok")
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cli ok" in result.stdout
    labels = tifffile.imread(tmp_path / "labels.tif")
    assert labels.shape == (48, 48) and labels[mask > 0].mean() > 0.5 and labels[mask == 0].mean() < 0.5
    assert tifffile.imread(tmp_path / "labels2.tif").shape == (48, 48)


def test_gui_packages_are_not_core_dependencies():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for name in ("napari", "pyqt", "pyside", "qtpy", "magicgui"):
        assert name not in core, f"{name} is a core dependency"
    gui = " ".join(project["optional-dependencies"]["gui"]).lower()
    assert "napari" in gui and "magicgui" in gui and ("pyqt" in gui or "pyside" in gui)
