"""bioimage.io model packages, both ways (the BioImage Model Zoo's format 0.5).

- `export`: `export_bioimageio` writes a package (zip) of any of our models, validated
  and packed by ``bioimageio.spec`` (the ``[bioimageio]`` extra, imported only there);
- `importing`: what `napari_unet_stack.checkpoints.load_model` uses to read a package
  (zip, unpacked folder's ``rdf.yaml``), with pyyaml only: TorchScript weights, or
  ``pytorch_state_dict`` weights of an architecture we know;
- `rdf`: the description as plain data, and the one table translating our normalization
  and activation to bioimage.io pre- and postprocessing and back;
- `pictures`, `readme`: the test image, the cover and the README of a package.

Names load on first use, so that importing this package imports neither torch's tracer
nor bioimageio.
"""

from __future__ import annotations

from .._lazy import lazy_getattr

__all__ = ["INSTALL_HINT", "UnsupportedPackageError", "export_bioimageio", "is_bioimageio"]

_LAZY = {
    "INSTALL_HINT": "export",
    "export_bioimageio": "export",
    "UnsupportedPackageError": "rdf",
    "is_bioimageio": "importing",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
