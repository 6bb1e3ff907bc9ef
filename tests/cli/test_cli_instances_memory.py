"""`unet-stack predict --instances` with bounded memory (issue 14 item 3): the labels go slice
by slice through an on-disk scratch array into the output, which equals
``segment(..., instances=True)``; memory does not grow with the number of slices; nothing
temporary is left, whether the run succeeds, fails or is interrupted."""

from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest
from scipy import ndimage

from napari_unet_stack import io, postprocess, segment
from napari_unet_stack.cli import predict as cli_predict


@pytest.fixture
def blobs():
    """``blobs(n, size)``: a float32 (n, size, size) stack of 0/1 blobs, touching in places
    and running through several slices (objects to split and to link)."""

    def make(n, size=48, seed=0):
        noise = np.random.default_rng(seed).random((n, size, size))
        return (ndimage.gaussian_filter(noise, (1.5, 2.5, 2.5)) > 0.52).astype(np.float32)

    return make


@pytest.fixture
def threshold_cli(monkeypatch, threshold_net):
    """The CLI with ``--model`` loading the threshold network (whatever the name)."""
    net = threshold_net().eval()
    monkeypatch.setattr(cli_predict, "load_cli_model", lambda source, trust: net)
    return net


def _read(path):
    with io.read_image(path) as labels:
        return np.asarray(labels.data[...]), labels.axes


@pytest.mark.slow
def test_cli_instances_equal_segment_in_every_output(run, tmp_path, blobs, threshold_cli):
    stack = blobs(6)
    np.save(tmp_path / "in.npy", stack)
    out = tmp_path / "out"
    out.mkdir()
    expected = segment(stack, threshold_cli, device="cpu", instances=True)
    per_slice = segment(stack, threshold_cli, device="cpu", instances=True, instance_ndim=2, min_size=4)
    assert expected.max() > 5 and per_slice.max() > expected.max()
    for name, argv, want in (("a.tif", [], expected), ("b.zarr", [], expected), ("c.ome.zarr", [], expected),
                             ("d.tif", ["--per-slice", "--min-size", "4"], per_slice),
                             ("e.npy", ["--probabilities", out / "p.zarr"], expected)):
        code, _, err = run("predict", tmp_path / "in.npy", "-o", out / name, "--model", "threshold",
                           "--instances", *argv, "-q")
        assert code == 0, err
        labels, _ = _read(out / name)
        assert labels.dtype == want.dtype, name
        np.testing.assert_array_equal(labels, want, err_msg=name)
    assert sorted(os.listdir(out)) == ["a.tif", "b.zarr", "c.ome.zarr", "d.tif", "e.npy", "p.zarr"]  # no scratch


def _peak(run, src, dst) -> int:
    tracemalloc.start()
    try:
        code, _, err = run("predict", src, "-o", dst, "--model", "threshold", "--instances", "--tile-size", "none",
                           "-q")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 0, err
    return peak


@pytest.mark.slow
@pytest.mark.parametrize("ext", [".tif", ".zarr"])
def test_cli_instance_memory_does_not_grow_with_the_stack(run, tmp_path, blobs, threshold_cli, ext):
    """Python's allocations (numpy's included) at their peak, for 6 and for 36 slices: the 30
    more slices add less than 10 slices' worth of uint32 ids (bookkeeping of a few KB per
    slice: tile plans, TIFF page offsets); the whole stack held, as before, added more than
    30 (4 bytes of ids per pixel, plus the final dtype's copy). No timing involved."""
    size = 64
    for n in (2, 6, 36):
        np.save(tmp_path / f"in{n}.npy", blobs(n, size))
    _peak(run, tmp_path / "in2.npy", tmp_path / f"warm{ext}")  # imports and caches
    small = _peak(run, tmp_path / "in6.npy", tmp_path / f"small{ext}")
    large = _peak(run, tmp_path / "in36.npy", tmp_path / f"large{ext}")
    one_slice = size * size * 4
    assert large - small < 10 * one_slice, (small / one_slice, large / one_slice)
    labels, _ = _read(tmp_path / f"large{ext}")
    np.testing.assert_array_equal(labels, segment(np.load(tmp_path / "in36.npy"), threshold_cli, device="cpu",
                                                  instances=True))


@pytest.mark.parametrize("error", [KeyboardInterrupt, ValueError])
def test_cli_instances_interrupted_leave_nothing(run, tmp_path, blobs, threshold_cli, monkeypatch, error):
    """Ctrl-C (or an error) while the ids are decoded: exit 130 (2), no output, no scratch."""
    np.save(tmp_path / "in.npy", blobs(3, 24))
    out = tmp_path / "out"
    out.mkdir()
    seen = []

    def stop(self, labels, time_axes=(), out=None):
        seen.append(os.listdir(tmp_path / "out"))  # the scratch array exists meanwhile
        raise error("stop")

    monkeypatch.setattr(postprocess.InstanceOptions, "apply", stop)
    code, _, err = run("predict", tmp_path / "in.npy", "-o", out / "cells.tif", "--model", "threshold",
                       "--instances", "-q")
    assert code == (130 if error is KeyboardInterrupt else 2), err
    assert len(seen) == 1 and any(".scratch-" in name for name in seen[0])
    assert os.listdir(out) == []


@pytest.mark.slow
def test_cli_instances_on_a_scheduler_go_through_the_scratch_array(run, tmp_path, inputs, checkpoint, model, stack,
                                                                   monkeypatch):
    """With ``--scheduler`` the workers write the semantic labels into the scratch array
    (nothing gathered to the caller); the result equals segment's."""
    import contextlib

    dd = pytest.importorskip("distributed")
    from napari_unet_stack import distributed

    @contextlib.contextmanager
    def in_process(address, timeout=None):
        with dd.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
            yield client

    monkeypatch.setattr(distributed, "connect", in_process)
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run("predict", inputs / "a.tif", "-o", out / "cells.zarr", "--model", checkpoint, "--instances",
                       "--min-size", "5", "--scheduler", "local:1", "-q")
    assert code == 0, err
    labels, _ = _read(out / "cells.zarr")
    np.testing.assert_array_equal(labels, segment(stack, model, device="cpu", instances=True, min_size=5))
    assert os.listdir(out) == ["cells.zarr"]
