"""The package's public names, and what importing it pulls in."""

import subprocess
import sys

import napari_unet_stack as nus


def test_every_public_name_resolves():
    for name in nus.__all__:
        assert getattr(nus, name) is not None, name
    assert set(nus.__all__) <= set(dir(nus))


def test_unknown_attribute_is_an_attribute_error():
    try:
        nus.no_such_thing  # noqa: B018
    except AttributeError as error:
        assert "no_such_thing" in str(error)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_core_import_leaves_out_napari_qt_and_the_trainer():
    """The core is usable headless (no napari, no Qt); training names load on first use."""
    code = (
        "import sys, napari_unet_stack as nus\n"
        "bad = [m for m in ('napari', 'qtpy', 'PyQt6', 'magicgui', 'napari_unet_stack.training') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "nus.train\n"
        "assert 'napari_unet_stack.training' in sys.modules\n"
        "assert 'napari' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
