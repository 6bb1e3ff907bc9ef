"""``unet-stack export-bioimageio``: a model as a bioimage.io model package (zip)."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export-bioimageio",
        help="write a model as a bioimage.io model package (.zip; needs the [bioimageio] extra)",
        description="Write MODEL (a bundled name or a checkpoint file) as a bioimage.io model package: "
        "torchscript and pytorch_state_dict weights, test tensors, cover and README, validated by "
        "bioimageio.spec. Needs `pip install \"napari-unet-stack[bioimageio]\"`.",
    )
    p.add_argument("model", metavar="MODEL", help="bundled model name or checkpoint file")
    p.add_argument("-o", "--output", required=True, metavar="PACKAGE.zip", help="package to write")
    p.add_argument("--name", default=None, help="the package's name (default: architecture and classes)")
    p.add_argument("--description", default=None, help="one-paragraph description")
    p.add_argument("--author", dest="authors", action="append", default=None, metavar="NAME",
                   help="an author (repeat for several; default: your login name)")
    p.add_argument("--license", default="CC-BY-4.0", help="SPDX license of the weights (default CC-BY-4.0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--trust", action="store_true",
                   help="allow checkpoints that need full unpickling (trusted files only)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..bioimageio.export import export_bioimageio
    from .common import load_cli_model

    output = Path(args.output)
    if output.suffix.lower() != ".zip":
        raise ValueError(f"the output {str(output)!r} must be a .zip file")
    model = load_cli_model(args.model, args.trust)
    try:
        path = export_bioimageio(model, output, name=args.name, description=args.description,
                                 authors=args.authors, license=args.license, overwrite=args.overwrite)
    except ImportError as err:  # the [bioimageio] extra is missing: one line, like other user errors
        print(f"unet-stack export-bioimageio: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
