"""Modules whose architecture we cannot read off the weights: TorchScript archives and
fully pickled modules, wrapped with the geometry their metadata or the caller gives."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..labels import ACTIVATIONS
from ..models import SegmentationNetwork, WrappedNetwork, unwrap_logits
from .errors import CheckpointError, error_summary
from .metadata import check_loaded_meta
from .weights import check_claims, check_tensors

__all__ = ["ExportedNetwork", "check_probe_terminates", "probe_channels", "wrap_module"]


def _loops(block) -> bool:
    """Whether a TorchScript graph (or block) holds a loop or a call it did not inline."""
    for node in block.nodes():
        if node.kind() in ("prim::Loop", "prim::CallMethod", "prim::CallFunction"):
            return True
        if any(_loops(inner) for inner in node.blocks()):
            return True
    return False


def check_probe_terminates(module: nn.Module, path: Path, trust: bool) -> None:
    """`CheckpointError` unless a probe forward of ``module`` is sure to end: with
    ``trust``, or for TorchScript whose forward has no loops (traced archives: tracing
    unrolls them). Only the graph is read; nothing is run."""
    if trust or not isinstance(module, torch.jit.ScriptModule):
        return
    try:
        looping = _loops(module.inlined_graph)
    except (RuntimeError, AttributeError):
        looping = True
    if looping:
        raise CheckpointError(
            f"{str(path)!r} is TorchScript without napari-unet-stack metadata whose forward has "
            f"loops (or calls it cannot inline), so a probe forward to find its output channels "
            f"might never end and is not run: pass n_classes=... to load_model (nothing is run "
            f"then), or trust=True to probe it"
        )


def probe_channels(module: nn.Module, in_channels: int, depth: int, path: Path) -> int:
    """Output channels of ``module``, found by a forward pass on a zero image."""
    size = 2**depth * 4
    try:
        with torch.no_grad():
            out = unwrap_logits(module(torch.zeros(1, in_channels, size, size)))
    except (RuntimeError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"{str(path)!r}: a probe forward with in_channels={in_channels} on a {size} x {size} "
            f"image failed ({error_summary(err)}); check in_channels"
        ) from err
    return int(out.shape[1])


class ExportedNetwork(WrappedNetwork):
    """A TorchScript module with the geometry `export_torchscript` recorded (valid convolutions too)."""

    def __init__(
        self,
        module: nn.Module,
        *,
        valid_margin: int = 0,
        admissible_input: int | None = None,
        **kwargs,
    ):
        super().__init__(module, **kwargs)
        self._valid_margin = int(valid_margin)
        self._admissible = admissible_input

    @property
    def valid_margin(self) -> int:
        return self._valid_margin

    def input_size_for(self, output_size: int) -> int:
        if not self._valid_margin or self._admissible is None:
            return super().input_size_for(output_size)
        # admissible inputs of a valid UNet: s = admissible_input + n * size_multiple
        need = max(output_size, 1) + 2 * self._valid_margin
        steps = max(0, math.ceil((need - self._admissible) / self.size_multiple))
        return self._admissible + steps * self.size_multiple


def wrap_module(
    module: nn.Module,
    path: Path,
    overrides: dict,
    info: Mapping | None,
    imported_from: str,
    trust: bool = False,
) -> SegmentationNetwork:
    """``module`` as a `SegmentationNetwork` (an `ExportedNetwork`).

    The geometry comes from ``overrides`` (``in_channels``, ``n_classes``, ``depth``,
    ``halo``), else from ``info`` (the JSON `export_torchscript` writes), else from
    defaults: depth 4, ``n_classes`` by `probe_channels`, for TorchScript only when its
    forward has no loops or with ``trust`` (`check_probe_terminates`); ``in_channels`` is
    required. ``info``'s ``meta`` is restored unchanged (checked by `check_loaded_meta`);
    without it the model's provenance names ``imported_from`` and ``path``.
    """
    check_tensors(module.state_dict(), path)
    info = dict(info or {})
    depth = int(overrides.get("depth", info.get("depth", 4)))
    in_channels = overrides.get("in_channels", info.get("in_channels"))
    if in_channels is None:
        raise CheckpointError(
            f"{str(path)!r} is a {imported_from} without napari-unet-stack metadata: pass in_channels=... "
            f"(and optionally n_classes=..., depth=..., halo=...) to load_model"
        )
    n_classes = overrides.get("n_classes", info.get("n_classes"))
    claims = {"depth": depth, "in_channels": in_channels, "n_classes": n_classes}
    check_claims(claims, path, imported_from)
    if n_classes is None:
        check_probe_terminates(module, path, trust)
        n_classes = probe_channels(module, int(in_channels), depth, path)
    halo = overrides.get("halo", info.get("halo"))
    net = ExportedNetwork(
        module,
        in_channels=in_channels,
        out_channels=n_classes,
        depth=depth,
        halo=halo,
        valid_margin=info.get("valid_margin", 0),
        admissible_input=info.get("admissible_input"),
    )
    if info.get("exact_tiling") and not {"depth", "halo"} & set(overrides):
        net.exact_tiling = True
    if info.get("activation") in ACTIVATIONS:
        net.activation = info["activation"]
    meta = info.get("meta")
    if isinstance(meta, Mapping):  # written by export_torchscript: restore it unchanged
        net.meta = check_loaded_meta(net, meta, None, path)
    else:
        net.meta = {"provenance": {"imported_from": imported_from, "source": str(path)}}
    return net
