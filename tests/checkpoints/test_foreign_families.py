"""Foreign checkpoints: each reference code's files give its logits, metadata and errors.

Reference checkpoints are synthesized from the vendored key lists with random weights
(`synthetic_checkpoints`), saved in each code's own container format, and their logits
are compared with `reference_forward`, a functional re-implementation of the reference
forward passes on the raw state dict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reference_forward as _ref
import synthetic_checkpoints as _synth
import torch

from napari_unet_stack.checkpoints import CheckpointError, load_model
from napari_unet_stack.checkpoints.foreign import FAMILIES as FOREIGN_FAMILIES
from napari_unet_stack.checkpoints.foreign import family_of, strip_prefixes, unwrap_container
from napari_unet_stack.models import MilesialUNet, VGGNestedUNet, VGGUNet, WZMiaomiaoUNet

milesial_forward = _ref.milesial_forward
wzmiaomiao_forward = _ref.wzmiaomiao_forward
vgg_unet_forward = _ref.vgg_unet_forward
nested_unet_forward = _ref.nested_unet_forward
key_list, random_state, run = _synth.key_list, _synth.random_state, _synth.run
assert_same_logits, write_4uiiurz1 = _synth.assert_same_logits, _synth.write_4uiiurz1
with_conv_biases, wz_container = _synth.with_conv_biases, _synth.wz_container
milesial_to_wzmiaomiao = _synth.milesial_to_wzmiaomiao


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


@pytest.mark.slow  # published sizes: up to 124 MB of weights each
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


# -- detection -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "family", "network"),
    [
        ("milesial_unet_3in_2cls_transposed", "milesial", MilesialUNet),
        ("milesial_unet_3in_2cls_bilinear", "milesial", MilesialUNet),
        ("wzmiaomiao_unet_3in_2cls_base32_bilinear", "wzmiaomiao", WZMiaomiaoUNet),
        ("nested_repo_unet_3in_1cls", "vgg_unet", VGGUNet),
        ("nested_unet_3in_1cls", "vgg_nested", VGGNestedUNet),
        ("nested_unet_3in_1cls_deep_supervision", "vgg_nested", VGGNestedUNet),
    ],
)
def test_each_reference_is_recognized_by_its_keys(name, family, network):
    keys = dict.fromkeys(key for key, _ in key_list(name))
    found = family_of(keys)
    assert found is not None and found.name == family and found.network is network
    # a NestedUNet has a UNet's first node too: the order of FAMILIES decides
    matching = [f.name for f in FOREIGN_FAMILIES if f.matches(keys)]
    assert matching == (["vgg_nested", "vgg_unet"] if family == "vgg_nested" else [family])
    assert family_of({"encoder.0.weight": None, "decoder.bias": None}) is None


def test_containers_and_prefixes_are_unwrapped():
    weights = {"module.inc.double_conv.0.weight": torch.zeros(1), "module.outc.conv.bias": torch.ones(1)}
    nested = {"epoch": 3, "model": {"state_dict": weights}}
    assert unwrap_container(nested) is weights
    assert strip_prefixes(weights).keys() == {"inc.double_conv.0.weight", "outc.conv.bias"}
    compiled = {f"_orig_mod.{k}": v for k, v in strip_prefixes(weights).items()}
    assert strip_prefixes(compiled).keys() == {"inc.double_conv.0.weight", "outc.conv.bias"}
    both = {f"module._orig_mod.{k}": v for k, v in strip_prefixes(weights).items()}
    assert strip_prefixes(both).keys() == {"inc.double_conv.0.weight", "outc.conv.bias"}
    mixed = {"module.a": torch.zeros(1), "b": torch.zeros(1)}  # not every key: kept as is
    assert strip_prefixes(mixed) == mixed


def test_unreadable_config_yml_is_ignored_with_a_warning_at_the_call(tmp_path):
    state = random_state(key_list("nested_unet_3in_1cls"), shrink=8)
    path = write_4uiiurz1(tmp_path, state, arch="NestedUNet", input_channels=3, num_classes=1)
    (tmp_path / "config.yml").write_text("arch: [NestedUNet\n  : {")
    with pytest.warns(UserWarning, match=r"config\.yml.*not readable YAML") as record:
        model = load_model(path)
    assert record[0].filename == __file__  # points at the caller of load_model
    assert "config" not in model.meta["provenance"]
    x = torch.randn(1, 3, 32, 16)
    assert_same_logits(run(model, x), nested_unet_forward(state, x))
