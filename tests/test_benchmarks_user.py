"""benchmarks/bench_user.py: its float32 NCHW baseline really holds the engine to NCHW, and
its rows say PASS only on the right side of their thresholds."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from napari_unet_stack import devices
from napari_unet_stack.inference import plan

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_user.py"


def _head_and_worktrees(root: Path) -> tuple[str, str]:
    """This checkout's HEAD commit and its `git worktree list` (skips outside a git clone)."""
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode:
        pytest.skip("not a git clone")
    listed = subprocess.run(["git", "-C", str(root), "worktree", "list"], capture_output=True, text=True).stdout
    return head.stdout.strip(), listed


@pytest.fixture
def bench(load_benchmark):
    return load_benchmark("bench_user")


def test_the_nchw_baseline_turns_channels_last_off_and_back_on(bench):
    cpu = torch.device("cpu")
    before = plan.channels_last_for(cpu)
    with bench.nchw_engine():
        assert plan.channels_last_for(cpu) is False
        assert devices.channels_last_for is not plan.channels_last_for
    assert plan.channels_last_for is devices.channels_last_for
    assert plan.channels_last_for(cpu) == before


def test_rows_pass_only_within_their_thresholds(bench):
    def fmt(r, lo, hi):
        return f"{r:.2f}"

    def res(unpadded, speedup, train, head):
        return {
            "f": {"unpadded": {"unpadded": (unpadded,) * 3, "padded": (1.0,) * 3},
                  "demo": {"speedup": (1.0,) * 3, "reach": False,
                           "mpix": {"demo today": 1.0, "baseline": 0.2}},
                  "old": {"speedup": (speedup,) * 3, "commit": "3d6313f" + "0" * 33,
                          "mpix": {"demo today": 1.0, "old demo": 0.2}}},
            "g": {"ratio": (train,) * 3, "precision": "bfloat16", "batch": 8, "patch": 128},
            "h": {"ratio": (head,) * 3, "fast_head": 2},
        }  # fmt: skip

    def verdicts(rows):
        return [row[3] for row in rows if row[3] != "-"]

    assert verdicts(bench.summary_rows(res(0.5, 5.0, 0.8, 0.2), fmt)) == ["PASS"] * 4
    assert verdicts(bench.summary_rows(res(0.51, 4.9, 0.81, 1.0), fmt)) == ["NO"] * 4


def test_the_old_commit_row_carries_the_demo_verdict_and_the_in_process_row_stands_in(bench):
    def fmt(r, lo, hi):
        return f"{r:.2f}"

    demo = {"speedup": (6.0,) * 3, "reach": True, "mpix": {"demo today": 3.0, "baseline": 0.5, "batch 1": 2.7},
            "batch_rule": (0.9,) * 3, "auto_batch": 2,
            "shape": (16, 256, 256), "baseline_options": {"precision": "float32", "border": "reach"}}
    old = {"speedup": (4.0,) * 3, "commit": bench.bench_demo.OLD_DEMO_COMMIT, "repeats": 7, "job_mpix": 1.0,
           "mpix": {"demo today": 3.0, "old demo": 0.75},
           "meta": {k: {"shape": [16, 256, 256], "dtype": "uint16", "model": "UNet", "keep_freed_memory": True}
                    for k in ("old demo", "demo today")}}  # fmt: skip
    rows = bench.summary_rows({"f": {"unpadded": {"unpadded": (0.4,) * 3, "padded": (1.0,) * 3}, "demo": demo,
                                     "old": old}}, fmt)  # fmt: skip
    demo_rows = [r for r in rows if "demo job" in r[0]]
    assert [r[3] for r in demo_rows] == ["NO", "-", "-"]  # 4x the old commit fails, whatever the in-process 6x
    assert "default batch (2 windows" in demo_rows[2][0] and "/ batch_size=1" in demo_rows[2][0]
    assert demo_rows[2][1] == "0.90" and demo_rows[2][2] == "(information)"
    assert "3d6313f" in demo_rows[0][0] and "3.00 vs 0.75 MPix/s" in demo_rows[0][1]
    skipped = {"skipped": "git is not installed", "commit": old["commit"]}
    rows = bench.summary_rows({"f": {"unpadded": {"unpadded": (0.4,) * 3, "padded": (1.0,) * 3}, "demo": demo,
                                     "old": skipped}}, fmt)  # fmt: skip
    assert [r[3] for r in rows if "demo job" in r[0]] == ["-", "PASS", "-"]
    assert any("skipped (git is not installed)" in r[0] for r in rows)
    texts = ["\n".join(bench.markdown({"f": {"unpadded": {"unpadded": (0.4,) * 3, "padded": (1.0,) * 3,
                                                        "shape": (4, 512, 512), "model": "UNet", "times": {}},
                                           "demo": demo, "old": case}}, fmt)) for case in (old, skipped)]  # fmt: skip
    assert "this row carries the verdict" in texts[0] and "old 16 x 256 x 256 uint16" in texts[0]
    assert "(2 windows per forward" in texts[0] and "took **0.90** of the time of the same job with `batch_size=1`" in texts[0]
    assert "not available" not in texts[0]
    assert "skipped, git is not installed" in texts[1] and "(the verdict, as the old commit was not available)" in texts[1]


def test_alternate_reverses_the_order_every_other_repeat(bench):
    order = []
    times = bench.bench_demo.alternate({"A": lambda: order.append("A") or 1.0,
                                        "B": lambda: order.append("B") or 2.0}, 4)  # fmt: skip
    assert order == list("ABBAABBA") and times == {"A": [1.0] * 4, "B": [2.0] * 4}
    assert bench.bench_demo.paired([2.0, 6.0, 3.0], [1.0, 2.0, 3.0]) == (2.0, 1.0, 3.0)


def test_the_old_commit_row_is_skipped_with_a_note_outside_a_git_clone(bench, tmp_path):
    (tmp_path / "src" / "napari_unet_stack").mkdir(parents=True)
    problem = bench.bench_demo.old_checkout_problem(tmp_path)
    if shutil.which("git") is None:
        assert problem == "git is not installed"
    else:
        assert problem is not None and "3d6313f" in problem and "sdist" in problem
    assert "not a source checkout" in bench.bench_demo.old_checkout_problem(tmp_path / "nowhere")
    res = bench.bench_demo.old_demo(1, 1, root=tmp_path)
    assert res["skipped"] == problem


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_old_commit_row_runs_both_children_and_removes_its_worktree(bench, tmp_path):
    """The row's machinery on this checkout's own HEAD (so any clone has the commit): both
    children report their jobs, and the temporary worktree is gone afterwards."""
    root = PATH.parents[1]
    head, before = _head_and_worktrees(root)
    res = bench.bench_demo.old_demo(1, 2, root=root, commit=head)
    assert _head_and_worktrees(root)[1] == before
    meta = res["meta"]
    assert meta["old demo"]["package"].startswith("/") and "unet-stack-old-demo-" in meta["old demo"]["package"]
    assert meta["demo today"]["package"] == str(root / "src" / "napari_unet_stack")
    assert meta["old demo"]["shape"] == meta["demo today"]["shape"] == [1, 256, 256]
    assert len(res["speedup"]) == 3 and res["mpix"]["old demo"] > 0 and res["job_mpix"] > 0


def test_a_child_that_dies_skips_the_row_with_a_note_and_leaves_no_worktree(bench, tmp_path, monkeypatch):
    """A commit whose code cannot run the job (here: a child that exits at once) is a
    skipped row naming the failure, not a crashed benchmark, and its worktree is removed."""
    if shutil.which("git") is None:
        pytest.skip("needs git")
    root = PATH.parents[1]
    head, before = _head_and_worktrees(root)
    monkeypatch.setattr(bench.bench_demo.sys, "executable", "false")  # the child exits 1 without a word
    res = bench.bench_demo.old_demo(1, 1, root=root, commit=head)
    assert "a benchmark child failed (the benchmark child exited with code 1" in res["skipped"]
    assert _head_and_worktrees(root)[1] == before
