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

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_NESTING",
    "VGG_NESTED",
    "VGG_UNET",
    "NestedRepoFamily",
    "read_config_yml",
]


#: the largest ``config.yml`` read (the one train.py writes is about 1 KB)
MAX_CONFIG_BYTES = 64 * 1024
#: the deepest nesting of lists and mappings read (train.py writes a flat mapping)
MAX_CONFIG_NESTING = 32


def _refusal(text: str) -> str | None:
    """Why ``text`` is not read as YAML, or None: aliases (``*name``; nested ones are alias
    bombs, a self-reference recursive) and deep nesting, found by a scan of the parser's
    events, which builds nothing."""
    import yaml

    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            return (
                f"it uses a YAML alias (*{event.anchor}); aliases are refused (they can "
                f"expand exponentially or refer to themselves) and train.py writes none"
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_CONFIG_NESTING:
                return f"it is nested more than {MAX_CONFIG_NESTING} levels deep"
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None


def read_config_yml(path: Path) -> dict | None:
    """The ``config.yml`` beside ``path`` as a dict; None (with a warning if unreadable,
    over `MAX_CONFIG_BYTES`, using aliases or nested over `MAX_CONFIG_NESTING` levels)
    when there is none."""
    config_path = path.parent / "config.yml"
    if not config_path.is_file():
        return None
    import yaml

    try:
        size = config_path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            problem = f"it is {size:,} bytes, more than the {MAX_CONFIG_BYTES:,} bytes read"
        else:
            text = config_path.read_text()
            problem = _refusal(text)
            config = None if problem else yaml.safe_load(text)
    except (yaml.YAMLError, OSError, UnicodeDecodeError, RecursionError) as err:
        problem = f"not readable YAML ({err})"
    if problem:
        # stacklevel 6: this, extra_provenance, load, load_object, load_model, then its caller
        warnings.warn(f"ignoring {str(config_path)!r}: {problem}", stacklevel=6)
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
