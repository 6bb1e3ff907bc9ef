"""Instance labels from semantic labels: connected components and a size filter.

(Probabilities -> semantic labels is `napari_unet_stack.labels`.)
"""

from __future__ import annotations

import numpy as np

from .labels import smallest_uint

__all__ = ["instance_labels"]


def instance_labels(semantic: np.ndarray, *, ndim: int, min_size: int = 0) -> np.ndarray:
    """Connected components of equal non-zero labels over the last ``ndim`` axes.

    Leading axes beyond ``ndim`` (time, say) are labelled independently; ids are unique
    over the whole array. Components smaller than ``min_size`` pixels become 0. Returns
    the smallest unsigned dtype that holds the ids.
    """
    from skimage.measure import label
    from skimage.segmentation import relabel_sequential

    lead = semantic.shape[: semantic.ndim - ndim]
    out = np.zeros(semantic.shape, dtype=np.uint32 if semantic.size < 2**32 else np.uint64)
    offset = 0
    for index in np.ndindex(*lead):
        part = label(semantic[index], background=0, connectivity=1)
        if min_size > 0 and part.max() > 0:
            sizes = np.bincount(part.ravel())
            small = sizes < min_size
            small[0] = False
            part[small[part]] = 0
            part = relabel_sequential(part)[0]
        n = int(part.max())
        out[index] = np.where(part > 0, part + offset, 0)
        offset += n
    return out.astype(smallest_uint(offset), copy=False)
