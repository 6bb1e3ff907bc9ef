"""4uiiurz1/pytorch-nested-unet ``models/<name>/model.pth`` (UNet, NestedUNet with or without
deep supervision), checked against the ``config.yml`` its train.py writes beside it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...models.reference import VGGNestedUNet, VGGUNet
from ..errors import CheckpointError
from ..metadata import json_like
from .family import ForeignFamily

__all__ = ["VGG_NESTED", "VGG_UNET", "NestedRepoFamily", "read_config_yml"]


def read_config_yml(path: Path) -> dict | None:
    """The ``config.yml`` beside ``path`` as a dict; None (with a warning if unreadable)
    when there is none."""
    config_path = path.parent / "config.yml"
    if not config_path.is_file():
        return None
    import yaml

    try:
        config = yaml.safe_load(config_path.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as err:
        # stacklevel 6: this, extra_provenance, load, load_object, load_model, then its caller
        warnings.warn(f"ignoring {str(config_path)!r}: not readable YAML ({err})", stacklevel=6)
        return None
    return config if isinstance(config, dict) else None


@dataclass(frozen=True, eq=False)
class NestedRepoFamily(ForeignFamily):
    """A 4uiiurz1 network; ``arch`` is the name its ``config.yml`` gives it."""

    arch: str = "UNet"

    def extra_provenance(self, path: Path, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``config.yml``, which must agree with the weights (they decide), as ``config``."""
        config = read_config_yml(path)
        if config is None:
            return {}
        found = {
            "arch": self.arch,
            "input_channels": kwargs["in_channels"],
            "num_classes": kwargs["n_classes"],
            "deep_supervision": bool(kwargs.get("deep_supervision", False)),
        }
        for key, value in found.items():
            if key in config and config[key] != value:
                raise CheckpointError(
                    f"{str(path.parent / 'config.yml')!r} says {key}={config[key]!r} but the weights in "
                    f"{str(path)!r} are a {self.arch} with {key}={value!r}; the weights decide, so fix or remove config.yml"
                )
        return {"config": json_like(config)}


#: its train.py divides images by 255; every output channel is read with a sigmoid
_SCALE = {"mode": "scale", "divisor": 255.0}

VGG_NESTED = NestedRepoFamily(
    name="vgg_nested",
    source="4uiiurz1/pytorch-nested-unet",
    network=VGGNestedUNet,
    markers=("conv0_0.conv1.weight", "conv0_1.conv1.weight"),
    normalization=_SCALE,
    always_sigmoid=True,
    arch="NestedUNet",
)
VGG_UNET = NestedRepoFamily(
    name="vgg_unet",
    source="4uiiurz1/pytorch-nested-unet",
    network=VGGUNet,
    markers=("conv0_0.conv1.weight",),
    normalization=_SCALE,
    always_sigmoid=True,
    arch="UNet",
)
