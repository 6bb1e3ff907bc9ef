"""The package's public names, and what importing it pulls in."""

import subprocess
import sys

import napari_unet_stack as nus

EXPECTED = [
    "CheckpointError",
    "InferenceCancelled",
    "LabelRule",
    "ModelSource",
    "NestedUNet",
    "Progress",
    "TrainProgress",
    "TrainSettings",
    "TrainingCancelled",
    "UNet",
    "UnsafeCheckpointError",
    "__version__",
    "dice",
    "export_bioimageio",
    "export_torchscript",
    "foreground_dice",
    "iou",
    "iter_predict",
    "iter_segment",
    "iter_train",
    "list_models",
    "load_model",
    "load_sample",
    "match_instances",
    "mean_average_precision",
    "predict",
    "save_model",
    "segment",
    "select_fast_head",
    "train",
]


def test_all_is_the_expected_list():
    assert sorted(nus.__all__) == sorted(EXPECTED)
    assert len(set(nus.__all__)) == len(nus.__all__)


def test_public_names_are_the_real_objects():
    from napari_unet_stack import inference, labels

    assert nus.ModelSource is inference.ModelSource
    assert nus.LabelRule is labels.LabelRule
    assert nus.predict is inference.predict and nus.segment is inference.segment
    assert isinstance(nus.__version__, str) and nus.__version__


def test_every_public_name_resolves():
    for name in nus.__all__:
        value = getattr(nus, name)
        assert name == "__version__" or callable(value), name
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
