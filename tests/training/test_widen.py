"""scripts/widen.py: a wider UNet that starts as the narrow one it came from, and learns apart.

The checks are the models' outputs and feature maps, not the widening's own formulas.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from napari_unet_stack.checkpoints import load_model, save_model
from napari_unet_stack.models import NestedUNet, UNet

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))  # scripts/ is not a package: its modules by plain name

from widen import widen_unet  # noqa: E402

#: the UNet variants, base 4 (meta: what they carry)
VARIANTS = {
    "maxpool-transposed": ({"depth": 3}, {}),
    "bilinear": ({"depth": 2, "upsampling": "bilinear"}, {}),
    "strided": ({"depth": 2, "downsampling": "strided"}, {}),
    "valid": ({"depth": 2, "padding": "valid"}, {}),
    "valid-bilinear": ({"depth": 2, "padding": "valid", "upsampling": "bilinear"}, {}),
    "z-context": ({"depth": 2, "in_channels": 5}, {"z_context": 2, "threshold": 0.7}),
}


def _side(model: UNet) -> int:
    return model.input_size_for(16)


def _trained_stats(model: UNet, seed: int = 0) -> UNet:
    """Random BatchNorm affine parameters and conv biases, then a few train-mode forwards
    so that the running statistics are not the initial 0 / 1; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=gen))
                module.bias.copy_(0.3 * torch.randn(module.bias.shape, generator=gen))
        model.train()
        side = _side(model)
        for _ in range(3):
            model(2 * torch.randn(2, model.in_channels, side, side, generator=gen) + 1)
    return model.eval()


def _model(variant: str, base: int = 4, n_classes: int = 3) -> UNet:
    kwargs, meta = VARIANTS[variant]
    torch.manual_seed(1)
    model = UNet(**{"in_channels": 1, "n_classes": n_classes, "base_channels": base, **kwargs})
    model.meta.update(meta)
    return _trained_stats(model)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("new_base", [6, 8])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_widened_unet_predicts_what_the_narrow_one_does(variant, new_base):
    old = _model(variant)
    wide = widen_unet(old, new_base, seed=3)
    assert isinstance(wide, UNet) and wide.base_channels == new_base and not wide.training
    assert wide.config()["kwargs"] == {**old.config()["kwargs"], "base_channels": new_base}
    side = _side(old)
    x = torch.randn(3, old.in_channels, side, side, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = old(x)
        torch.testing.assert_close(wide(x), expected, rtol=1e-5, atol=1e-5)
        old.train()
        wide.train()  # batch statistics: every copy of a channel has its original's
        torch.testing.assert_close(wide(x), old(x), rtol=1e-5, atol=1e-5)
    assert expected.abs().max() > 0.1  # not a trivially zero output


@pytest.mark.parametrize("variant", ["maxpool-transposed", "strided"])
def test_widened_feature_maps_are_copies_of_old_channels(variant):
    """Each level's encoder and decoder output: the old channels first, unchanged, and every
    extra channel a copy of some old one."""
    old = _model(variant)
    wide = widen_unet(old, 8)
    side = _side(old)
    maps = {}

    def keep(tag):
        return lambda module, args, out: maps.__setitem__(tag, out.detach().clone())

    for tag, net in (("old", old), ("wide", wide)):
        for i, block in enumerate([*net.encoders, *net.decoders]):
            block.register_forward_hook(keep((tag, i)))
    with torch.no_grad():
        x = torch.randn(2, 1, side, side)
        old(x), wide(x)
    for i in range(len(old.encoders) + len(old.decoders)):
        narrow, broad = maps[("old", i)], maps[("wide", i)]
        n = narrow.shape[1]
        assert broad.shape[1] == 2 * n
        torch.testing.assert_close(broad[:, :n], narrow, rtol=1e-5, atol=1e-5)
        for j in range(n, 2 * n):
            gaps = (narrow - broad[:, j : j + 1]).flatten(2).abs().amax(dim=(0, 2))
            assert gaps.min() < 1e-5, f"block {i} channel {j} copies no old channel"


def test_widened_unet_has_a_fresh_wide_unets_parameters_and_the_old_meta():
    old = _model("z-context")
    old.meta["instances"] = {"classes": ["interior", "boundary"], "marker_threshold": 0.4}
    old.activation = "softmax"
    wide = widen_unet(old, 12)
    fresh = UNet(5, 3, base_channels=12, depth=2)
    assert _n_params(wide) == _n_params(fresh) > _n_params(old)
    assert {k: v.shape for k, v in wide.state_dict().items()} == {
        k: v.shape for k, v in fresh.state_dict().items()
    }
    assert wide.meta == old.meta and wide.meta["z_context"] == 2
    assert wide.in_channels == 5 and wide.out_channels == 3 and wide.explicit_activation == "softmax"
    wide.meta["instances"]["marker_threshold"] = 0.9  # a copy, not the same dicts
    assert old.meta["instances"]["marker_threshold"] == 0.4
    assert wide.encoders[1][1].num_batches_tracked == old.encoders[1][1].num_batches_tracked == 3


def _duplicate_rows(weight: torch.Tensor, n_old: int) -> list[tuple[int, int]]:
    """(old row, extra row) pairs of identical convolution rows."""
    rows = weight.flatten(1)
    return [(i, j) for j in range(n_old, rows.shape[0]) for i in range(n_old) if torch.equal(rows[i], rows[j])]


def _step(model: UNet, optimizer, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    side = _side(model)
    x = torch.randn(4, model.in_channels, side, side, generator=gen)
    target = torch.randint(model.out_channels, (4, side, side), generator=gen)
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), target).backward()
    optimizer.step()


def test_duplicated_channels_learn_apart():
    """Copies of a channel start identical; one SGD step on random data separates them
    (their next layer splits the old weights by unequal random factors)."""
    wide = widen_unet(_model("maxpool-transposed"), 8).train()
    blocks = [wide.encoders[0][0], wide.encoders[2][3], wide.decoders[0][0]]
    pairs = [_duplicate_rows(conv.weight, conv.out_channels // 2) for conv in blocks]
    assert all(len(p) >= conv.out_channels // 2 for p, conv in zip(pairs, blocks, strict=True))
    _step(wide, torch.optim.SGD(wide.parameters(), lr=1.0), seed=0)
    for conv, found in zip(blocks, pairs, strict=True):
        for i, j in found:
            gap = (conv.weight[i] - conv.weight[j]).abs().max()
            assert gap > 1e-6, f"rows {i} and {j} of {tuple(conv.weight.shape)} are still equal"


def test_adamw_separates_copies_that_an_equal_split_would_keep(monkeypatch):
    """Under AdamW (what `train` uses) the random split separates the copies within a few
    steps; with an equal 1/n split they would stay identical."""
    import widen

    gaps = {}
    for name, factors in (("random", widen.FACTOR_RANGE), ("equal", (0.5, 0.5))):
        monkeypatch.setattr(widen, "FACTOR_RANGE", factors)
        wide = widen_unet(_model("maxpool-transposed"), 8).train()
        conv = wide.encoders[1][0]
        found = _duplicate_rows(conv.weight, conv.out_channels // 2)
        optimizer = torch.optim.AdamW(wide.parameters(), lr=3e-3)
        for seed in range(3):
            _step(wide, optimizer, seed)
        weight = conv.weight.detach()
        gaps[name] = min(float((weight[i] - weight[j]).abs().max()) for i, j in found)
    assert gaps["random"] > 1e-5  # measured: about 1e-4
    assert gaps["equal"] < 1e-7  # measured: 0


def test_widen_refuses_what_it_cannot_widen():
    old = _model("maxpool-transposed")
    for base in (4, 3):
        with pytest.raises(ValueError, match="wider than the model's 4"):
            widen_unet(old, base)
    with pytest.raises(ValueError, match="NestedUNet"):
        widen_unet(NestedUNet(1, 2, base_channels=4, depth=2), 8)
    odd = _model("bilinear")
    odd.head = nn.Sequential(nn.Conv2d(4, 3, 1))
    with pytest.raises(ValueError, match=r"'head'.*Sequential"):
        widen_unet(odd, 8)


# -- train_default_models.py --base ---------------------------------------------------


@pytest.fixture
def script(monkeypatch):
    """train_default_models with two tiny specs (2D and z context 2, base 4 by default)."""
    import train_default_models as tdm

    monkeypatch.setitem(tdm.MODELS, "tiny", {
        "build": lambda base=4: UNet(1, 3, base_channels=base, depth=2), "steps": 1, "settings": {},
    })  # fmt: skip
    monkeypatch.setitem(tdm.MODELS, "tiny-z", {
        "build": lambda base=4: UNet(5, 3, base_channels=base, depth=2), "steps": 1,
        "settings": {"z_context": 2}, "data": "stacks",
    })  # fmt: skip
    return tdm


def _checkpoint(tmp_path: Path, in_channels: int = 1, z_context: int = 0) -> Path:
    torch.manual_seed(2)
    model = _trained_stats(UNet(in_channels, 3, base_channels=4, depth=2))
    if z_context:
        model.meta["z_context"] = z_context
    return save_model(model, tmp_path / f"narrow-z{z_context}.pt", include_training_state=False)


def _x(channels: int) -> torch.Tensor:
    return torch.randn(2, channels, 32, 32, generator=torch.Generator().manual_seed(9))


def test_base_option_widens_a_narrower_checkpoint(script, tmp_path):
    path = _checkpoint(tmp_path)
    model, record = script.initial_model("tiny", str(path), base=8)
    assert model.base_channels == 8 and record["widened"] == {"base_channels": [4, 8], "seed": 0}
    assert record["from"] == path.name
    x = _x(1)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), load_model(path)(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("z_context", [0, 1, 2])
def test_base_option_widens_the_z_context_then_the_width(script, tmp_path, z_context):
    """A 2D or smaller-z checkpoint: its first convolution reads the middle slices, then the
    width grows; the z-context model still predicts what the checkpoint did."""
    path = _checkpoint(tmp_path, 2 * z_context + 1, z_context)
    model, _ = script.initial_model("tiny-z", str(path), base=8)
    assert model.base_channels == 8 and model.in_channels == 5 and model.meta["z_context"] == 2
    x = _x(5)
    middle = x[:, 2 - z_context : 3 + z_context]
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), load_model(path)(middle), rtol=1e-5, atol=1e-5)


def test_without_base_or_at_the_same_width_nothing_is_widened(script, tmp_path):
    path = _checkpoint(tmp_path)
    for base in (None, 4):
        model, record = script.initial_model("tiny", str(path), base=base)
        assert model.base_channels == 4 and "widened" not in record
    model, record = script.initial_model("tiny", "scratch", base=8)
    assert model.base_channels == 8 and record is None
    with pytest.raises(ValueError, match="only a narrower UNet"):
        script.initial_model("tiny", str(path), base=2)


def test_main_trains_the_widened_model(script, tmp_path, monkeypatch):
    """``--base 8 --init PATH``: what main hands to training is the widened checkpoint."""
    path = _checkpoint(tmp_path)
    seen = {}
    monkeypatch.setattr(script, "training_data", lambda kind: ([], []))
    monkeypatch.setattr(
        script, "train_cycles", lambda name, model, *rest: (seen.setdefault("model", model), [], [0.0])
    )
    monkeypatch.setattr(script, "finalize", lambda *args, **kw: seen.setdefault("init", args[5]))
    argv = ["--only", "tiny", "--base", "8", "--init", str(path), "--out", str(tmp_path / "out")]
    assert script.main(argv) == 0
    assert seen["model"].base_channels == 8 and seen["init"]["widened"]["base_channels"] == [4, 8]
    x = _x(1)
    with torch.no_grad():
        torch.testing.assert_close(seen["model"].eval()(x), load_model(path)(x), rtol=1e-5, atol=1e-5)
