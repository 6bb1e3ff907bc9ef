import importlib.util
import os

import numpy as np
import pytest
import torch

# napari's fixtures (make_napari_viewer) by module name, its entry point blocked in pyproject.toml:
# loaded this way pytest rewrites the asserts of that one module, not of all of napari's
pytest_plugins = ["napari.utils._testsupport"] if importlib.util.find_spec("napari") else []

# deterministic, small: tests must not depend on the machine's thread count or a GPU
torch.set_num_threads(min(2, torch.get_num_threads()))
os.environ.setdefault("NAPARI_UNET_STACK_DEVICE", "cpu")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def threshold_net():
    """A one-channel sigmoid "network" with foreground where the image is above 0.5 (reach 0):
    its semantic labels are known exactly, so instance tests can draw the expected objects."""
    from napari_unet_stack.models.base import SegmentationNetwork

    class Threshold(SegmentationNetwork):
        in_channels, out_channels, depth = 1, 1, 1

        def _reach(self):
            return 0

        def forward(self, x):
            return (x - 0.5) * 100

    return Threshold


@pytest.fixture
def load_benchmark():
    """``load_benchmark("bench_user")``: a script of benchmarks/ loaded by path, as a module."""
    import importlib.util
    from pathlib import Path

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
