"""Training speed: the training precision rule, channels-last, and the patch sampling thread
(same batches as the sampler in the loop, errors raised in the caller, no thread left)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from napari_unet_stack.training import TrainingCancelled, iter_train, train
from napari_unet_stack.training import setup as training_setup
from napari_unet_stack.training.augment import AugmentConfig, PatchSampler
from napari_unet_stack.training.data import Slice, index_centres
from napari_unet_stack.training.prefetch import THREAD_NAME, BatchPrefetcher
from napari_unet_stack.training.setup import train_precision

SMALL = {"patch_size": 32, "batch_size": 2, "lr": 5e-3, "device": "cpu"}
CPU = torch.device("cpu")


def _sampling_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def _no_thread_left() -> bool:
    for t in _sampling_threads():
        t.join(timeout=5)
    return not _sampling_threads()


def _sampler(seed: int) -> PatchSampler:
    rng = np.random.default_rng(seed)
    data = np.random.default_rng(99)
    slices = [
        Slice(data.normal(size=(1, 40, 50)).astype(np.float32),
              (data.random((40, 50)) > 0.7).astype(np.int16), (0, (k,)))
        for k in range(3)
    ]  # fmt: skip
    index_centres(slices, False, rng)
    return PatchSampler(slices, patch_shape=(24, 24), label_shape=(24, 24), cfg=AugmentConfig(),
                        rng=rng, sparse=False)  # fmt: skip


# ----------------------------------------------------------------------------- precision
@pytest.mark.parametrize(("native", "expected"), [(True, torch.bfloat16), (False, None)])
def test_auto_training_precision_is_bf16_on_cpus_that_have_it(monkeypatch, native, expected):
    monkeypatch.setattr(training_setup, "cpu_native_bf16", lambda: native)
    assert train_precision("auto", CPU) is expected
    assert train_precision(None, CPU) is expected
    assert train_precision("float32", CPU) is None
    assert train_precision("bfloat16", CPU) is torch.bfloat16  # explicit: any CPU


def test_float16_and_unknown_precisions_are_refused_naming_the_argument(data):
    with pytest.raises(ValueError, match=r"float16.*not supported on the CPU"):
        train(data.image, data.labels, steps=1, precision="float16", **SMALL)
    with pytest.raises(ValueError, match="`precision` must be"):
        train(data.image, data.labels, steps=1, precision="half", **SMALL)


def test_bf16_training_on_the_cpu_returns_an_ordinary_float32_model(data, tiny_unet):
    model, history = train(data.image, data.labels, tiny_unet(), steps=3, val_every=3,
                           precision="bfloat16", **SMALL)  # fmt: skip
    assert model.meta["provenance"]["precision"] == "bfloat16"
    assert np.isfinite(history["loss"]).all() and np.isfinite(history["val_dice"]).all()
    for name, p in model.state_dict().items():
        assert p.dtype == torch.float32 or not p.is_floating_point(), name
        assert p.is_contiguous(), name  # trained channels-last, handed back in NCHW


# ----------------------------------------------------------------------------- the thread
def test_prefetched_batches_are_the_samplers_batches_in_order():
    direct, ahead = _sampler(5), _sampler(5)
    prefetch = BatchPrefetcher(ahead, 3, depth=2)
    try:
        for _ in range(4):
            x, y = prefetch.next()
            ex, ey = direct.batch(3)
            np.testing.assert_array_equal(x, ex)
            np.testing.assert_array_equal(y, ey)
            # the state after the batch handed out, though the thread has drawn further
            assert prefetch.rng_state == direct.rng.bit_generator.state
    finally:
        prefetch.close()
    assert not prefetch.alive and _no_thread_left()


class _Failing:
    """A sampler whose third batch raises."""

    def __init__(self):
        self.rng = np.random.default_rng(0)
        self.calls = 0

    def batch(self, size):
        self.calls += 1
        if self.calls == 3:
            raise ValueError("patch 3 went wrong")
        return np.zeros((size, 1, 4, 4), np.float32), np.zeros((size, 4, 4), np.int64)


def test_an_error_in_the_thread_is_raised_in_the_caller_with_its_message():
    prefetch = BatchPrefetcher(_Failing(), 2)
    prefetch.next()
    prefetch.next()
    with pytest.raises(ValueError, match="patch 3 went wrong"):
        prefetch.next()
    assert not prefetch.alive and _no_thread_left()


def test_a_sampling_error_in_train_surfaces_and_leaves_no_thread(data, tiny_unet, monkeypatch):
    calls = []

    def batch(self, size):
        calls.append(size)
        if len(calls) == 2:
            raise ValueError("augmentation failed on purpose")
        return original(self, size)

    original = PatchSampler.batch
    monkeypatch.setattr(PatchSampler, "batch", batch)
    with pytest.raises(ValueError, match="augmentation failed on purpose"):
        train(data.image, data.labels, tiny_unet(), steps=5, val_fraction=0, **SMALL)
    assert _no_thread_left()


def test_no_thread_is_left_after_a_run_a_cancel_a_failing_callback_or_an_abandoned_generator(
    data, tiny_unet
):
    train(data.image, data.labels, tiny_unet(), steps=2, val_fraction=0, **SMALL)
    assert _no_thread_left()

    cancel = threading.Event()

    def stop_after_one(step, total, info):
        if step == 1:
            cancel.set()

    with pytest.raises(TrainingCancelled):
        train(data.image, data.labels, tiny_unet(), steps=5, val_fraction=0, cancel=cancel,
              progress=stop_after_one, **SMALL)  # fmt: skip
    assert _no_thread_left()

    def boom(step, total, info):
        if step == 1:
            raise KeyError("callback failed")

    with pytest.raises(KeyError, match="callback failed"):
        train(data.image, data.labels, tiny_unet(), steps=5, val_fraction=0, progress=boom, **SMALL)
    assert _no_thread_left()

    gen = iter_train(data.image, data.labels, tiny_unet(), steps=5, val_fraction=0, **SMALL)
    next(gen), next(gen)  # step 0 and step 1: the thread runs
    assert _sampling_threads()
    gen.close()
    assert _no_thread_left()
