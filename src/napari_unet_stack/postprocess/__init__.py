"""Instance labels from semantic labels (probabilities -> semantic labels is
`napari_unet_stack.labels`).

- `slices`: one slice's objects, a distance-transform watershed (touching objects split)
  or connected components;
- `linking`: objects of neighbouring slices matched by IoU (or any overlap);
- `stack`: a whole array slice by slice into ``out``: Z linked, time axes independent,
  ids unique over the array.
"""

from .linking import DEFAULT_LINK_IOU, iou_links, overlap_pairs
from .slices import DEFAULT_MIN_DISTANCE, DEFAULT_SMOOTHING, components_slice, watershed_slice
from .stack import METHODS, instance_labels, slice_groups

__all__ = ["DEFAULT_LINK_IOU", "DEFAULT_MIN_DISTANCE", "DEFAULT_SMOOTHING", "METHODS", "components_slice",
           "instance_labels", "iou_links", "overlap_pairs", "slice_groups", "watershed_slice"]
