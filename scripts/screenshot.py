"""Render the README screenshot: the viewer with the Predict widget and its result on the sample.

    bash scripts/with_display.sh .venv/bin/python scripts/screenshot.py [--out docs/screenshot.png]
    bash scripts/with_display.sh .venv/bin/python scripts/screenshot.py --instances --out docs/instances.png

Uses the bundled ``nuclei-unet`` model (or, before it ships, a small UNet trained here for a
few minutes on ``nuclei_train``). The PNG is downscaled and palette-quantized to stay small.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _model(source: str | None):
    from napari_unet_stack.checkpoints import list_models

    if source is not None:
        return source
    if "nuclei-unet" in list_models():
        return "nuclei-unet"
    from napari_unet_stack.models import UNet
    from napari_unet_stack.samples import load_sample
    from napari_unet_stack.training import train

    print("nuclei-unet is not bundled yet: training a small UNet for the screenshot")
    sample = load_sample("nuclei_train")
    model, _history = train(sample.image, sample.labels, UNet(1, 2, base_channels=8, depth=3), steps=80,
                            batch_size=4, patch_size=96, device="cpu")
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    parser.add_argument("--model", help="bundled model name or checkpoint (default: nuclei-unet)")
    parser.add_argument("--width", type=int, default=1100, help="width of the PNG in pixels")
    parser.add_argument("--instances", action="store_true",
                        help="show the instance labels (the model's own decoding) instead of the semantic labels")
    args = parser.parse_args(argv)

    import numpy as np
    from PIL import Image as PILImage
    from qtpy.QtWidgets import QApplication

    import napari

    viewer = napari.Viewer(show=True, title="napari-unet-stack")
    viewer.window.resize(1500, 900)
    viewer.open_sample("napari-unet-stack", "nuclei_stack")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-unet-stack", "Predict")
    widget.image.value = viewer.layers["nuclei_stack"]
    widget.set_model(_model(args.model))
    widget.instances.value = args.instances
    widget.run(wait=True)
    print(widget.status.value, "|", widget.device_used.value, "|", widget.decoding.options())

    shown = "nuclei_stack instances" if args.instances else "nuclei_stack labels"
    viewer.layers["nuclei_stack labels"].visible = not args.instances
    viewer.layers[shown].opacity = 0.6
    viewer.dims.set_current_step(0, 8)
    for _ in range(10):
        QApplication.processEvents()
    viewer.reset_view()
    viewer.layers.selection.active = viewer.layers[shown]
    widget.collapsible.expand(animate=False)
    for _ in range(20):
        QApplication.processEvents()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    image = PILImage.fromarray(np.asarray(shot)[..., :3])
    height = round(image.height * args.width / image.width)
    image = image.resize((args.width, height), PILImage.LANCZOS).quantize(colors=128, dither=PILImage.Dither.NONE)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB, {image.width} x {image.height})")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
