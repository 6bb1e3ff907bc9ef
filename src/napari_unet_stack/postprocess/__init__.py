"""Instance labels from semantic labels (probabilities -> semantic labels is
`napari_unet_stack.labels`).

- `slices`: one slice's objects, a distance-transform watershed (touching objects split)
  or connected components;
- `linking`: objects of neighbouring slices matched by IoU (or any overlap);
- `stack`: a whole array slice by slice into ``out``: Z linked, time axes independent,
  ids unique over the array;
- `zsplit`: Z-linked objects cut where their cross-section shrinks (nuclei stacked in Z);
- `options`: `InstanceOptions`, the one set of decoding options (segment, CLI, widgets);
- `decode`: `decode_probabilities`, instances from `predict`'s output (no network rerun).
"""

from .decode import decode_probabilities, labels_rule
from .linking import (
           DEFAULT_LINK_OVERLAP,
           MAX_SPLIT_SOLIDITY,
           MIN_SPLIT_SHARE,
           overlap_links,
           overlap_pairs,
           split_merged,
)
from .options import DEFAULT_MARKER_THRESHOLD, METHOD_CHOICES, InstanceOptions, model_instances
from .slices import (
           DEFAULT_MIN_DISTANCE,
           DEFAULT_SMOOTHING,
           MARKER,
           components_slice,
           marker_slice,
           watershed_slice,
)
from .stack import METHODS, instance_labels, slice_groups
from .zsplit import DEFAULT_Z_SPLIT, MIN_PART_SLICES, z_cuts

__all__ = [
           "DEFAULT_LINK_OVERLAP",
           "DEFAULT_MARKER_THRESHOLD",
           "DEFAULT_MIN_DISTANCE",
           "DEFAULT_SMOOTHING",
           "DEFAULT_Z_SPLIT",
           "MARKER",
           "MAX_SPLIT_SOLIDITY",
           "METHODS",
           "METHOD_CHOICES",
           "MIN_PART_SLICES",
           "MIN_SPLIT_SHARE",
           "InstanceOptions",
           "components_slice",
           "decode_probabilities",
           "instance_labels",
           "labels_rule",
           "marker_slice",
           "model_instances",
           "overlap_links",
           "overlap_pairs",
           "slice_groups",
           "split_merged",
           "watershed_slice",
           "z_cuts",
]
