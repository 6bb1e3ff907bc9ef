"""The distance watershed's marker search: `postprocess.peaks.region_peaks` (all regions in
one pass) against skimage's ``peak_local_max(labels=...)`` (region by region), interleaved
in one process, on the held-out stack's true foreground and on that foreground with a
fraction of its pixels flipped (the ragged foreground of a weak model), at the defaults
(min_distance 3, smoothing 1). That the peaks are skimage's for each region searched alone:
tests/postprocess/test_peaks.py.

    python benchmarks/bench_peaks.py [--repeats 5] [--flip 0.03]

Not part of ``make bench`` (it measures a decoding step, not the engine); its figures are
in the README (*Python API*, instance labels).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.measure import label

from napari_unet_stack.postprocess.peaks import region_peaks
from napari_unet_stack.samples import load_sample


def inputs(mask: np.ndarray, smoothing: float = 1.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(smoothed distance transform, 4-connected regions) of each slice."""
    return [(ndi.gaussian_filter(ndi.distance_transform_edt(m), smoothing), label(m, connectivity=1)) for m in mask]


def timed(find, slices) -> float:
    t = time.perf_counter()
    for dist, regions in slices:
        find(dist, regions)
    return time.perf_counter() - t


def skimage_peaks(dist, regions):
    return peak_local_max(dist, min_distance=3, labels=regions, exclude_border=False)


def ours(dist, regions):
    return region_peaks(dist, regions, 3)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--flip", type=float, default=0.03, help="fraction of the mask's pixels flipped")
    args = p.parse_args(argv)
    mask = np.asarray(load_sample("nuclei_stack").labels) > 0
    flipped = mask ^ (np.random.default_rng(0).random(mask.shape) < args.flip)
    for name, m in (("true mask", mask), (f"{args.flip:.0%} flipped", flipped)):
        slices = inputs(m)
        regions = sum(int(r.max()) for _, r in slices)
        times = {"skimage": [], "ours": []}
        for r in range(args.repeats):
            order = ("skimage", "ours") if r % 2 == 0 else ("ours", "skimage")
            for key in order:
                times[key].append(timed(skimage_peaks if key == "skimage" else ours, slices))
        ratios = np.array(times["skimage"]) / np.array(times["ours"])
        print(f"{name}: {m.shape[0]} x {m.shape[1]} x {m.shape[2]}, {regions} regions: skimage "
              f"{np.median(times['skimage']):.3f} s, region_peaks {np.median(times['ours']):.3f} s, "
              f"{np.median(ratios):.1f}x ({ratios.min():.1f}-{ratios.max():.1f}) faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
