"""``unet-stack info``: versions and the devices torch sees."""

from __future__ import annotations

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="print versions and the devices torch sees")
    p.set_defaults(func=run)


def run(args) -> int:
    import platform

    import numpy
    import torch

    from .._version import __version__

    print(f"napari-unet-stack {__version__}")
    print(f"python {platform.python_version()}, numpy {numpy.__version__}, torch {torch.__version__}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            print(f"device cuda:{i}: {torch.cuda.get_device_name(i)}")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        print("device mps: available")
    print(f"device cpu: {torch.get_num_threads()} threads")
    return 0
