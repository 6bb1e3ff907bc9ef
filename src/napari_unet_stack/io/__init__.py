"""Reading and writing image stacks: TIFF (ImageJ, OME, BigTIFF), zarr / OME-Zarr and .npy;
reading PNG, JPEG and BMP pictures too.

Reading is lazy where the format allows it: uncompressed contiguous TIFF and ``.npy`` are
memory-mapped, compressed or tiled TIFF is read page by page through tifffile's zarr
store, zarr is read chunk by chunk. Whatever the format, `read_image` returns an
`ImageData`: the array (indexable slice by slice, what the inference engine needs), its
axes (``"ZYX"``, ``"TCZYX"``, ...; letters from ``TCZYX``) and the pixel sizes and units
the file carries (OME-XML, ImageJ metadata, OME-Zarr ``multiscales``); ``axes=`` overrides
the file's axes. PNG, JPEG and BMP pictures are read whole through imageio (axes ``YX``, or
``YXC`` for RGB(A)) and are never written.

Writing (`write_image`, `create_image`) picks the format from the extension:

=======================  ==================================================================
``.tif``, ``.tiff``      ImageJ hyperstack when ImageJ can hold it (uint8, uint16 or
                         float32, axes in TZCYX order, under 4 GB); OME-TIFF otherwise
``.ome.tif(f)``          OME-TIFF (any dtype; BigTIFF above 4 GB)
``.zarr``                a plain zarr array (zarr format 2) with ``_ARRAY_DIMENSIONS`` and
                         the pixel sizes in its attributes
``.ome.zarr``            OME-Zarr (NGFF 0.4): a group with one full-resolution array ``0``
``.npy``                 NumPy (no axes or pixel sizes)
=======================  ==================================================================

Every output is written under a temporary name in the destination's folder and renamed
into place when complete, so a failed or interrupted run never leaves a partial file or
zarr folder (an existing output is replaced only by a complete new one).
`create_image` hands out an on-disk zarr array to write into slice by slice (TIFF and
``.npy`` are converted from it at the end, one page at a time), so results larger than
memory can be written.

Pixel sizes are ``{axis letter: size}`` and units ``{axis letter: unit}`` with units in
the OME-Zarr (UDUNITS) spelling: ``"micrometer"``, ``"nanometer"``, ``"second"``, ...

The modules: `formats` (extensions, `kind_of`, `is_zarr_dir`), `axes` (letters and units),
`find` (`find_images`), `image` (`ImageData`), `read` (`read_image`), `tiff_read`,
`tiff_write`, `zarr_read`, `zarr_chunks` (damaged chunks named), `zarr_write`, `npy`,
`pictures`, `atomic` (temporary names, replacing),
`write` (`create_image`, `write_image`, `scratch_array`, `disk_array`), `lazy` (`as_dask`).
None imports napari or Qt.
"""

from __future__ import annotations

from .axes import canonical_unit, check_axes, default_axes, normalize_axes
from .find import find_images
from .formats import IMAGE_EXTENSIONS, extension_of, is_zarr_dir, kind_of, output_format, stem_of
from .image import ImageData
from .lazy import as_dask
from .read import read_image
from .write import create_image, disk_array, scratch_array, write_image

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageData",
    "as_dask",
    "canonical_unit",
    "check_axes",
    "create_image",
    "default_axes",
    "disk_array",
    "extension_of",
    "find_images",
    "is_zarr_dir",
    "kind_of",
    "normalize_axes",
    "output_format",
    "read_image",
    "scratch_array",
    "stem_of",
    "write_image",
]

