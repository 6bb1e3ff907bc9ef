"""What every network hands to the inference engine, whatever its origin."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..labels import check_activation, default_activation
from ..validation import check_int
from .blocks import round_up

#: Keys of ``SegmentationNetwork.meta`` that checkpoints store and the engine reads.
META_KEYS = (
    "normalization",  # dict, see napari_unet_stack.normalization
    "class_names",  # list[str], one per output channel
    "class_values",  # list[int], label value written for each class (milesial mask_values)
    "provenance",  # dict: training data, steps, metrics, source file of an import
    "fast_head",  # int, UNet++ head used by head="fast"
    "instances",  # dict: an instance model's classes and decoding (training.instance_meta)
    "threshold",  # float: the model's own foreground threshold (labels.model_threshold)
    "z_context",  # int: neighbouring slices on each side in the input (napari_unet_stack.zcontext)
)


class SegmentationNetwork(nn.Module):
    """Base class: a 2D network mapping N x C x H x W to raw logits N x K x H' x W'.

    Subclasses set ``in_channels``, ``out_channels`` and ``depth`` and implement
    ``_reach()`` (how far, in input pixels, one output block of ``size_multiple``
    pixels depends on its surroundings). Everything the engine needs is derived here:

    - ``size_multiple``: H and W must be multiples of it (2 ** depth for a UNet).
    - ``halo``: the reach rounded up to ``size_multiple``; crop-and-stitch tiles with
      this halo and origins on the ``size_multiple`` grid reproduce whole-image
      inference exactly (when ``exact_tiling`` is true).
    - ``valid_margin``: pixels lost on each side by unpadded convolutions (0 for "same").
    - ``activation``: ``"softmax"`` or ``"sigmoid"``, how logits become probabilities.
    - ``meta``: normalization, class names and values, provenance (see ``META_KEYS``).
    - ``training_state``: None, or what `train` left for ``train(..., resume=True)``
      (optimizer state, schedule position; tensors and plain values, not part of ``meta``).
    """

    in_channels: int
    out_channels: int
    depth: int
    #: False when the architecture cannot tile exactly (align_corners=True up-sampling).
    exact_tiling: bool = True
    #: Set by `train` and `load_model`; stored by `save_model` (see ``train(resume=True)``).
    training_state: dict[str, Any] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.meta: dict[str, Any] = {}
        self._activation: str | None = None

    # -- geometry ------------------------------------------------------------------
    @property
    def size_multiple(self) -> int:
        return 2**self.depth

    @property
    def valid_margin(self) -> int:
        return 0

    def _reach(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def reach(self) -> int:
        """Exact one-sided reach of an output block, in input pixels."""
        return self._reach()

    @property
    def halo(self) -> int:
        """Context on each side of a tile core for exact tiling (a multiple of ``size_multiple``)."""
        if self.valid_margin:
            return self.valid_margin
        return round_up(self.reach, self.size_multiple)

    def output_size(self, input_size: int) -> int:
        """Spatial output size for a given input size (equal for "same" padding)."""
        return input_size - 2 * self.valid_margin

    def input_size_for(self, output_size: int) -> int:
        """Smallest admissible input size whose output is at least ``output_size``."""
        return round_up(max(output_size, 1), self.size_multiple)

    # -- output -------------------------------------------------------------------
    @property
    def activation(self) -> str:
        """The activation set on the model, else the default for its output channels
        (`napari_unet_stack.labels.default_activation`)."""
        return default_activation(self.out_channels, self._activation)

    @activation.setter
    def activation(self, value: str) -> None:
        self._activation = check_activation(value)

    @property
    def explicit_activation(self) -> str | None:
        """The activation set on the model (checkpoint or setter), None when it is the default."""
        return self._activation

    @property
    def normalization(self) -> dict | None:
        return self.meta.get("normalization")

    @property
    def class_names(self) -> list[str]:
        names = self.meta.get("class_names")
        if names:
            return list(names)
        if self.activation == "sigmoid" and self.out_channels == 1:
            return ["foreground"]
        return ["background"] + [f"class {k}" for k in range(1, self.out_channels)]

    # -- persistence ----------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this architecture (see ``checkpoints``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved in our format")

    def _set_sizes(self, in_channels: int, n_classes: int, base_channels: int, depth: int) -> int:
        """Checks and stores ``in_channels``, ``out_channels`` (``n_classes``) and
        ``base_channels``; returns ``depth``, checked (stored by the caller)."""
        self.in_channels = check_int("in_channels", in_channels, 1)
        self.out_channels = check_int("n_classes", n_classes, 1)
        self.base_channels = check_int("base_channels", base_channels, 1)
        return check_int("depth", depth, 1)

    def _config(self, architecture: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """What `config` returns: ``architecture`` (default: the class name) and the
        constructor arguments, ``in_channels`` and ``n_classes`` first, then ``kwargs``."""
        return {
            "architecture": architecture or type(self).__name__,
            "kwargs": {"in_channels": self.in_channels, "n_classes": self.out_channels, **kwargs},
        }

    def describe(self) -> str:
        """One line for users: architecture, channels, classes, parameters."""
        n_params = sum(p.numel() for p in self.parameters())
        cfg = ", ".join(f"{k}={v!r}" for k, v in self._describe_items())
        return (
            f"{type(self).__name__}({cfg}) - {self.in_channels} in, {self.out_channels} out "
            f"({self.activation}), {n_params / 1e6:.2f} M parameters"
        )

    def _describe_items(self):
        try:
            return self.config()["kwargs"].items()
        except NotImplementedError:
            return ()

    def clone_meta(self) -> dict[str, Any]:
        return copy.deepcopy(self.meta)

    def extra_repr(self) -> str:
        return f"halo={self.halo}, size_multiple={self.size_multiple}, activation={self.activation!r}"


class WrappedNetwork(SegmentationNetwork):
    """Adapts a foreign module (TorchScript, a fully pickled model) to our interface.

    The geometry of a foreign module cannot be read off its graph, so it is supplied by
    the caller (defaults: depth 4, halo estimated from a classic UNet's reach).
    """

    exact_tiling = False

    def __init__(
        self,
        module: nn.Module,
        *,
        in_channels: int,
        out_channels: int,
        depth: int = 4,
        halo: int | None = None,
        output_key: str | None = None,
    ) -> None:
        super().__init__()
        self.module = module
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.depth = int(depth)
        self._halo = halo
        self.output_key = output_key

    def _reach(self) -> int:
        if self._halo is not None:
            return int(self._halo)
        # a classic UNet with two 3x3 convs per level: 94 px at depth 4, ~2**(depth+2.5)
        return 6 * 2**self.depth - 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unwrap_logits(self.module(x), self.output_key)


def unwrap_logits(out: Any, key: str | None = None) -> torch.Tensor:
    """Reduce a foreign forward's output to one logits tensor.

    Accepts a tensor, a dict (``key``, else ``"out"``), or a list/tuple of deep-supervision
    heads (the last one, as the reference codes validate).
    """
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        if key is None:
            key = "out" if "out" in out else next(iter(out))
        return unwrap_logits(out[key])
    if isinstance(out, (list, tuple)) and out:
        return unwrap_logits(out[-1])
    raise TypeError(f"model returned {type(out).__name__}, expected a tensor of logits")
