"""The inference engine: a 2D network over stacks of any rank, tile by tile.

The rooms, from the door inwards:

- `api`: `predict`, `segment`, `iter_predict`, `iter_segment` (check the options, then
  dispatch numpy / zarr to the engine and dask to the chunk tasks);
- `spec`: what the engine reads off a model (`ModelSpec`);
- `layout`: what is accepted as an image, its axes and channel choice
  (`napari_unet_stack.channels`), reading one normalized slice;
- `plan`: the checked options (`Request`) and the tile plan, device and batch size
  (`RunPlan`);
- `engine`: the batch loop, progress, cancel and the out-of-memory back-off;
- `forward`, `placement`: one batch through the network, the model's device copy;
- `stitch`: tiles back into slices, slices into ``out`` (labels by `napari_unet_stack.labels`);
- `dask_tasks`, `sources`: lazy results over dask chunks, models loaded once per process.

With ``blend="crop"`` and the model's halo, tiled inference equals whole-slice inference
exactly: tile origins sit on the model's size grid and the halo covers its reach (see
`napari_unet_stack.tiling`).
"""

from .api import iter_predict, iter_segment, predict, segment
from .events import InferenceCancelled, NonFiniteOutputError, Progress
from .sources import ModelSource

__all__ = ["InferenceCancelled", "ModelSource", "NonFiniteOutputError", "Progress", "iter_predict",
           "iter_segment", "predict", "segment"]
