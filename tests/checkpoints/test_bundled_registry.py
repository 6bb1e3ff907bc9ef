"""The bundled model registry: list_models, and load_model by name."""

from __future__ import annotations

from napari_unet_stack.checkpoints import list_models, load_model, registry, save_model
from napari_unet_stack.models import UNet


# -- bundled models ----------------------------------------------------------------------------
def test_bundled_models(tmp_path, monkeypatch):
    assert list_models() == sorted(list_models())
    folder = tmp_path / "bundled_models"
    monkeypatch.setattr(registry, "bundled_dir", lambda: folder)
    assert list_models() == []
    folder.mkdir()
    save_model(
        UNet(1, 2, base_channels=4, depth=2), folder / "tiny_unet.pt", class_names=["bg", "fg"]
    )
    save_model(UNet(1, 2, base_channels=4, depth=2), folder / "another.pt")
    (folder / "README.txt").write_text("not a model")
    assert list_models() == ["another", "tiny_unet"]
    assert load_model("tiny_unet").class_names == ["bg", "fg"]
