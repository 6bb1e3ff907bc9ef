"""Device and precision selection, memory budgets (torch, no napari)."""

from __future__ import annotations

import functools
import logging
import os

import torch

log = logging.getLogger("napari_unet_stack")

#: Environment variable that overrides ``device="auto"`` (e.g. ``cpu`` in CI).
DEVICE_ENV = "NAPARI_UNET_STACK_DEVICE"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``: CUDA, then MPS, then CPU (or ``$NAPARI_UNET_STACK_DEVICE``).

    An explicit device that is not available is a clear ValueError, not a torch crash.
    """
    if device is None or device == "auto":
        env = os.environ.get(DEVICE_ENV)
        if env:
            return resolve_device(env)
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"`device` must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"`device={device!r}` was requested but CUDA is not available "
                f"(torch {torch.__version__} build; install a CUDA build of torch, or use device='cpu')"
            )
        index = 0 if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"`device={device!r}`: only {torch.cuda.device_count()} CUDA device(s) visible")
        return torch.device("cuda", index)
    if dev.type == "mps" and not _mps_available():
        raise ValueError(f"`device={device!r}` was requested but MPS is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"`device` type {dev.type!r} is not supported (use cpu, cuda or mps)")
    return dev


_PRECISIONS = {"float32": None, "fp32": None, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
               "float16": torch.float16, "fp16": torch.float16}


@functools.cache
def cpu_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), as oneDNN reports it.

    Returns
    -------
    bool
        False where torch has no oneDNN or cannot tell.
    """
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - torch builds without the op
        return False


def channels_last_for(device: torch.device) -> bool:
    """Whether the engine runs the network in channels-last memory format on ``device``.

    CUDA: yes (tensor cores). CPU: yes where oneDNN is available -- on 2-core AVX-512 Xeons
    it took 0.50-0.68x of the NCHW float32 time, UNet and UNet++, 256^2 and 512^2 slices
    (issue 13). MPS: no.

    Parameters
    ----------
    device : torch.device
        The run's device.

    Returns
    -------
    bool
    """
    if device.type == "cuda":
        return True
    return device.type == "cpu" and bool(torch.backends.mkldnn.is_available())


def resolve_precision(precision: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None = plain float32).

    ``"auto"``: bfloat16 on CUDA devices that support it, else float16 on CUDA; float32
    on CPU and MPS. (On CPUs with native bfloat16, ``precision="bfloat16"`` kept 99.976%
    (nuclei-unet) and 99.963% (nuclei-unetpp) of the float32 labels of the held-out sample at
    0.19-0.26x of the float32 NCHW time, but it flattens near-constant logits, e.g. of
    untrained networks, to all-background; issue 13.)
    """
    if precision is not None and not isinstance(precision, str):
        raise TypeError(f"`precision` must be 'auto', 'float32', 'bfloat16' or 'float16', got {precision!r}")
    if precision is None or precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    if precision not in _PRECISIONS:
        raise ValueError(f"`precision` must be 'auto', 'float32', 'bfloat16' or 'float16', got {precision!r}")
    dtype = _PRECISIONS[precision]
    if dtype is torch.float16 and device.type == "cpu":
        raise ValueError("`precision='float16'` is not supported on the CPU; use 'float32' or 'bfloat16'")
    return dtype


def precision_name(dtype: torch.dtype | None) -> str:
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def memory_budget(device: torch.device) -> int:
    """Bytes the engine may use for one batch of tiles on ``device``."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * 0.6)
    try:
        import psutil

        available = psutil.virtual_memory().available
    except ImportError:  # pragma: no cover - psutil is a dependency; a stripped install may lack it
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    cap = 2 * 2**30 if device.type == "mps" else 3 * 2**30
    return int(min(available * 0.25, cap))


def empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":  # pragma: no cover
        torch.mps.empty_cache()
