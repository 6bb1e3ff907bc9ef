"""Pickle safety: code in a pickle never runs without trust=True; pickled modules need it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from napari_unet_stack.checkpoints import CheckpointError, UnsafeCheckpointError, load_model
from napari_unet_stack.models import WrappedNetwork


def run(model, x):
    with torch.no_grad():
        return model(x)


# -- security ----------------------------------------------------------------------------------
class _Payload:
    """Unpickling this would create a marker file (stands for any code execution)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        return {"out": self.conv(x)}


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "innocent_model.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Payload(marker)}, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert "innocent_model.pth" in message and "trust=True" in message
    assert re.search(r"\b(posix|nt|os)\.system\b", message)
    assert isinstance(info.value, CheckpointError) and isinstance(info.value, ValueError)
    assert not marker.exists()


def test_pickled_module_needs_trust(tmp_path):
    net = TinyNet().eval()
    torch.save(net, tmp_path / "full.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"full\.pt.*TinyNet.*trust=True"):
        load_model(tmp_path / "full.pt")
    loaded = load_model(tmp_path / "full.pt", trust=True, in_channels=1)
    assert isinstance(loaded, WrappedNetwork) and loaded.out_channels == 2
    x = torch.randn(1, 1, 16, 16)
    assert torch.equal(run(loaded, x), run(net, x)["out"])
    # a training script's dict around the pickled module
    torch.save({"model": net, "epoch": 3}, tmp_path / "wrapped.pt")
    with pytest.raises(UnsafeCheckpointError, match="TinyNet"):
        load_model(tmp_path / "wrapped.pt")
    loaded = load_model(tmp_path / "wrapped.pt", trust=True, in_channels=1, n_classes=2, depth=2)
    assert loaded.size_multiple == 4 and torch.equal(run(loaded, x), run(net, x)["out"])
