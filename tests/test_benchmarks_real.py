"""benchmarks/bench_real.py: without the registry it writes nothing and exits 0; it scores
only the exact files its figures are for; its scores are the metrics module's."""

from __future__ import annotations

import io
import subprocess
import zipfile

import numpy as np
import pytest


@pytest.fixture
def bench(load_benchmark):
    return load_benchmark("bench_real")


def test_without_the_registry_nothing_is_written(bench, tmp_path, monkeypatch, capsys):
    def offline(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for stardist==0.9.2")

    monkeypatch.setattr(bench.subprocess, "run", offline)
    out = tmp_path / "real.md"
    assert bench.main(["--cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    assert not out.exists()
    assert "registry unreachable" in capsys.readouterr().out


def test_a_wheel_whose_image_differs_is_refused(bench, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((8, 8), np.uint16))
    wheel = tmp_path / "stardist-0.9.2-cp311-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, _ in bench.FILES.values():
            zf.writestr(name, buf.getvalue())
    with pytest.raises(ValueError, match="SHA-256"):
        bench.read_pair(wheel)


def test_scores_count_a_merged_pair_as_one_miss_and_one_false_object(bench):
    truth = np.zeros((20, 30), np.int32)
    truth[5:15, 2:12] = 1
    truth[5:15, 14:24] = 2
    merged = (truth > 0).astype(np.int32)
    merged[5:15, 12:14] = 1  # the gap filled: one object over both
    r = bench.score(merged, truth)
    assert r["objects"] == 1 and r["f1"] == 0.0  # IoU 0.45 with either: no match at 0.5
    r = bench.score(truth, truth)
    assert r["f1"] == 1.0 and r["dice"] == 1.0 and r["objects"] == 2
