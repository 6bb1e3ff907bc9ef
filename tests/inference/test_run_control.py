"""Running a stack: progress, out=, the generator's finished slices, cancel, the out-of-memory
back-off, inference mode between yields, zarr and dask inputs."""

import threading

import numpy as np
import pytest
import torch

import napari_unet_stack as nus
from napari_unet_stack.models.base import SegmentationNetwork


def test_progress_and_out(stack, nets):
    model = nets.MODELS["unet-transposed"]()
    calls = []
    out = np.zeros(stack.shape, np.uint16)
    result = nus.segment(stack, model, tile_size=32, batch_size=2, border="reach",
                         progress=lambda d, t: calls.append((d, t)), out=out)
    assert result is out and len(np.unique(out)) >= 2  # not trivially empty
    np.testing.assert_array_equal(out, nus.segment(stack, model, tile_size=None, border="reach"))
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and calls[-1][0] == calls[-1][1] == 2 * 3 * 5


def test_generator_reports_finished_slices(stack, nets):
    model = nets.MODELS["unet-transposed"]()
    gen = nus.iter_segment(stack, model, tile_size=32, batch_size=4)
    finished = []
    try:
        while True:
            finished.extend(next(gen).slices)
    except StopIteration as stop:
        labels = stop.value
    assert finished == [(0,), (1,)]
    np.testing.assert_array_equal(labels, nus.segment(stack, model, tile_size=None))
    assert len(np.unique(labels)) >= 2  # not trivially empty


def test_cancel_between_batches(stack, nets):
    model = nets.MODELS["unet-transposed"]()
    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        cancel.set()

    out = np.zeros(stack.shape, np.uint8)
    with pytest.raises(nus.InferenceCancelled):
        nus.segment(stack, model, tile_size=32, batch_size=2, progress=progress, cancel=cancel, out=out)
    assert seen == [2]  # stopped right after the first batch


class FlakyMemory(SegmentationNetwork):
    """Simulates a device that runs out of memory above a batch size or a window size."""

    def __init__(self, inner, max_batch=1, max_window=10**9):
        super().__init__()
        self.inner, self.max_batch, self.max_window = inner, max_batch, max_window
        self.in_channels, self.out_channels, self.depth = inner.in_channels, inner.out_channels, inner.depth
        self.failures = 0

    def _reach(self):
        return self.inner.reach

    def forward(self, x):
        if x.shape[0] > self.max_batch or x.shape[-1] > self.max_window:
            self.failures += 1
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.inner(x)


class OutOfMemoryOnce(FlakyMemory):
    """Out of memory on its ``nth`` forward only, whatever the batch."""

    def __init__(self, inner, nth):
        super().__init__(inner, max_batch=10**9)
        self.nth, self.calls = nth, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.nth:
            self.failures += 1
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().forward(x)


def test_out_of_memory_halves_the_batch_and_keeps_the_result(stack, nets):
    inner = nets.MODELS["unet-transposed"]()
    expected = nus.predict(stack, inner, tile_size=None)
    flaky = FlakyMemory(inner, max_batch=2)
    info = {}
    got = nus.predict(stack, flaky, tile_size=32, batch_size=8, info=info)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert info["oom_retries"] == 2 and info["batch_size"] == 2  # 8 -> 4 -> 2


def test_info_batch_size_is_the_most_tiles_one_forward_took(stack, nets, monkeypatch):
    from napari_unet_stack.inference import engine

    batches, real = [], engine.forward

    def counted(spec, fn, x, *args, **kwargs):  # the batch of each forward that ran
        out = real(spec, fn, x, *args, **kwargs)
        batches.append(int(x.shape[0]))
        return out

    monkeypatch.setattr(engine, "forward", counted)
    model = nets.MODELS["unet-transposed"]()
    cases = [
        (stack[0], {"tile_size": None, "batch_size": 8}, 1),  # one tile: a batch of 1, not the plan's 8
        (stack, {"tile_size": 32, "batch_size": 4}, 4),  # 2 x 5 tiles: batches of 4, 4 and 2
        (stack[:1], {"tile_size": 32, "batch_size": 64}, 5),  # fewer tiles than the plan's batch
    ]
    for image, options, expected in cases:
        batches.clear()
        info = {}
        nus.predict(image, model, device="cpu", precision="float32", info=info, **options)
        assert sum(batches) == info["n_tiles"]  # every tile went through a forward once
        assert info["batch_size"] == max(batches) == expected
    # out of memory after two batches of 4 ran: the rest go by 2, and 4 was the most one took
    batches.clear()
    info = {}
    nus.predict(stack, OutOfMemoryOnce(model, nth=3), tile_size=32, batch_size=4, device="cpu",
                precision="float32", info=info)  # float32: no precision probe runs the network
    assert batches[:2] == [4, 4] and batches[2:] == [2] and sum(batches) == 10
    assert info["batch_size"] == 4 and info["oom_retries"] == 1


def test_out_of_memory_at_batch_one_shrinks_tiles(stack, nets):
    inner = nets.MODELS["unet-transposed"]()
    expected = nus.segment(stack, inner, tile_size=None)
    flaky = FlakyMemory(inner, max_batch=1, max_window=64 + 2 * inner.halo)
    info = {}
    got = nus.segment(stack, flaky, tile_size=128, batch_size=1, info=info)
    np.testing.assert_array_equal(got, expected)
    assert info["tile_shape"][1] <= 64


def test_inference_mode_is_not_held_across_yields(stack, nets):
    """The generator may be resumed or closed from another thread (napari workers):
    between events no torch inference mode is left on in the caller's thread."""
    model = nets.MODELS["unet-transposed"]()
    gen = nus.iter_segment(stack, model, tile_size=32, batch_size=2)
    for _ in range(3):
        next(gen)
        assert not torch.is_inference_mode_enabled()
    closer = threading.Thread(target=gen.close)
    closer.start()
    closer.join()
    assert not torch.is_inference_mode_enabled()
    # and a tensor made now can take part in autograd
    assert (torch.ones(2, requires_grad=True) * 2).sum().requires_grad


def test_dask_input_gives_lazy_equal_result(stack, nets):
    da = pytest.importorskip("dask.array")
    model = nets.MODELS["unet-transposed"]()
    lazy = nus.segment(da.from_array(stack, chunks=(1, 40, 64)), model, tile_size=32)
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), nus.segment(stack, model, tile_size=32))
    probs = nus.predict(da.from_array(stack, chunks=(1, 77, 130)), model, tile_size=None)
    # float32 rounding only: each dask task holds one slice, while the eager run batches its
    # small windows (batch_size 'auto' on the CPU), and oneDNN's sums differ by batch (~1e-6)
    np.testing.assert_allclose(probs.compute(), nus.predict(stack, model, tile_size=None), atol=1e-5)


def test_zarr_input_and_output(tmp_path, stack, nets):
    zarr = pytest.importorskip("zarr")
    model = nets.MODELS["unet-transposed"]()
    src = zarr.open(str(tmp_path / "in.zarr"), mode="w", shape=stack.shape, chunks=(1, 77, 130), dtype=stack.dtype)
    src[:] = stack
    dst = zarr.open(str(tmp_path / "out.zarr"), mode="w", shape=stack.shape, chunks=(1, 77, 130), dtype=np.uint8)
    nus.segment(src, model, tile_size=32, out=dst)
    np.testing.assert_array_equal(dst[:], nus.segment(stack, model, tile_size=32))
