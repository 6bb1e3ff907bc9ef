"""Fixtures of the trainer's tests: small data, a tiny UNet, fast settings, one trained model."""

from __future__ import annotations

import pytest
import torch

from napari_unet_stack.models import UNet
from napari_unet_stack.synthetic import nuclei_stack
from napari_unet_stack.training import train

FAST = {"patch_size": 48, "batch_size": 4, "lr": 5e-3, "device": "cpu"}


def _tiny_unet(n_classes=2, in_channels=1, **kw):
    return UNet(in_channels, n_classes, base_channels=8, depth=2, **kw)


@pytest.fixture
def fast():
    """Settings of a quick CPU run (a fresh copy per test)."""
    return dict(FAST)


@pytest.fixture(scope="session")
def tiny_unet():
    """``tiny_unet(n_classes=2, in_channels=1, **kw)``: a UNet of 8 channels, depth 2."""
    return _tiny_unet


@pytest.fixture(scope="session")
def data():
    return nuclei_stack((6, 64, 64), seed=3)


@pytest.fixture(scope="session")
def held_out():
    return nuclei_stack((2, 64, 64), seed=4)


@pytest.fixture(scope="session")
def trained(data):
    """(model, history, progress calls) of 50 steps of a tiny UNet; tests must not change it."""
    torch.manual_seed(0)
    calls = []
    model, history = train(
        data.image,
        data.labels,
        _tiny_unet(),
        steps=50,
        val_every=10,
        progress=lambda step, total, info: calls.append((step, total, dict(info))),
        **FAST,
    )
    return model, history, calls
