"""Files that are not checkpoints, missing files and wrong overrides: clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet_stack.checkpoints import (
    CheckpointError,
    UnsafeCheckpointError,
    load_model,
    save_model,
)
from napari_unet_stack.models import UNet


# -- files that are not checkpoints ------------------------------------------------------------
def _bad_files(folder: Path) -> dict[str, Path]:
    files = {}
    rng = np.random.default_rng(0)
    files["garbage"] = folder / "garbage.pt"
    files["garbage"].write_bytes(rng.bytes(4096))
    files["empty"] = folder / "empty.pt"
    files["empty"].write_bytes(b"")
    real = folder / "real.pt"
    save_model(UNet(1, 2, base_channels=4, depth=2), real)
    files["truncated"] = folder / "truncated.pt"
    files["truncated"].write_bytes(real.read_bytes()[: real.stat().st_size // 2])
    files["text"] = folder / "notes.txt"
    files["text"].write_text("epoch 1: loss 0.3\nepoch 2: loss 0.2\n")
    files["png"] = folder / "image.png"
    files["png"].write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(256))
    files["directory"] = folder / "a_folder.pt"
    files["directory"].mkdir()
    files["unrelated"] = folder / "unrelated.pt"
    torch.save(
        {"encoder.0.weight": torch.randn(4, 4), "decoder.bias": torch.randn(4)}, files["unrelated"]
    )
    files["not a dict"] = folder / "list.pt"
    torch.save([torch.zeros(2)], files["not a dict"])
    return files


@pytest.mark.parametrize(
    "kind", ["garbage", "empty", "truncated", "text", "png", "directory", "unrelated", "not a dict"]
)
def test_non_checkpoints_give_clear_errors(tmp_path, kind):
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert path.name in message
    assert "Supported formats" in message and "milesial" in message
    assert not isinstance(info.value, UnsafeCheckpointError)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pt"):
        load_model(tmp_path / "nowhere.pt")
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        load_model("no_such_model")
    with pytest.raises(TypeError, match="source"):
        load_model(3)


def test_overrides_are_checked(tmp_path):
    save_model(UNet(1, 2, base_channels=4, depth=2), tmp_path / "m.pt")
    with pytest.raises(TypeError, match="tile_size"):
        load_model(tmp_path / "m.pt", tile_size=256)
    with pytest.raises(CheckpointError, match="in_channels=3"):
        load_model(tmp_path / "m.pt", in_channels=3)
    with pytest.raises(TypeError, match="halo"):
        load_model(tmp_path / "m.pt", halo=64)
    with pytest.raises(ValueError, match="class_values"):
        load_model(tmp_path / "m.pt", class_values=[0, 1, 2])
    model = load_model(
        tmp_path / "m.pt", in_channels=1, class_values=[0, 255], normalization="zscore"
    )
    assert model.meta["class_values"] == [0, 255] and model.normalization["mode"] == "zscore"
