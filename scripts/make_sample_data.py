"""Write the shipped sample data into sample_data/ (seeded: the same files every run).

    python scripts/make_sample_data.py [--out sample_data]

Each shipped sample of `napari_unet_stack.samples.SAMPLES` becomes three zlib-compressed
TIFFs: ``<name>_image.tif`` (uint16), ``<name>_labels.tif`` (uint8, 0/1) and
``<name>_instances.tif`` (one id per nucleus). The large image is not shipped: it is
generated on first use and cached.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tifffile

from napari_unet_stack.samples import SAMPLES, generate_sample, sample_data_files

ROOT = Path(__file__).resolve().parents[1]
LIMIT_BYTES = 20 * 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "sample_data")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, spec in SAMPLES.items():
        if not spec["shipped"]:
            continue
        sample = generate_sample(name)
        for part, fname in sample_data_files(name).items():
            data = getattr(sample, part)
            tifffile.imwrite(
                args.out / fname,
                data,
                compression="zlib",
                compressionargs={"level": 9},
                predictor=data.dtype != np.uint8,
                metadata={"axes": "ZYX" if data.ndim == 3 else "YX"},
            )
        fg = float(sample.labels.mean())
        print(
            f"{name}: {sample.image.shape} {sample.image.dtype}, "
            f"{int(sample.instances.max())} nuclei, foreground {fg:.1%}"
        )
    total = sum(f.stat().st_size for f in args.out.iterdir() if f.is_file())
    print(f"{args.out}: {total / 2**20:.2f} MiB in all")
    if total > LIMIT_BYTES:
        raise SystemExit(f"sample_data/ is {total / 2**20:.1f} MiB, over the 20 MiB limit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
