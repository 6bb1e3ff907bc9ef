"""The package's shared validators (napari_unet_stack.validation)."""

import doctest

import numpy as np
import pytest

from napari_unet_stack import validation
from napari_unet_stack.validation import check_int, first_line, parse_int


def test_docstring_examples():
    result = doctest.testmod(validation)
    assert result.attempted > 0 and result.failed == 0


def test_check_int():
    assert check_int("depth", np.int64(3)) == 3 and type(check_int("depth", np.int64(3))) is int
    assert check_int("halo", 0, 0) == 0
    assert check_int("steps", None, allow_none=True) is None
    with pytest.raises(TypeError, match=r"`depth` must be an int, got bool \(True\)"):
        check_int("depth", True)
    with pytest.raises(TypeError, match=r"`steps` must be an int or None, got str \('3'\)"):
        check_int("steps", "3", allow_none=True)
    with pytest.raises(ValueError, match="`depth` must be >= 2, got 1"):
        check_int("depth", 1, 2)


def test_parse_int():
    assert parse_int("--min-size", "30", 0) == 30
    assert parse_int("--tile-size", "NONE", 1, ("auto", "none")) == "none"
    with pytest.raises(ValueError, match=r"--tile-size must be an integer or 'auto' or 'none', got 'big'"):
        parse_int("--tile-size", "big", 1, ("auto", "none"))
    with pytest.raises(ValueError, match="--batch-size must be >= 1, got 0"):
        parse_int("--batch-size", "0", 1)


def test_first_line():
    assert first_line(ValueError("  first\nsecond")) == "first"
    assert first_line(OSError()) == "OSError"
    assert first_line(KeyError("k"), with_type=True) == "KeyError: 'k'"
    assert first_line(RuntimeError("x" * 300), limit=200) == "x" * 200
    text = "Weights only load failed.\nWeightsUnpickler error: Unsupported global: GLOBAL os.system\n..."
    assert first_line(RuntimeError(text), after="WeightsUnpickler error:") == (
        "Unsupported global: GLOBAL os.system")
    assert first_line(RuntimeError("header WeightsUnpickler error:"), after="WeightsUnpickler error:",
                      with_type=True) == "RuntimeError: no details"
