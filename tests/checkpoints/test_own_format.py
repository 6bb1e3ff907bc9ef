"""Our format: save_model / load_model round trips, metadata, the training state, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import synthetic_checkpoints as _synth
import torch

from napari_unet_stack.checkpoints import CheckpointError, load_model, save_model
from napari_unet_stack.models import MilesialUNet, NestedUNet, UNet, WrappedNetwork

key_list, random_state, run = _synth.key_list, _synth.random_state, _synth.run
trained_like = _synth.trained_like


@pytest.mark.parametrize(
    ("model", "size"),
    [
        (UNet(1, 2, base_channels=4, depth=3), 48),
        (UNet(3, 3, base_channels=4, depth=2, upsampling="bilinear"), 40),
        (UNet(1, 2, base_channels=4, depth=2, padding="valid"), 60),
        (UNet(2, 3, base_channels=4, depth=2, downsampling="strided"), 40),
        (NestedUNet(2, 1, base_channels=4, depth=3, deep_supervision=True, head=2), 32),
        (NestedUNet(1, 3, base_channels=4, depth=2), 32),
    ],
    ids=["unet-transposed", "unet-bilinear", "unet-valid", "unet-strided", "nested-ds-head2", "nested"],
)
def test_own_format_round_trip_is_exact(tmp_path, model, size):
    model = trained_like(model)
    meta = {
        "normalization": {"mode": "percentile", "low": 2.0, "high": 99.5},
        "class_names": [f"c{k}" for k in range(model.out_channels)],
        "provenance": {"steps": 10, "dice": np.float32(0.5), "curve": np.arange(3)},
    }
    path = save_model(model, tmp_path / "model.pt", **meta)
    assert path == tmp_path / "model.pt"
    raw = torch.load(path, weights_only=True)  # plain data only
    assert raw["format"] == "napari-unet-stack" and raw["format_version"] == 1
    assert raw["meta"]["provenance"] == {"steps": 10, "dice": 0.5, "curve": [0, 1, 2]}

    loaded = load_model(path)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.config() == model.config()
    assert loaded.meta == model.meta == raw["meta"]
    assert loaded.meta["normalization"]["scope"] == "slice"
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.randn(2, model.in_channels, size, size)
    assert torch.equal(run(loaded, x), run(model, x))
    assert (loaded.halo, loaded.valid_margin, loaded.activation) == (
        model.halo,
        model.valid_margin,
        model.activation,
    )


def test_nested_head_and_fast_head_survive(tmp_path):
    model = trained_like(
        NestedUNet(1, 1, base_channels=4, depth=3, deep_supervision=True, head="fast")
    )
    save_model(model, tmp_path / "n.pt", fast_head=2)
    loaded = load_model(tmp_path / "n.pt")
    assert loaded.head == "fast" and loaded.active_head == 2 and loaded.depth == 2
    assert load_model(tmp_path / "n.pt", head="mean").head == "accurate"
    assert load_model(tmp_path / "n.pt", head="last").head == 3


def test_imported_reference_can_be_saved_in_our_format(tmp_path):
    state = random_state(key_list("milesial_unet_3in_2cls_bilinear"), shrink=8)
    torch.save({**state, "mask_values": [0, 1]}, tmp_path / "m.pth")
    imported = load_model(tmp_path / "m.pth")
    save_model(imported, tmp_path / "ours.pt", class_names=["background", "car"])
    loaded = load_model(tmp_path / "ours.pt")
    assert type(loaded) is MilesialUNet
    assert loaded.meta["class_values"] == [0, 1] and loaded.class_names == ["background", "car"]
    x = torch.randn(1, 3, 67, 45)
    assert torch.equal(run(loaded, x), run(imported, x))


def test_activation_is_stored(tmp_path):
    model = UNet(1, 2, base_channels=4, depth=2)
    save_model(model, tmp_path / "a.pt", activation="sigmoid")
    assert model.activation == "sigmoid"
    assert load_model(tmp_path / "a.pt").activation == "sigmoid"
    assert load_model(tmp_path / "a.pt", activation="softmax").activation == "softmax"


def _with_training_state(model):
    """A model carrying a training state like `train` leaves: real AdamW moments after two
    steps, the schedule position and a numpy RNG state (a 128-bit int inside)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    for _ in range(2):
        for p in params:
            p.grad = torch.randn_like(p)
        optimizer.step()
    rng = np.random.default_rng(5)
    rng.random(3)
    model.training_state = {
        "version": 1, "step": 2, "total": 10, "warmup": 1, "finished": False,
        "lr": 1e-3, "weight_decay": 1e-4, "seed": 5, "grad_scaler": None,
        "rng": rng.bit_generator.state,
        "optimizer": {
            "state": {k: {n: t.clone() for n, t in v.items()} for k, v in optimizer.state_dict()["state"].items()},
            "param_groups": optimizer.state_dict()["param_groups"],
        },
    }  # fmt: skip
    return model


def test_training_state_round_trip(tmp_path):
    model = _with_training_state(UNet(1, 2, base_channels=4, depth=2))
    saved = model.training_state
    path = save_model(model, tmp_path / "resumable.pt")
    raw = torch.load(path, weights_only=True)  # still plain data only
    assert "training_state" in raw and "training_state" not in raw["meta"]

    loaded = load_model(path)
    state = loaded.training_state
    assert {k: v for k, v in state.items() if k != "optimizer"} == {
        k: v for k, v in saved.items() if k != "optimizer"
    }
    assert state["optimizer"]["param_groups"] == saved["optimizer"]["param_groups"]
    moments = saved["optimizer"]["state"]
    assert state["optimizer"]["state"].keys() == moments.keys() and len(moments) > 0
    for index, entry in moments.items():
        for name, tensor in entry.items():  # step, exp_avg, exp_avg_sq
            assert torch.equal(state["optimizer"]["state"][index][name], tensor), (index, name)
    # an AdamW over the loaded weights takes the moments back
    optimizer = torch.optim.AdamW([p for p in loaded.parameters() if p.requires_grad])
    optimizer.load_state_dict(state["optimizer"])
    restored = optimizer.state_dict()["state"]
    assert all(torch.equal(restored[0][n], moments[0][n]) for n in ("exp_avg", "exp_avg_sq"))
    # the numpy RNG continues where it was
    rng = np.random.default_rng()
    rng.bit_generator.state = state["rng"]
    expected = np.random.default_rng()
    expected.bit_generator.state = saved["rng"]
    assert rng.random() == expected.random()

    # the opt-out keeps it out: weights and metadata only, a smaller file
    light = save_model(model, tmp_path / "light.pt", include_training_state=False)
    assert "training_state" not in torch.load(light, weights_only=True)
    assert load_model(light).training_state is None
    assert light.stat().st_size < 0.6 * path.stat().st_size
    # models without one (new, bundled, imported) save and load as before
    plain = save_model(UNet(1, 2, base_channels=4, depth=2), tmp_path / "plain.pt")
    assert "training_state" not in torch.load(plain, weights_only=True)
    assert load_model(plain).training_state is None


def test_training_state_must_be_plain_data(tmp_path):
    model = UNet(1, 2, base_channels=4, depth=2)
    model.training_state = {"version": 1, "callback": print}
    with pytest.raises(TypeError, match=r"training_state\['callback'\]"):
        save_model(model, tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()
    save_model(model, tmp_path / "ok.pt", include_training_state=False)  # the opt-out saves
    # a malformed entry in a file is ignored with a warning: the weights still load
    raw = torch.load(tmp_path / "ok.pt", weights_only=True)
    torch.save({**raw, "training_state": [1, 2]}, tmp_path / "odd.pt")
    with pytest.warns(UserWarning, match="malformed training state"):
        assert load_model(tmp_path / "odd.pt").training_state is None


def test_save_rejects_bad_metadata(tmp_path):
    model = UNet(1, 2, base_channels=4, depth=2)
    with pytest.raises(TypeError, match=r"provenance\['when'\]"):
        save_model(model, tmp_path / "x.pt", provenance={"when": object()})
    with pytest.raises(TypeError, match=r"provenance\['objects'\]"):
        save_model(
            model, tmp_path / "x.pt", provenance={"objects": np.array([print], dtype=object)}
        )
    with pytest.raises(TypeError, match="my_callback"):
        save_model(model, tmp_path / "x.pt", my_callback=print)
    with pytest.raises(ValueError, match="class_names"):
        save_model(model, tmp_path / "x.pt", class_names=["only one"])
    with pytest.raises(ValueError, match="percentiles"):
        save_model(
            model, tmp_path / "x.pt", normalization={"mode": "percentile", "low": 50, "high": 10}
        )
    assert not (tmp_path / "x.pt").exists()
    assert model.meta == {}  # nothing merged on failure


def test_save_is_atomic(tmp_path, monkeypatch):
    model = UNet(1, 2, base_channels=4, depth=2)
    target = save_model(model, tmp_path / "m.pt")
    before = target.read_bytes()

    def half_write(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_write)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, target, class_names=["a", "b"])
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temporary file left


def test_saved_models_get_the_users_permissions(tmp_path):
    # like any file the user writes (umask), not mkstemp's owner-only 0600
    import os

    from napari_unet_stack.checkpoints import export_torchscript

    model = UNet(1, 2, base_channels=4, depth=2)
    old = os.umask(0o022)
    try:
        own = save_model(model, tmp_path / "m.pt")
        script = export_torchscript(model, tmp_path / "m.ts")
    finally:
        os.umask(old)
    assert own.stat().st_mode & 0o777 == 0o644
    assert Path(script).stat().st_mode & 0o777 == 0o644


def test_models_without_config_need_torchscript(tmp_path):
    wrapped = WrappedNetwork(torch.nn.Conv2d(1, 2, 1), in_channels=1, out_channels=2)
    with pytest.raises(TypeError, match="export_torchscript"):
        save_model(wrapped, tmp_path / "w.pt")
    with pytest.raises(TypeError, match="SegmentationNetwork"):
        save_model(torch.nn.Conv2d(1, 2, 1), tmp_path / "w.pt")


def test_newer_format_version_is_refused(tmp_path):
    save_model(UNet(1, 2, base_channels=4, depth=2), tmp_path / "m.pt")
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    raw["format_version"] = 99
    torch.save(raw, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"format version 99.*upgrade"):
        load_model(tmp_path / "m.pt")


def test_checkpoint_from_before_the_downsampling_option_loads(tmp_path):
    model = trained_like(UNet(1, 2, base_channels=4, depth=2))
    raw = torch.load(save_model(model, tmp_path / "new.pt"), weights_only=True)
    assert raw["config"]["kwargs"].pop("downsampling") == "maxpool"
    torch.save(raw, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt")
    assert loaded.downsampling == "maxpool"
    x = torch.randn(1, 1, 32, 32)
    assert torch.equal(run(loaded, x), run(model, x))
