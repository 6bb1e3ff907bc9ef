import os

import numpy as np
import pytest
import torch

# deterministic, small: tests must not depend on the machine's thread count or a GPU
torch.set_num_threads(min(2, torch.get_num_threads()))
os.environ.setdefault("NAPARI_UNET_STACK_DEVICE", "cpu")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
