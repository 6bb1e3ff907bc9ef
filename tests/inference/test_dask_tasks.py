"""Lazy dask results and dask.distributed: equal to the in-memory engine, model shipped once."""

import pickle

import dask
import dask.array as da
import numpy as np
import pytest
import torch

from napari_unet_stack import distributed, io, predict, segment
from napari_unet_stack.checkpoints import save_model
from napari_unet_stack.inference import sources
from napari_unet_stack.models import UNet

OPTS = {"device": "cpu", "tile_size": 32}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return UNet(1, 2, base_channels=4, depth=2).eval()


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    return str(save_model(model, tmp_path_factory.mktemp("ckpt") / "tiny.pt"))


@pytest.fixture(scope="module")
def stack():
    rng = np.random.default_rng(0)
    return (rng.gamma(2.0, 300.0, (6, 40, 52))).astype(np.uint16)


@pytest.mark.parametrize("chunk", [1, 4])
@pytest.mark.parametrize("by", ["object", "source"])
def test_lazy_segment_equals_in_memory(model, checkpoint, stack, chunk, by):
    expected = segment(stack, model, **OPTS)
    info = {}
    lazy = segment(da.from_array(stack, chunks=(chunk, 40, 52)), model if by == "object" else checkpoint,
                   info=info, **OPTS)
    assert isinstance(lazy, da.Array)
    assert lazy.dtype == expected.dtype and lazy.shape == expected.shape
    assert info["n_tasks"] == len(range(0, 6, chunk)) and info["model_transport"] == by
    np.testing.assert_array_equal(lazy.compute(), expected)


def test_lazy_probabilities_and_channels(stack):
    torch.manual_seed(1)
    rgb_model = UNet(3, 3, base_channels=4, depth=2).eval()
    image = np.stack([stack, stack[::-1], stack // 2], axis=-1)  # (Z, Y, X, C)
    expected = predict(image, rgb_model, channel_axis=-1, **OPTS)
    lazy = predict(da.from_array(image, chunks=(2, 20, 20, 1)), rgb_model, channel_axis=-1, **OPTS)
    assert lazy.shape == expected.shape == (3, 6, 40, 52)
    np.testing.assert_allclose(lazy.compute(), expected, rtol=0, atol=1e-6)
    labels = segment(da.from_array(image, chunks=(3, 40, 52, 3)), rgb_model, channel_axis=-1, **OPTS)
    np.testing.assert_array_equal(labels.compute(), segment(image, rgb_model, channel_axis=-1, **OPTS))


def test_stack_normalization_fitted_once_for_all_chunks(model, stack):
    norm = {"mode": "percentile", "low": 1.0, "high": 99.0, "scope": "stack"}
    lazy = segment(da.from_array(stack, chunks=(1, 40, 52)), model, normalization=norm, **OPTS)
    np.testing.assert_array_equal(lazy.compute(), segment(stack, model, normalization=norm, **OPTS))


def test_model_object_is_in_the_graph_once(model, stack):
    lazy = segment(da.from_array(stack, chunks=(1, 40, 52)), model, **OPTS)
    graph = dict(lazy.__dask_graph__())
    weights = len(pickle.dumps(model))
    heavy = [key for key, task in graph.items() if len(pickle.dumps(task)) > weights / 2]
    assert len(heavy) == 1 and "model" in str(heavy[0])
    tasks = [key for key in graph if str(key).startswith("('segment-")]
    assert len(tasks) == 6  # one task per slice chunk, all depending on that one key


def test_model_source_loaded_once_per_process(checkpoint, stack):
    before = sources.load_stats()["loads"]
    lazy = segment(da.from_array(stack, chunks=(1, 40, 52)), checkpoint, **OPTS)
    tasks = {k: t for k, t in dict(lazy.__dask_graph__()).items() if str(k).startswith("('segment-")}
    assert len(tasks) == 6
    for task in tasks.values():
        assert len(pickle.dumps(task)) < 2000  # a path, never the weights
    lazy.compute(scheduler="threads")
    lazy.compute(scheduler="sync")
    assert sources.load_stats()["loads"] - before <= 1


def test_dask_input_into_zarr_out_chunk_by_chunk(tmp_path, model, stack):
    import threading

    from napari_unet_stack import InferenceCancelled

    image = da.from_array(stack, chunks=(2, 40, 52))
    calls = []
    with io.create_image(tmp_path / "o.zarr", stack.shape, np.uint8) as out:
        result = segment(image, model, out=out, progress=lambda d, t: calls.append((d, t)), **OPTS)
        assert result is out
        np.testing.assert_array_equal(out[...], segment(stack, model, **OPTS))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    probs = np.zeros((2, *stack.shape), np.float32)
    predict(image, model, out=probs, **OPTS)
    np.testing.assert_allclose(probs, predict(stack, model, **OPTS), atol=1e-6)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(InferenceCancelled):
        segment(image, model, out=np.zeros(stack.shape, np.uint8), cancel=cancel, **OPTS)


def test_lazy_refuses_in_memory_options(model, stack):
    image = da.from_array(stack, chunks=(2, 40, 52))
    with pytest.raises(ValueError, match="need `out=`"):
        segment(image, model, progress=print, **OPTS)
    with pytest.raises(ValueError, match="shape"):
        segment(image, model, out=np.zeros((1, 2, 3), np.uint8), **OPTS)
    # instances are computed chunk by chunk (issue 14: no longer refused), equal to numpy's
    np.testing.assert_array_equal(segment(image, model, instances=True, **OPTS),
                                  segment(stack, model, instances=True, **OPTS))


def test_parse_scheduler():
    assert distributed.parse_scheduler("local:3") == ("local", 3)
    assert distributed.parse_scheduler("tcp://127.0.0.1:8786") == ("tcp", "tcp://127.0.0.1:8786")
    for bad in ("local:0", "local", "127.0.0.1:8786", "tcp://host", "http://x:1"):
        with pytest.raises(ValueError, match="scheduler"):
            distributed.parse_scheduler(bad)


def test_local_cluster_is_loopback_processes(monkeypatch):
    made = {}

    class FakeCluster:
        def __init__(self, **kwargs):
            made.update(kwargs)

        def close(self):
            made["closed"] = True

    class FakeClient:
        def __init__(self, cluster):
            self.cluster = cluster

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    import distributed as dd

    monkeypatch.setattr(dd, "LocalCluster", FakeCluster)
    monkeypatch.setattr(dd, "Client", FakeClient)
    with distributed.connect("local:3") as client:
        assert isinstance(client, FakeClient)
    assert made["n_workers"] == 3 and made["threads_per_worker"] == 1
    assert made["processes"] is True and made["host"] == "127.0.0.1" and made["closed"]


def test_store_without_client_reports_each_chunk(tmp_path, model, stack):
    lazy = segment(da.from_array(stack, chunks=(2, 40, 52)), model, **OPTS)
    calls = []
    with io.create_image(tmp_path / "s.zarr", lazy.shape, lazy.dtype) as out:
        distributed.store(lazy, out, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    with io.read_image(tmp_path / "s.zarr") as back:
        np.testing.assert_array_equal(back.data[...], segment(stack, model, **OPTS))


@pytest.fixture(scope="module")
def cluster():
    dd = pytest.importorskip("distributed")
    with dd.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=None, silence_logs=50) as cl:
        yield cl


@pytest.mark.slow
def test_distributed_local_cluster_equals_in_memory(cluster, model, checkpoint, stack, tmp_path):
    expected = segment(stack, model, **OPTS)
    with distributed.connect(cluster.scheduler_address) as client:
        image = da.from_array(stack, chunks=(1, 40, 52))
        by_source = segment(image, checkpoint, **OPTS)
        np.testing.assert_array_equal(client.compute(by_source).result(), expected)
        # each worker process loaded the checkpoint at most once for 6 tasks
        loads = client.run(lambda: sources.load_stats()["loads"])
        assert len(loads) == 2 and all(n <= 1 for n in loads.values()) and sum(loads.values()) >= 1
        by_object = segment(image, model, **OPTS)
        np.testing.assert_array_equal(client.compute(by_object).result(), expected)
        # workers write their chunks straight into an on-disk zarr output
        done = []
        with io.create_image(tmp_path / "out.ome.zarr", expected.shape, expected.dtype, axes="ZYX") as out:
            distributed.store(by_source, out, client=client, progress=lambda d, t: done.append(d))
        assert sorted(done) == list(range(1, 7))
        with io.read_image(tmp_path / "out.ome.zarr") as back:
            np.testing.assert_array_equal(back.data[...], expected)
        # the CLI on the same cluster (`--scheduler tcp://...`): zarr and TIFF outputs equal the local run
        from napari_unet_stack import cli

        io.write_image(tmp_path / "in.tif", stack, axes="ZYX", scale={"Z": 3.0})
        for name in ("cli.ome.zarr", "cli.tif"):
            argv = ["predict", str(tmp_path / "in.tif"), "-o", str(tmp_path / name), "--model", checkpoint,
                    "--scheduler", cluster.scheduler_address, "--chunk-slices", "2", "--device", "cpu",
                    "--tile-size", "32"]
            assert cli.main(argv) == 0
            with io.read_image(tmp_path / name) as back:
                assert back.axes == "ZYX" and back.scale == {"Z": 3.0}
                np.testing.assert_array_equal(np.asarray(back.data[...]), expected)
    with dask.config.set(scheduler="sync"):
        assert segment(da.from_array(stack, chunks=(3, 40, 52)), model, **OPTS).compute().shape == stack.shape
