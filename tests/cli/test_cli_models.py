"""`unet-stack models` and `unet-stack info`."""

from napari_unet_stack import __version__


def test_models_lists_bundled_models(run, monkeypatch, checkpoint):
    from napari_unet_stack import checkpoints

    real = checkpoints.list_models()
    code, out, _ = run("models")
    assert code == 0
    for name in real:
        assert name in out
    if not real:
        assert "no bundled models" in out
    load = checkpoints.load_model
    monkeypatch.setattr(checkpoints, "list_models", lambda: ["tiny-unet"])
    monkeypatch.setattr(checkpoints, "load_model", lambda name, **kw: load(checkpoint))
    code, out, _ = run("models")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 1
    assert lines[0].startswith("tiny-unet") and "UNet(" in lines[0] and "1 in, 2 out" in lines[0]


def test_models_with_none_installed(run, monkeypatch):
    from napari_unet_stack import checkpoints

    monkeypatch.setattr(checkpoints, "list_models", lambda: [])
    code, out, _ = run("models")
    assert code == 0 and "no bundled models are installed" in out


def test_info(run):
    code, out, _ = run("info")
    lines = out.splitlines()
    assert code == 0 and lines[0] == f"napari-unet-stack {__version__}"
    assert lines[1].startswith("python ") and "torch" in lines[1]
    assert lines[-1].startswith("device cpu: ")
