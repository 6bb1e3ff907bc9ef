"""CUDA code paths of the engine, run on a machine with a GPU (skipped without one).

`scripts/gpu_check.sh` runs these and benchmark (d) in one go on the accelerator machine.
"""

import numpy as np
import pytest
import torch

import napari_unet_stack as nus

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _model(depth=3, base=8, **kwargs):
    torch.manual_seed(0)
    model = nus.UNet(1, 2, base_channels=base, depth=depth, **kwargs)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.bias.data.uniform_(0.0, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def stack():
    return (np.random.default_rng(0).random((6, 300, 420)) * 4000).astype(np.uint16)


@pytest.mark.parametrize("upsampling", ["transposed", "bilinear"])
def test_tiled_equals_whole_slice_on_cuda_in_float32(stack, upsampling):
    """Exact tiling holds on the GPU too; several batches go through the pinned double
    buffers and the prefetch thread."""
    model = _model(upsampling=upsampling)
    info = {}
    whole = nus.predict(stack, model, tile_size=None, device="cuda", precision="float32")
    tiled = nus.predict(stack, model, tile_size=64, batch_size=5, device="cuda", precision="float32", info=info)
    assert info["n_tiles"] > 3 * 5  # several batches, slices mixed within batches
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    cpu = nus.predict(stack, model, tile_size=None, device="cpu")
    np.testing.assert_allclose(whole, cpu, atol=1e-3)


def test_bf16_labels_agree_with_float32(stack):
    model = _model()
    info = {}
    labels = nus.segment(stack, model, device="cuda", info=info)
    assert info["device"].startswith("cuda") and info["precision"] in ("bfloat16", "float16")
    reference = nus.segment(stack, model, device="cuda", precision="float32")
    assert (labels == reference).mean() > 0.98


def test_callers_model_stays_where_it_was(stack):
    model = _model()
    nus.segment(stack[:1], model, device="cuda")
    assert next(model.parameters()).device.type == "cpu"
    assert not model.training


def test_unetpp_fast_head_on_cuda(stack):
    torch.manual_seed(0)
    model = nus.NestedUNet(1, 2, base_channels=8, depth=3, deep_supervision=True).eval()
    accurate = nus.predict(stack[:2], model, device="cuda", precision="float32")
    model.head = 1
    fast = nus.predict(stack[:2], model, device="cuda", precision="float32")
    cpu_fast = nus.predict(stack[:2], model, device="cpu")
    np.testing.assert_allclose(fast, cpu_fast, atol=1e-3)
    assert np.abs(fast - accurate).max() > 1e-3


def test_real_out_of_memory_backs_off_and_finishes():
    """With the process capped to a sliver of the GPU, 'auto' sizing (which reads the free
    memory of the whole card) overshoots: real OOMs, then halved batches / tiles, and the
    result still equals a float32 whole-slice run."""
    model = _model(depth=4, base=32)
    image = (np.random.default_rng(1).random((8, 1024, 1024)) * 1000).astype(np.uint16)
    reference = nus.segment(image, model, device="cuda", precision="float32", tile_size=256, batch_size=1)
    torch.cuda.empty_cache()
    fraction = min(1.0, 3 * 2**30 / torch.cuda.get_device_properties(0).total_memory)
    torch.cuda.set_per_process_memory_fraction(fraction)
    try:
        info = {}
        labels = nus.segment(image, model, device="cuda", precision="float32", tile_size=1024,
                             batch_size=64, info=info)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert info.get("oom_retries", 0) >= 1
    assert (labels == reference).mean() > 0.999  # cudnn may pick other kernels per shape


def test_bundled_model_on_cuda_scores_like_on_cpu():
    sample = nus.load_sample("nuclei_stack")
    model = nus.load_model("nuclei-unet")
    labels = nus.segment(sample.image, model, device="cuda")
    truth = sample.labels > 0
    pred = labels > 0
    dice = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
    assert dice > 0.9
