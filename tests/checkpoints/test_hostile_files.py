"""Hostile or broken checkpoints (issue 11, items 9, 10, 11, 20, 24): each is refused
quickly, without allocating what it claims or running its code, by an error that names
the file and the cause."""

from __future__ import annotations

import os
import pickle
import resource
import time
import warnings

import pytest
import synthetic_checkpoints as _synth
import torch

from napari_unet_stack.checkpoints import (
    CheckpointError,
    UnsafeCheckpointError,
    load_model,
    save_model,
)
from napari_unet_stack.models import UNet

key_list, random_state, write_4uiiurz1 = _synth.key_list, _synth.random_state, _synth.write_4uiiurz1


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Quick:
    """Asserts that the block took under ``seconds`` and did not raise the process's peak
    memory by more than ``mib`` (what a claimed multi-GB model would)."""

    def __init__(self, seconds: float = 1.0, mib: float = 200):
        self.seconds, self.mib = seconds, mib

    def __enter__(self):
        self.start, self.peak = time.perf_counter(), _peak_rss_mib()
        return self

    def __exit__(self, *exc):
        assert time.perf_counter() - self.start < self.seconds
        assert _peak_rss_mib() - self.peak < self.mib
        return False


def _own_checkpoint(tmp_path, name="model.pt", **changes):
    """A small checkpoint of ours, read back as the dict ``torch.load`` gives, changed, saved."""
    path = save_model(UNet(1, 2, base_channels=4, depth=2), tmp_path / name)
    checkpoint = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if key in ("base_channels", "depth"):
            checkpoint["config"]["kwargs"][key] = value
        else:
            checkpoint[key] = value
    torch.save(checkpoint, path)
    return path, checkpoint


# -- item 9: claimed sizes are checked before anything is built -----------------------------
@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"base_channels": 10**6}, r"base_channels=1000000"),
        ({"depth": 30}, r"depth=30"),
        ({"base_channels": 60000}, r"parameters"),
    ],
    ids=["base_channels", "depth", "budget"],
)
def test_config_claiming_a_huge_model_is_refused_before_building(tmp_path, change, match):
    path, _ = _own_checkpoint(tmp_path, "huge.pt", **change)
    with _Quick(), pytest.raises(CheckpointError, match=rf"huge\.pt.*{match}"):
        load_model(path)


def test_config_contradicting_the_weights_is_refused_before_building(tmp_path):
    path, _ = _own_checkpoint(tmp_path, "wide.pt", base_channels=512)
    with (
        _Quick(),
        pytest.raises(CheckpointError, match=r"wide\.pt.*wrong shape: encoders\.0\.0\.weight"),
    ):
        load_model(path)


def test_expanded_tensors_claiming_huge_shapes_are_refused(tmp_path):
    # milesial's first convolution claiming 100000 filters from one stored value
    state = random_state(key_list("milesial_unet_3in_2cls_transposed"), shrink=8)
    state["inc.double_conv.0.weight"] = torch.zeros(1).expand(100000, 3, 3, 3)
    torch.save(state, tmp_path / "expanded.pth")
    assert os.path.getsize(tmp_path / "expanded.pth") < 2_000_000
    with _Quick(), pytest.raises(CheckpointError, match=r"expanded\.pth.*base_channels=100000"):
        load_model(tmp_path / "expanded.pth")


def test_expanded_tensor_of_the_right_shape_is_refused(tmp_path):
    path, checkpoint = _own_checkpoint(tmp_path, "strided.pt")
    weight = checkpoint["state_dict"]["encoders.0.0.weight"]
    checkpoint["state_dict"]["encoders.0.0.weight"] = torch.zeros(1).expand(weight.shape)
    torch.save(checkpoint, path)
    with pytest.raises(
        CheckpointError,
        match=r"strided\.pt.*encoders\.0\.0\.weight.*\(4, 1, 3, 3\).*stores 1 value",
    ):
        load_model(path)


# -- item 20: non-finite weights ------------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, bad):
    path, checkpoint = _own_checkpoint(tmp_path, "nan.pt")
    checkpoint["state_dict"]["head.weight"][0, 0] = bad
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=rf"nan\.pt.*head\.weight.*1 non-finite value.*{bad}"):
        load_model(path)


def test_non_finite_foreign_weights_are_refused(tmp_path):
    state = random_state(key_list("milesial_unet_3in_2cls_transposed"), shrink=8)
    state["down1.maxpool_conv.1.double_conv.1.running_var"][:] = float("nan")
    torch.save(state, tmp_path / "foreign.pth")
    with pytest.raises(
        CheckpointError, match=r"foreign\.pth.*down1\.maxpool_conv\.1\.double_conv\.1\.running_var"
    ):
        load_model(tmp_path / "foreign.pth")


def test_save_model_refuses_non_finite_weights_and_writes_nothing(tmp_path):
    model = UNet(1, 2, base_channels=4, depth=2)
    with torch.no_grad():
        model.head.bias[1] = float("nan")
    with pytest.raises(ValueError, match=r"head\.bias.*non-finite"):
        save_model(model, tmp_path / "nan.pt")
    assert not list(tmp_path.iterdir())


# -- item 10: config.yml alias bombs ---------------------------------------------------------
_LAUGHS = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [
        f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (_LAUGHS, "alias"),
        ("arch: &x [NestedUNet, *x]\n", "alias"),
        ("arch: NestedUNet\nnote: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
        ("arch: NestedUNet\n" + "".join(f"k{i}: {'x' * 60}\n" for i in range(2000)), "bytes"),
    ],
    ids=["billion-laughs", "self-reference", "deep", "large"],
)
def test_hostile_config_yml_is_ignored_with_a_warning(tmp_path, text, match):
    state = random_state(key_list("nested_unet_3in_1cls"), shrink=8)
    path = write_4uiiurz1(tmp_path, state, arch="NestedUNet", input_channels=3, num_classes=1)
    (tmp_path / "config.yml").write_text(text)
    with _Quick(seconds=3), pytest.warns(UserWarning, match=rf"config\.yml.*{match}"):
        model = load_model(path)
    assert "config" not in model.meta["provenance"]


def test_plain_config_yml_still_read(tmp_path):
    state = random_state(key_list("nested_unet_3in_1cls"), shrink=8)
    path = write_4uiiurz1(tmp_path, state, arch="NestedUNet", input_channels=3, num_classes=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_model(path)
    assert model.meta["provenance"]["config"]["arch"] == "NestedUNet"


# -- item 11: TorchScript code is not run during loading ------------------------------------
class _Forever(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        while True:
            x = x + 1
        return x


@pytest.mark.filterwarnings("ignore:.*torch.jit:DeprecationWarning")
def test_torchscript_with_loops_is_not_probed_without_trust(tmp_path):
    path = tmp_path / "forever.ts"
    torch.jit.save(torch.jit.script(_Forever()), str(path))
    with (
        _Quick(),
        pytest.raises(CheckpointError, match=r"forever\.ts.*loop.*n_classes=.*trust=True"),
    ):
        load_model(path, in_channels=1)
    loaded = load_model(path, in_channels=1, n_classes=2)  # nothing run: the caller says
    assert loaded.out_channels == 2


@pytest.mark.slow  # tracing takes seconds
@pytest.mark.filterwarnings("ignore:.*torch.jit:DeprecationWarning")
def test_exported_torchscript_loads_without_running_its_code(tmp_path, monkeypatch):
    from napari_unet_stack.checkpoints import export_torchscript

    path = export_torchscript(UNet(1, 3, base_channels=4, depth=2), tmp_path / "ours.ts")

    def no_forward(*args, **kwargs):  # pragma: no cover - must not be called
        raise AssertionError("the archive's code ran")

    monkeypatch.setattr(torch.jit.ScriptModule, "__call__", no_forward)
    assert load_model(path).out_channels == 3


# -- item 24: malformed entries are named with the file --------------------------------------
@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"meta": "notadict"}, r"meta\.pt.*'meta'.*str"),
        ({"activation": "relu"}, r"meta\.pt.*activation.*relu"),
        ({"meta": {"normalization": {"mode": "bogus"}}}, r"meta\.pt.*normalization.*bogus"),
        ({"meta": {"class_names": ["only one"]}}, r"meta\.pt.*class_names"),
    ],
    ids=["meta-str", "activation", "normalization", "class-names"],
)
def test_malformed_checkpoint_entries_name_the_file(tmp_path, change, match):
    path, _ = _own_checkpoint(tmp_path, "meta.pt", **change)
    with pytest.raises(CheckpointError, match=match):
        load_model(path)


@pytest.mark.slow  # tracing takes seconds
@pytest.mark.filterwarnings("ignore:.*torch.jit:DeprecationWarning")
def test_torchscript_metadata_with_bad_normalization_names_the_file(tmp_path):
    from napari_unet_stack.checkpoints import export_torchscript

    model = UNet(1, 2, base_channels=4, depth=2)
    model.meta["normalization"] = {"mode": "bogus"}
    path = export_torchscript(model, tmp_path / "bad.ts")
    with pytest.raises(CheckpointError, match=r"bad\.ts.*normalization.*bogus"):
        load_model(path)


class _System:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_raw_pickle_calling_os_system_is_unsafe(tmp_path, protocol):
    path = tmp_path / f"evil{protocol}.pt"
    path.write_bytes(pickle.dumps({"state_dict": _System()}, protocol=protocol))
    with pytest.raises(
        UnsafeCheckpointError, match=rf"evil{protocol}\.pt.*(posix|os)\.system.*trust=True"
    ):
        load_model(path)


class _LoadTimeCode(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.n = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> int:
        return self.n

    @torch.jit.export
    def __setstate__(self, state: int) -> None:
        while True:
            self.n = state + 1


@pytest.mark.filterwarnings("ignore:.*torch.jit:DeprecationWarning")
def test_torchscript_running_code_while_loading_is_refused_without_trust(tmp_path):
    path = tmp_path / "setstate.ts"
    torch.jit.save(torch.jit.script(_LoadTimeCode()), str(path))
    with (
        _Quick(),
        pytest.raises(UnsafeCheckpointError, match=r"setstate\.ts.*__setstate__.*trust=True"),
    ):
        load_model(path, in_channels=1, n_classes=1)


@pytest.mark.filterwarnings("ignore:.*torch.jit:DeprecationWarning")
def test_non_finite_torchscript_weights_are_refused(tmp_path):
    net = UNet(1, 2, base_channels=4, depth=2).eval()
    with torch.no_grad():
        net.head.weight[0] = float("inf")
    traced = torch.jit.trace(net, torch.zeros(1, 1, 16, 16))
    torch.jit.save(traced, str(tmp_path / "inf.ts"))
    with pytest.raises(CheckpointError, match=r"inf\.ts.*head\.weight.*non-finite"):
        load_model(tmp_path / "inf.ts", in_channels=1, n_classes=2)


def test_expanded_training_state_is_ignored_with_a_warning(tmp_path):
    path, checkpoint = _own_checkpoint(tmp_path, "resume.pt")
    checkpoint["training_state"] = {
        "optimizer": {"state": {0: {"exp_avg": torch.zeros(1).expand(10**4, 10**4)}}}
    }
    torch.save(checkpoint, path)
    with pytest.warns(UserWarning, match=r"training state of .*resume\.pt.*exp_avg.*expanded"):
        model = load_model(path)
    assert model.training_state is None


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("protocol", [2, 4])
def test_torch_save_archive_calling_os_system_is_unsafe(tmp_path, protocol):
    path = tmp_path / f"evil{protocol}.pt"
    torch.save({"state_dict": _System()}, path, pickle_protocol=protocol)
    with pytest.raises(
        UnsafeCheckpointError, match=rf"evil{protocol}\.pt.*(posix|os)\.system.*trust=True"
    ):
        load_model(path)


@pytest.mark.filterwarnings("ignore:.*torch.jit:DeprecationWarning")
def test_torchscript_metadata_claiming_huge_sizes_is_refused(tmp_path):
    import json

    from napari_unet_stack.checkpoints import TORCHSCRIPT_META

    traced = torch.jit.trace(UNet(1, 2, base_channels=4, depth=2).eval(), torch.zeros(1, 1, 16, 16))
    info = {"in_channels": 1, "n_classes": 2, "depth": 30}
    path = tmp_path / "deep.ts"
    torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_META: json.dumps(info)})
    with pytest.raises(CheckpointError, match=r"deep\.ts.*depth=30"):
        load_model(path)
