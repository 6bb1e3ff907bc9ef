"""Shared helpers of the io tests: a deterministic stack and the hidden files a write left."""

import os

import numpy as np
import pytest


@pytest.fixture
def make_stack():
    """``make_stack(dtype, shape=(3, 40, 56))``: distinct, non-zero-heavy values (mod 251)."""

    def make(dtype, shape=(3, 40, 56)):
        values = np.arange(np.prod(shape)).reshape(shape) % 251
        return values.astype(dtype)

    return make


@pytest.fixture
def leftovers():
    """``leftovers(folder)``: the hidden (temporary) names left in ``folder``, sorted."""

    def hidden(folder):
        return sorted(p for p in os.listdir(folder) if p.startswith("."))

    return hidden
