"""save_model / load_model: our format, TorchScript, reference checkpoints, refusals and errors.

Reference checkpoints are synthesized from the vendored key lists
(tests/data/reference-checkpoints/*.json: the exact keys and shapes of each public code)
with random weights, saved in each code's own container format, and their logits are
compared with `reference_forward`, a functional re-implementation of the reference
forward passes on the raw state dict.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from napari_unet_stack import checkpoints
from napari_unet_stack.checkpoints import (
    CheckpointError,
    UnsafeCheckpointError,
    export_torchscript,
    list_models,
    load_model,
    save_model,
)
from napari_unet_stack.models import (
    MilesialUNet,
    NestedUNet,
    UNet,
    VGGNestedUNet,
    VGGUNet,
    WrappedNetwork,
    WZMiaomiaoUNet,
)

DATA = Path(__file__).parent / "data" / "reference-checkpoints"


def _import_helper(name: str):
    """Import a helper module beside this file (pytest runs with --import-mode=importlib)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_ref = _import_helper("reference_forward")
milesial_forward = _ref.milesial_forward
wzmiaomiao_forward = _ref.wzmiaomiao_forward
vgg_unet_forward = _ref.vgg_unet_forward
nested_unet_forward = _ref.nested_unet_forward


# -- synthetic reference checkpoints ----------------------------------------------------------
def key_list(name: str) -> list[tuple[str, tuple[int, ...]]]:
    entries = json.loads((DATA / f"{name}.json").read_text())["state_dict"]
    return [(e["key"], tuple(e["shape"])) for e in entries]


def random_state(entries, shrink: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights of the listed shapes; ``shrink`` divides every width (dims >= 32)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in entries:
        shape = tuple(d // shrink if d >= 32 else d for d in shape)
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith("running_mean"):
            state[key] = 0.1 * torch.randn(shape, generator=gen)
        elif len(shape) == 4:  # He-scaled convolution weights keep the logits O(1)
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif key.endswith("weight"):  # BatchNorm scale
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            state[key] = 0.1 * torch.randn(shape, generator=gen)
    return state


def with_conv_biases(state):
    """milesial's older layout: its 3x3 convolutions had biases."""
    out = {}
    for key, value in state.items():
        out[key] = value
        if re.search(r"double_conv\.[03]\.weight$", key):
            out[key[: -len("weight")] + "bias"] = 0.1 * torch.randn(value.shape[0])
    return out


def milesial_to_wzmiaomiao(entries):
    """Rename a milesial key list to WZMIAOMIAO's Sequential names (same network)."""
    rules = [
        (r"^inc\.double_conv\.", "in_conv."),
        (r"^down(\d)\.maxpool_conv\.1\.double_conv\.", r"down\1.1."),
        (r"^up(\d)\.conv\.double_conv\.", r"up\1.conv."),
        (r"^outc\.conv\.", "out_conv.0."),
    ]
    renamed = []
    for key, shape in entries:
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        renamed.append((key, shape))
    return renamed


def wz_container(state, epoch=7):
    """WZMIAOMIAO's train.py checkpoint."""
    return {
        "model": state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "params": [0, 1]}]},
        "lr_scheduler": {"last_epoch": epoch, "_step_count": epoch + 1},
        "epoch": epoch,
        "args": argparse.Namespace(data_path="./DRIVE", num_classes=1, device="cuda", lr=0.01),
    }


def write_4uiiurz1(folder: Path, state, **config) -> Path:
    """4uiiurz1's models/<name>/model.pth with config.yml beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "model.pth")
    settings = {
        "name": "dsb2018_96",
        "epochs": 100,
        "input_w": 96,
        "input_h": 96,
        "loss": "BCEDiceLoss",
    }
    settings.update(config)
    (folder / "config.yml").write_text(yaml.dump(settings))
    return folder / "model.pth"


def run(model, x):
    with torch.no_grad():
        return model(x)


def assert_same_logits(ours, expected):
    assert ours.shape == expected.shape
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


# -- reference families at their published sizes ---------------------------------------------
# fmt: off
FAMILIES = {
    # name: (reference forward, our class, container, input H x W, normalization mode, activation)
    "milesial_unet_3in_2cls_transposed":
        (milesial_forward, MilesialUNet, "plain", (67, 45), "scale", "softmax"),
    "milesial_unet_3in_2cls_bilinear":
        (milesial_forward, MilesialUNet, "plain", (67, 45), "scale", "softmax"),
    "wzmiaomiao_unet_3in_2cls_base32_bilinear":
        (wzmiaomiao_forward, WZMiaomiaoUNet, "wz", (67, 45), "meanstd", "softmax"),
    "nested_repo_unet_3in_1cls":
        (vgg_unet_forward, VGGUNet, "4uiiurz1", (32, 16), "scale", "sigmoid"),
    "nested_unet_3in_1cls":
        (nested_unet_forward, VGGNestedUNet, "4uiiurz1", (32, 16), "scale", "sigmoid"),
    "nested_unet_3in_1cls_deep_supervision":
        (nested_unet_forward, VGGNestedUNet, "4uiiurz1", (32, 16), "scale", "sigmoid"),
}
# fmt: on


def write_family(tmp_path: Path, name: str, state) -> Path:
    container = FAMILIES[name][2]
    if container == "4uiiurz1":
        nested = name.startswith("nested_unet")
        return write_4uiiurz1(
            tmp_path / "models" / name,
            state,
            arch="NestedUNet" if nested else "UNet",
            input_channels=3,
            num_classes=1,
            deep_supervision=name.endswith("deep_supervision"),
        )
    path = tmp_path / f"{name}.pth"
    torch.save(wz_container(state) if container == "wz" else state, path)
    return path


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_reference_checkpoint_gives_reference_logits(tmp_path, name):
    forward, cls, _, (h, w), norm_mode, activation = FAMILIES[name]
    state = random_state(key_list(name))
    path = write_family(tmp_path, name, state)
    model = load_model(path)
    path.unlink()  # up to 124 MB; pytest keeps the last runs' temporary folders

    assert type(model) is cls
    assert not model.training
    assert (model.in_channels, model.out_channels) == (3, state[next(reversed(state))].shape[0])
    assert model.activation == activation
    assert model.meta["normalization"]["mode"] == norm_mode
    assert model.meta["provenance"]["source"].endswith(".pth")
    x = torch.randn(1, 3, h, w)
    expected = forward(state, x)
    if isinstance(expected, list):  # deep supervision: the reference validates with the last head
        expected = expected[-1]
    assert_same_logits(run(model, x), expected)
    # geometry the engine reads
    assert model.halo % model.size_multiple == 0 and model.halo >= model.reach > 0
    assert model.exact_tiling == ("transposed" in name)


def test_import_metadata_follows_the_references(tmp_path):
    wz = random_state(key_list("wzmiaomiao_unet_3in_2cls_base32_bilinear"), shrink=8)
    torch.save(wz_container(wz, epoch=42), tmp_path / "best_model.pth")
    model = load_model(tmp_path / "best_model.pth")
    assert model.normalization == {
        "mode": "meanstd",
        "mean": [0.709, 0.381, 0.224],
        "std": [0.127, 0.079, 0.043],
        "divisor": 255.0,
        "scope": "slice",
    }
    prov = model.meta["provenance"]
    assert prov["imported_from"].startswith("WZMIAOMIAO")
    assert prov["epoch"] == 42 and prov["args"]["data_path"] == "./DRIVE"

    sd = random_state(key_list("milesial_unet_3in_2cls_transposed"), shrink=8)
    torch.save(sd, tmp_path / "m.pth")
    model = load_model(tmp_path / "m.pth")
    assert model.normalization["mode"] == "scale" and model.normalization["when_above"] == 1
    assert model.meta["provenance"] == {
        "imported_from": "milesial/Pytorch-UNet",
        "source": str(tmp_path / "m.pth"),
    }
    assert "class_values" not in model.meta


# -- container variants (widths shrunk 8x to stay fast) --------------------------------------
def test_milesial_mask_values_become_class_values(tmp_path):
    state = random_state(key_list("milesial_unet_3in_2cls_transposed"), shrink=8)
    torch.save({**state, "mask_values": [0, 255]}, tmp_path / "checkpoint_epoch5.pth")
    model = load_model(tmp_path / "checkpoint_epoch5.pth")
    assert model.meta["class_values"] == [0, 255]
    x = torch.randn(1, 3, 67, 45)
    assert_same_logits(run(model, x), milesial_forward(state, x))


def test_milesial_older_layout_with_conv_biases(tmp_path):
    state = with_conv_biases(random_state(key_list("milesial_unet_3in_2cls_bilinear"), shrink=8))
    assert "inc.double_conv.0.bias" in state
    torch.save(state, tmp_path / "old.pth")
    model = load_model(tmp_path / "old.pth")
    assert model.conv_bias and model.bilinear
    x = torch.randn(1, 3, 45, 67)
    assert_same_logits(run(model, x), milesial_forward(state, x))


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model_state_dict", "net", "model"])
def test_dataparallel_prefix_and_wrapper_keys(tmp_path, wrapper):
    state = random_state(key_list("milesial_unet_3in_2cls_transposed"), shrink=8)
    prefixed = {f"module.{k}": v for k, v in state.items()}
    # training scripts often store numpy scalars beside the weights: safe to read
    extras = {"epoch": np.int64(3), "best_dice": np.float64(0.93)}
    torch.save(prefixed if wrapper is None else {wrapper: prefixed, **extras}, tmp_path / "dp.pth")
    model = load_model(tmp_path / "dp.pth")
    x = torch.randn(1, 3, 32, 32)
    assert_same_logits(run(model, x), milesial_forward(state, x))


def test_wzmiaomiao_transposed_variant(tmp_path):
    entries = milesial_to_wzmiaomiao(key_list("milesial_unet_3in_2cls_transposed"))
    state = random_state(entries, shrink=8)
    torch.save(wz_container(state), tmp_path / "wz.pth")
    model = load_model(tmp_path / "wz.pth")
    assert type(model) is WZMiaomiaoUNet and not model.bilinear
    x = torch.randn(1, 3, 67, 45)
    assert_same_logits(run(model, x), wzmiaomiao_forward(state, x))


def test_legacy_torch_save_format(tmp_path):
    state = random_state(key_list("nested_repo_unet_3in_1cls"), shrink=8)
    torch.save(state, tmp_path / "model.pth", _use_new_zipfile_serialization=False)
    model = load_model(tmp_path / "model.pth")
    x = torch.randn(1, 3, 32, 32)
    assert_same_logits(run(model, x), vgg_unet_forward(state, x))


def test_deep_supervision_head_selection(tmp_path):
    state = random_state(key_list("nested_unet_3in_1cls_deep_supervision"), shrink=8)
    path = write_4uiiurz1(
        tmp_path, state, arch="NestedUNet", deep_supervision=True, input_channels=3, num_classes=1
    )
    x = torch.randn(1, 3, 32, 48)
    heads = nested_unet_forward(state, x)  # the reference returns all four
    expected = {"last": heads[-1], "mean": torch.stack(heads).mean(0)}
    expected.update({k: heads[k - 1] for k in range(1, 5)})

    model = load_model(path)  # default: the last head, as the reference validates
    assert model.head == "last" and model.depth == 4
    assert_same_logits(run(model, x), heads[-1])
    with torch.no_grad():
        for ours, ref in zip(model.forward_heads(x), heads, strict=True):
            assert_same_logits(ours, ref)
    for head, logits in expected.items():
        if head in ("mean", 2):  # the override
            model = load_model(path, head=head)
        else:  # the same setting on the loaded model
            model.head = head
        assert_same_logits(run(model, x), logits)
        if isinstance(head, int):
            assert model.depth == head  # only the nodes this head needs are computed
            assert model.halo < 144 or head == 4


def test_head_override_needs_deep_supervision(tmp_path):
    state = random_state(key_list("nested_unet_3in_1cls"), shrink=8)
    torch.save(state, tmp_path / "model.pth")
    assert load_model(tmp_path / "model.pth", head="last").head == "last"
    with pytest.raises(ValueError, match="deep supervision"):
        load_model(tmp_path / "model.pth", head="mean")
    torch.save(
        random_state(key_list("milesial_unet_3in_2cls_transposed"), shrink=8), tmp_path / "m.pth"
    )
    with pytest.raises(ValueError, match="single output head"):
        load_model(tmp_path / "m.pth", head=2)


def test_4uiiurz1_config_yml_must_agree_with_the_weights(tmp_path):
    state = random_state(key_list("nested_unet_3in_1cls"), shrink=8)
    path = write_4uiiurz1(
        tmp_path / "a",
        state,
        arch="NestedUNet",
        deep_supervision=False,
        input_channels=3,
        num_classes=1,
    )
    assert load_model(path).meta["provenance"]["config"]["input_w"] == 96
    for wrong in (
        {"arch": "UNet"},
        {"num_classes": 2},
        {"deep_supervision": True},
        {"input_channels": 1},
    ):
        settings = {
            "arch": "NestedUNet",
            "deep_supervision": False,
            "input_channels": 3,
            "num_classes": 1,
        }
        path = write_4uiiurz1(tmp_path / "b", state, **{**settings, **wrong})
        key = next(iter(wrong))
        with pytest.raises(CheckpointError, match=f"config.yml.*{key}"):
            load_model(path)


def test_inconsistent_reference_weights_are_reported(tmp_path):
    state = random_state(key_list("milesial_unet_3in_2cls_transposed"), shrink=8)
    del state["up2.conv.double_conv.3.weight"]
    state["up1.up.weight"] = torch.zeros(5, 5, 2, 2)
    state["up3.up.bias"] = [1.0, 2.0]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(
        CheckpointError,
        match=r"broken\.pth.*missing: up2\.conv\.double_conv\.3\.weight.*"
        r"wrong shape: up1\.up\.weight.*up3\.up\.bias a list",
    ):
        load_model(tmp_path / "broken.pth")


# -- our format --------------------------------------------------------------------------------
def _trained_like(model):
    """Non-default BatchNorm statistics so the round trip is not trivially equal."""
    gen = torch.Generator().manual_seed(1)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(0.1 * torch.randn(buf.shape, generator=gen))
        elif name.endswith("running_var"):
            buf.copy_(torch.rand(buf.shape, generator=gen) + 0.5)
    return model.eval()


@pytest.mark.parametrize(
    ("model", "size"),
    [
        (UNet(1, 2, base_channels=4, depth=3), 48),
        (UNet(3, 3, base_channels=4, depth=2, upsampling="bilinear"), 40),
        (UNet(1, 2, base_channels=4, depth=2, padding="valid"), 60),
        (NestedUNet(2, 1, base_channels=4, depth=3, deep_supervision=True, head=2), 32),
        (NestedUNet(1, 3, base_channels=4, depth=2), 32),
    ],
    ids=["unet-transposed", "unet-bilinear", "unet-valid", "nested-ds-head2", "nested"],
)
def test_own_format_round_trip_is_exact(tmp_path, model, size):
    model = _trained_like(model)
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
    model = _trained_like(
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


# -- TorchScript -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model",
    [
        UNet(1, 2, base_channels=4, depth=3),
        UNet(1, 2, base_channels=4, depth=2, padding="valid"),
        NestedUNet(1, 1, base_channels=4, depth=3, deep_supervision=True, head=2),
        MilesialUNet(3, 2, base_channels=4),
    ],
    ids=["unet", "unet-valid", "nested-head2", "milesial"],
)
def test_torchscript_round_trip_via_export(tmp_path, model):
    model = _trained_like(model)
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
    net = _trained_like(UNet(2, 3, base_channels=4, depth=2))
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


# -- bundled models ----------------------------------------------------------------------------
def test_bundled_models(tmp_path, monkeypatch):
    assert list_models() == sorted(list_models())
    folder = tmp_path / "bundled_models"
    monkeypatch.setattr(checkpoints, "_bundled_dir", lambda: folder)
    assert list_models() == []
    folder.mkdir()
    save_model(
        UNet(1, 2, base_channels=4, depth=2), folder / "tiny_unet.pt", class_names=["bg", "fg"]
    )
    save_model(UNet(1, 2, base_channels=4, depth=2), folder / "another.pt")
    (folder / "README.txt").write_text("not a model")
    assert list_models() == ["another", "tiny_unet"]
    assert load_model("tiny_unet").class_names == ["bg", "fg"]
