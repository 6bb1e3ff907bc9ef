"""TorchScript: export_torchscript round trips, and plain traced archives with overrides."""

from __future__ import annotations

import pytest
import synthetic_checkpoints as _synth
import torch

from napari_unet_stack.checkpoints import CheckpointError, export_torchscript, load_model
from napari_unet_stack.models import MilesialUNet, NestedUNet, UNet, WrappedNetwork

run, trained_like = _synth.run, _synth.trained_like


# -- TorchScript -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model",
    [
        UNet(1, 2, base_channels=4, depth=3),
        UNet(1, 2, base_channels=4, depth=2, padding="valid"),
        UNet(1, 2, base_channels=4, depth=2, downsampling="strided"),
        NestedUNet(1, 1, base_channels=4, depth=3, deep_supervision=True, head=2),
        pytest.param(MilesialUNet(3, 2, base_channels=4), marks=pytest.mark.slow),
    ],
    ids=["unet", "unet-valid", "unet-strided", "nested-head2", "milesial"],
)
def test_torchscript_round_trip_via_export(tmp_path, model):
    model = trained_like(model)
    model.meta["class_names"] = [f"c{k}" for k in range(model.out_channels)]
    path = export_torchscript(model, tmp_path / "model.ts")
    loaded = load_model(path)
    assert isinstance(loaded, WrappedNetwork) and not loaded.training
    assert (loaded.in_channels, loaded.out_channels, loaded.depth) == (
        model.in_channels,
        model.out_channels,
        model.depth,
    )
    assert (loaded.halo, loaded.valid_margin, loaded.exact_tiling) == (
        model.halo,
        model.valid_margin,
        model.exact_tiling,
    )
    assert loaded.activation == model.activation and loaded.meta == model.meta
    size = model.input_size_for(40)
    assert loaded.input_size_for(40) == size and loaded.output_size(size) == model.output_size(size)
    x = torch.randn(2, model.in_channels, size, size + model.size_multiple)
    assert torch.equal(run(loaded, x), run(model, x))


@pytest.mark.filterwarnings("ignore:.*torch.jit:DeprecationWarning")
def test_plain_traced_file_with_overrides(tmp_path):
    net = trained_like(UNet(2, 3, base_channels=4, depth=2))
    traced = torch.jit.trace(net, torch.zeros(1, 2, 32, 32))
    torch.jit.save(traced, str(tmp_path / "traced.pt"))
    with pytest.raises(CheckpointError, match="in_channels"):
        load_model(tmp_path / "traced.pt")
    loaded = load_model(tmp_path / "traced.pt", in_channels=2, depth=2, halo=40)
    assert loaded.out_channels == 3  # found by a probe forward
    assert loaded.halo == 40 and loaded.size_multiple == 4
    assert loaded.meta["provenance"]["imported_from"] == "TorchScript"
    loaded = load_model(
        tmp_path / "traced.pt", in_channels=2, n_classes=3, class_names=["a", "b", "c"]
    )
    assert loaded.class_names == ["a", "b", "c"]
    x = torch.randn(1, 2, 32, 48)
    assert torch.equal(run(loaded, x), run(net, x))
    with pytest.raises(CheckpointError, match="probe forward"):
        load_model(tmp_path / "traced.pt", in_channels=5)
