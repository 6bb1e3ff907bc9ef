"""Seeded synthetic fluorescence images of cell nuclei, with exact ground truth.

The generator imitates what a widefield or confocal nuclear stain (DAPI, Hoechst) looks
like, so that models trained on it meet the difficulties of real data:

- nuclei of varying size and brightness, some elongated, some touching (split along
  the line where their normalized distances meet, like the daughters of a division);
- chromatin texture inside the nuclei and a dimmer rim;
- blur (a Gaussian point-spread function, anisotropic in z for stacks) and
  out-of-focus haze;
- an uneven background (a tilted plane plus smooth blotches);
- intensity changes between slices (bleaching, lamp flicker, background drift);
- Poisson shot noise, camera offset and Gaussian read noise, stored as ``uint16``.

Stacks are sections through 3D ellipsoids, so one nucleus keeps its instance id from
slice to slice. Everything is drawn from ``numpy.random.default_rng(seed)``: the same
seed and arguments give the same arrays.

Layout: `generators` (the public functions), `simulate` (the imaging model), `placement`
(where the nuclei go), `render` (drawing them), `noise` (smooth random fields, haze).

The **varied** generator (`varied_nuclei`, `varied_set`; the bundled models' training
data) draws a new scene for every image from the ranges of `VariedParams`: nuclei sizes
(pixel sizes), density, clumps, touching pairs, elongated and irregular outlines, dim and
bright nuclei in one field, hollow-looking and textured interiors with nucleoli,
out-of-focus nuclei, blur, uneven illumination and background, noise level, and 8-, 12-
or 16-bit cameras. Layout: `varied` (the public functions and imaging model), `scene`
(the knobs), `varied_placement` (clumps, per-nucleus looks), `varied_render` (outlines and
interiors).

Examples
--------
>>> from napari_unet_stack.synthetic import nuclei_stack
>>> sample = nuclei_stack((4, 64, 64), seed=1)
>>> sample.image.shape, sample.image.dtype, sample.labels.dtype
((4, 64, 64), dtype('uint16'), dtype('uint8'))
>>> bool(((sample.instances > 0) == (sample.labels == 1)).all())
True
"""

from .generators import (
    GENERATOR_VERSION,
    LARGE_IMAGE_SEED,
    LARGE_IMAGE_SHAPE,
    large_image,
    nuclei_image,
    nuclei_stack,
)
from .scene import Scene, VariedParams
from .simulate import NucleiParams, SyntheticNuclei
from .varied import VARIED_VERSION, VariedNuclei, varied_nuclei, varied_set

__all__ = [
    "GENERATOR_VERSION",
    "LARGE_IMAGE_SEED",
    "LARGE_IMAGE_SHAPE",
    "VARIED_VERSION",
    "NucleiParams",
    "Scene",
    "SyntheticNuclei",
    "VariedNuclei",
    "VariedParams",
    "large_image",
    "nuclei_image",
    "nuclei_stack",
    "varied_nuclei",
    "varied_set",
]
