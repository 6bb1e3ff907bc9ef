"""Sample data contributions: the shipped stacks of `napari_unet_stack.samples` as layers."""

from __future__ import annotations

from ..samples import load_sample

__all__ = ["large_image", "nuclei_stack"]


def _layers(name: str) -> list[tuple]:
    sample = load_sample(name)
    # not "<name> labels": that is the name the Predict widget gives its result
    truth = {"name": f"{name} ground truth", "opacity": 0.5, "visible": False}
    return [(sample.image, {"name": name}, "image"), (sample.instances, truth, "labels")]


def nuclei_stack() -> list[tuple]:
    """The held-out 16 x 256 x 256 nuclei stack and its ground-truth nuclei (instances)."""
    return _layers("nuclei_stack")


def large_image() -> list[tuple]:
    """A 4096 x 4096 nuclei image and its ground truth (generated on first use, then cached)."""
    return _layers("large_image")
