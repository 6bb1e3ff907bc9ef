"""The strided-convolution tutorial UNet's checkpoints: recognised by their sub-keys whatever
the stage names, and giving the centre of the reference's (H + 2) x (W + 2) logits.

Checkpoints are synthesized from the vendored key list with random weights;
`reference_forward.strided_tutorial_forward` is an independent functional forward on the
raw state dict.
"""

from __future__ import annotations

import pytest
import reference_forward as _ref
import synthetic_checkpoints as _synth
import torch

from napari_unet_stack.checkpoints import CheckpointError, load_model, save_model
from napari_unet_stack.checkpoints.foreign import FAMILIES, family_of
from napari_unet_stack.models import StridedTutorialUNet

NAME = "strided_tutorial_unet_1in_1cls"
key_list, random_state, run = _synth.key_list, _synth.random_state, _synth.run
assert_same_logits = _synth.assert_same_logits
forward = _ref.strided_tutorial_forward

#: canonical stage -> a user's names (nested, unordered-looking) for the renaming tests
USER_NAMES = {
    **{f"d{k}": f"encoder.stage{5 - k}" for k in range(1, 5)},  # names sort the wrong way
    **{f"u{k}": f"decoder_{'abcd'[k - 1]}" for k in range(1, 5)},
    "o": "out_block",
}


def renamed(state, names=USER_NAMES):
    out = {}
    for key, value in state.items():
        stage, rest = key.split(".", 1)
        out[f"{names.get(stage, stage)}.{rest}"] = value
    return out


def check_reference(model, state, x, stages=None):
    expected = forward(state, x, stages)
    h, w = x.shape[-2:]
    assert expected.shape[-2:] == (h + 2, w + 2)  # the reference's padding=1 head
    # its frame is the bias alone, so the import loses nothing by returning the centre
    bias = state[(stages or {}).get("o", "o") + ".6.bias"].view(1, -1, 1, 1)
    frame = expected.clone()
    frame[..., 1:-1, 1:-1] = bias
    torch.testing.assert_close(frame, bias.expand_as(frame))
    assert_same_logits(run(model, x), expected[..., 1:-1, 1:-1])


@pytest.mark.slow  # the published widths: 31 M parameters
def test_published_size_gives_the_reference_centre(tmp_path):
    state = random_state(key_list(NAME))
    torch.save(state, tmp_path / "unet.pth")
    model = load_model(tmp_path / "unet.pth")
    (tmp_path / "unet.pth").unlink()
    assert type(model) is StridedTutorialUNet and not model.training
    assert (model.in_channels, model.out_channels, model.depth, model.base_channels) == (1, 1, 4, 64)
    check_reference(model, state, torch.randn(1, 1, 48, 32))


def test_shrunk_checkpoint_metadata_and_logits(tmp_path):
    state = random_state(key_list(NAME), shrink=16)
    torch.save(state, tmp_path / "unet.pth")
    model = load_model(tmp_path / "unet.pth")
    assert model.base_channels == 4 and model.activation == "sigmoid"
    assert model.exact_tiling and model.halo % 16 == 0 and model.halo >= model.reach
    assert model.normalization["mode"] == "scale" and model.normalization["divisor"] == 255
    assert model.meta["provenance"]["imported_from"].startswith("medical-imaging UNet tutorial")
    assert "stage_names" not in model.meta["provenance"]
    check_reference(model, state, torch.randn(2, 1, 32, 80))


def test_other_stage_names_in_a_container_with_prefixes(tmp_path):
    state = random_state(key_list(NAME), shrink=16, seed=3)
    user = renamed(state)
    wrapped = {"epoch": 9, "state_dict": {f"module.{k}": v for k, v in user.items()}}
    torch.save(wrapped, tmp_path / "best.pth")
    model = load_model(tmp_path / "best.pth")
    check_reference(model, user, torch.randn(1, 1, 64, 48), USER_NAMES)
    assert model.meta["provenance"]["stage_names"] == {v: k for k, v in USER_NAMES.items()}
    # and it saves in our format and rebuilds, logits unchanged
    save_model(model, tmp_path / "ours.pt")
    again = load_model(tmp_path / "ours.pt")
    x = torch.randn(1, 1, 32, 32)
    assert type(again) is StridedTutorialUNet
    assert_same_logits(run(again, x), run(model, x))


def test_several_classes_read_with_softmax(tmp_path):
    entries = [(k, (3, *s[1:]) if k.startswith("o.6.") else s) for k, s in key_list(NAME)]
    state = random_state(entries, shrink=16)
    torch.save(state, tmp_path / "three.pth")
    model = load_model(tmp_path / "three.pth")
    assert model.out_channels == 3 and model.activation == "softmax"
    check_reference(model, state, torch.randn(1, 1, 32, 32))


def test_recognised_by_sub_keys_only():
    keys = dict.fromkeys(renamed(dict.fromkeys(k for k, _ in key_list(NAME))))
    found = family_of(keys)
    assert found is not None and found.name == "strided_tutorial"
    assert [f.name for f in FAMILIES if f.matches(keys)] == ["strided_tutorial"]
    without_up = {k: v for k, v in keys.items() if ".upsample." not in k}
    assert family_of(without_up) is None
    for other in ("milesial_unet_3in_2cls_transposed", "nested_unet_3in_1cls"):
        assert family_of(dict.fromkeys(k for k, _ in key_list(other))).name != "strided_tutorial"


def test_inconsistent_tutorial_weights_are_reported(tmp_path):
    state = random_state(key_list(NAME), shrink=16)
    same_width = {**state, **{"extra" + k[2:]: v for k, v in state.items() if k.startswith("d1.")}}
    torch.save(same_width, tmp_path / "twins.pth")
    with pytest.raises(CheckpointError, match=r"twins\.pth.*tutorial.*down stages.*widths"):
        load_model(tmp_path / "twins.pth")
    broken = dict(state)
    del broken["u2.up_conv_relu.3.weight"]
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"broken\.pth.*missing: u2\.up_conv_relu\.3\.weight"):
        load_model(tmp_path / "broken.pth")


def test_input_off_the_size_grid_is_a_clear_error():
    model = StridedTutorialUNet(1, 1, base_channels=2, depth=2).eval()
    with pytest.raises(ValueError, match=r"multiples of 4.*30 x 32"):
        model(torch.zeros(1, 1, 30, 32))
