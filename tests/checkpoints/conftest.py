"""The checkpoint tests' helper modules (reference_forward, synthetic_checkpoints) live
beside this file; pytest runs with --import-mode=importlib, so their folder is put on
sys.path here, once, for the test modules to import them by name."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
