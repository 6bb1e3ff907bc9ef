"""Synthetic checkpoints of the reference codes, for the checkpoint tests.

Built from the vendored key lists (tests/data/reference-checkpoints/*.json: the exact
keys and shapes of each public code) with random weights, and saved in each code's own
container format. Not a test module: the tests import it by path.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch
import yaml

DATA = Path(__file__).resolve().parents[1] / "data" / "reference-checkpoints"


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


def trained_like(model):
    """Non-default BatchNorm statistics so the round trip is not trivially equal."""
    gen = torch.Generator().manual_seed(1)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(0.1 * torch.randn(buf.shape, generator=gen))
        elif name.endswith("running_var"):
            buf.copy_(torch.rand(buf.shape, generator=gen) + 0.5)
    return model.eval()
