"""benchmarks/bench_user.py: its float32 NCHW baseline really holds the engine to NCHW, and
its rows say PASS only on the right side of their thresholds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from napari_unet_stack import devices
from napari_unet_stack.inference import plan

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_user.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_user", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_nchw_baseline_turns_channels_last_off_and_back_on():
    bench = _module()
    cpu = torch.device("cpu")
    before = plan.channels_last_for(cpu)
    with bench.nchw_engine():
        assert plan.channels_last_for(cpu) is False
        assert devices.channels_last_for is not plan.channels_last_for
    assert plan.channels_last_for is devices.channels_last_for
    assert plan.channels_last_for(cpu) == before


def test_rows_pass_only_within_their_thresholds():
    bench = _module()

    def fmt(r, lo, hi):
        return f"{r:.2f}"

    def res(unpadded, speedup, train, head):
        return {
            "f": {"unpadded": {"unpadded": (unpadded,) * 3, "padded": (1.0,) * 3},
                  "demo": {"speedup": (speedup,) * 3, "reach": False,
                           "mpix": {"demo today": 1.0, "baseline": 0.2}}},
            "g": {"ratio": (train,) * 3, "precision": "bfloat16", "batch": 8, "patch": 128},
            "h": {"ratio": (head,) * 3, "fast_head": 2},
        }  # fmt: skip

    def verdicts(rows):
        return [row[3] for row in rows if row[3] != "-"]

    assert verdicts(bench.summary_rows(res(0.5, 5.0, 0.8, 0.2), fmt)) == ["PASS"] * 4
    assert verdicts(bench.summary_rows(res(0.51, 4.9, 0.81, 1.0), fmt)) == ["NO"] * 4
