"""benchmarks/bench_ceiling.py: its stacks are the held-out stack's own scene, its 2.5D
input puts each slice between its neighbours, and its widened model starts as the bundled
one (the neighbour channels begin at zero weight)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet_stack import load_model
from napari_unet_stack.samples import SAMPLES
from napari_unet_stack.synthetic import varied_nuclei


@pytest.fixture
def bench(load_benchmark):
    return load_benchmark("bench_ceiling")


def test_the_stacks_share_the_held_out_scene_not_its_pixels(bench):
    # the scene is drawn before anything is placed, so a tiny stack of the sample's seed has it
    held = varied_nuclei(**{**SAMPLES["nuclei_stack"]["kwargs"], "shape": (1, 8, 8)})
    made = bench.scene_stacks(2, shape=(4, 48, 48))
    assert all(m.scene == held.scene for m in made)
    assert not np.array_equal(made[0].image, made[1].image)
    assert made[0].image.dtype == held.image.dtype


def test_context_puts_each_slice_between_its_neighbours(bench):
    stack = np.arange(4)[:, None, None] * np.ones((4, 2, 3), int)
    ctx = bench.with_context(stack)
    assert ctx.shape == (4, 3, 2, 3)
    assert [tuple(ctx[z, :, 0, 0]) for z in range(4)] == [(0, 0, 1), (0, 1, 2), (1, 2, 3), (2, 3, 3)]


def test_the_widened_model_starts_as_the_bundled_one(bench):
    wide, base = bench.context_model().eval(), load_model("nuclei-unet")
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        np.testing.assert_allclose(wide(x).numpy(), base(x[:, 1:2]).numpy(), atol=1e-5)
