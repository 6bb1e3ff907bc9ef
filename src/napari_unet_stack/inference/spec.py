"""The model spec: what the engine reads off a model (ours, imported, or any callable)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..labels import LabelRule, default_activation, model_threshold
from ..models.base import SegmentationNetwork
from ..postprocess.options import model_instances
from ..zcontext import z_context_of

__all__ = ["ModelSpec", "model_spec"]


@dataclass
class ModelSpec:
    """Geometry, activation and metadata of a model, as the engine uses them."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    module: torch.nn.Module | None
    in_channels: int | None
    out_channels: int | None
    multiple: int
    halo: int
    margin: int
    activation: str | None
    normalization: dict | None
    class_values: list[int] | None
    exact: bool
    base_channels: int
    deep: bool
    input_size_for: Callable[[int], int] | None = None
    output_size: Callable[[int], int] | None = None
    name: str = "model"  # for messages: the class or function, and the file it came from
    instances: dict | None = None  # an instance model's ``meta["instances"]`` (how to decode it)
    threshold: float | None = None  # the model's own foreground threshold (``meta["threshold"]``)
    z_context: int = 0  # neighbouring slices on each side the model reads (``meta["z_context"]``)

    @property
    def image_channels(self) -> int | None:
        """The channels of the image (the network's input channels over 2k + 1)."""
        return None if self.in_channels is None else self.in_channels // (2 * self.z_context + 1)

    def window_output(self, size: int) -> int:
        """The output length of a network input ``size`` long ("same" models: ``size``)."""
        return self.output_size(size) if self.margin and self.output_size is not None else size

    def activation_for(self, n_channels: int) -> str:
        """The model's activation, or the default for ``n_channels`` outputs."""
        return default_activation(n_channels, self.activation)

    def label_rule(self, n_channels: int, threshold: float | None = None, markers: float | None = None
                   ) -> LabelRule:
        """How this model's ``n_channels`` probabilities become labels (``threshold`` None:
        the model's own); with ``markers`` (a marker threshold) an instance model's marker
        maps (`LabelRule.with_markers`)."""
        rule = LabelRule.of(n_channels, self.activation, self.class_values, model_threshold(self, threshold))
        if markers is None:
            return rule
        if self.instances is None:
            raise ValueError(f"{self.name} is not an instance model: it has no markers to decode")
        return rule.with_markers(int(self.instances["classes"]["interior"]), markers)


def model_spec(model: Any) -> ModelSpec:
    """The spec of a `SegmentationNetwork`, a checkpoint path / bundled name, or a callable."""
    source = None
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from ..checkpoints import load_model

        source = str(model if not isinstance(model, bytes) else model.decode(errors="replace"))
        model = load_model(model)
    if isinstance(model, SegmentationNetwork):
        spec = _network_spec(model)
        spec.name = type(model).__name__ if source is None else f"{type(model).__name__} from {source!r}"
        return spec
    if not callable(model):
        raise TypeError(
            f"`model` must be a model from load_model, a UNet/NestedUNet, a checkpoint path or a callable "
            f"mapping N x C x H x W to logits, got {type(model).__name__}"
        )
    # any callable: a classic depth-4 UNet's geometry is assumed
    return ModelSpec(
        fn=model,
        module=model if isinstance(model, torch.nn.Module) else None,
        in_channels=None,
        out_channels=None,
        multiple=16,
        halo=96,
        margin=0,
        activation=None,
        normalization=None,
        class_values=None,
        exact=False,
        base_channels=64,
        deep=False,
        name=str(getattr(model, "__name__", type(model).__name__)),
    )


def _network_spec(model: SegmentationNetwork) -> ModelSpec:
    margin = model.valid_margin
    return ModelSpec(
        fn=model,
        module=model,
        in_channels=model.in_channels,
        out_channels=model.out_channels,
        multiple=model.size_multiple,
        halo=model.halo,
        margin=margin,
        activation=model.activation,
        normalization=model.meta.get("normalization"),
        class_values=model.meta.get("class_values"),
        exact=model.exact_tiling,
        base_channels=int(getattr(model, "base_channels", 64)),
        deep=hasattr(model, "forward_heads"),
        input_size_for=model.input_size_for if margin else None,
        output_size=model.output_size if margin else None,
        instances=model_instances(model),
        threshold=model.meta.get("threshold"),
        z_context=z_context_of(model),
    )
