"""Fixtures of the engine's tests; the networks live in engine_nets.py beside this file."""

import importlib.util
from pathlib import Path

import pytest


def _load_nets():
    spec = importlib.util.spec_from_file_location("engine_nets", Path(__file__).with_name("engine_nets.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NETS = _load_nets()


@pytest.fixture(scope="session")
def nets():
    """The engine_nets module: ``nets.MODELS[name]()``, ``nets.init(model)``."""
    return NETS


@pytest.fixture(scope="module")
def stack():
    return NETS.make_stack()
