"""The exported package's README says at which threshold napari-unet-stack makes labels of
its probabilities: the model's own (``meta["threshold"]``), which consumers that read no
``config`` (deepImageJ, bioimageio.core) cannot know otherwise; else 0.5."""

from napari_unet_stack.bioimageio.export import FILES
from napari_unet_stack.bioimageio.readme import readme_text
from napari_unet_stack.models import UNet

FIELDS = {"name": "m", "description": "a test model"}


def test_the_readme_names_the_models_own_threshold():
    model = UNet(1, 3, base_channels=4, depth=2)
    model.meta["threshold"] = 0.65
    text = readme_text(model, FIELDS, FILES)
    assert "foreground where P(foreground) > 0.65, P(foreground) being 1 - P(`background`)" in text
    assert "the model's own threshold" in text
    del model.meta["threshold"]
    text = readme_text(model, FIELDS, FILES)
    assert "P(foreground) > 0.5," in text and "records no threshold of its own" in text
    sigmoid = UNet(1, 1, base_channels=4, depth=2)
    assert "P(foreground) > 0.5, P(foreground) being the channel's probability" in readme_text(sigmoid, FIELDS, FILES)
