"""Benchmark (f)'s demo rows (issue 13: "`make demo` throughput at least 5x today's on the
same machine in the same run"), used by ``bench_user.py``:

- **the demo at the commit issue 13 was filed** (`OLD_DEMO_COMMIT`): that commit checked
  out into a temporary ``git worktree``; its own ``segment(sample, model, device="cpu")``
  (what its ``unet-stack demo`` timed) runs in a child process with the worktree's ``src``
  on ``PYTHONPATH``, and today's demo job (`napari_unet_stack.cli.demo.demo_job`, in a
  process set up as the ``unet-stack`` command sets itself up) in another; the two are
  timed alternately (A B, B A, ...), each in MPix/s of its own sample (the old commit
  shipped another sample and model of the same shape). This row carries the verdict.
- **in-process baseline**: today's demo job against the same job with float32, border
  'reach' and the engine held to NCHW, in this process (the engine settings alone).

Run as a script, this file is one such child: ``bench_demo.py MODE SLICES`` prints a JSON
line describing its job, then times the job once per line read on stdin (one JSON line
each). MODE ``segment`` uses only what the old commit has.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

#: the commit where issue 13 work started (the parent of 1f93599): the issue's "today"
OLD_DEMO_COMMIT = "3d6313f63f66272cf04080a65e82e346d57a5c10"
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- timing
def alternate(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Each callable (returning the seconds of what it timed) ``repeats`` times, the order
    reversed every other repeat (A B, B A, ...)."""
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(fns[name]())
        print(f"    repeat {r + 1}/{repeats}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in names), flush=True)
    return times


def paired(num: list[float], den: list[float]) -> tuple[float, float, float]:
    """Median, min and max of the per-repeat ratios num / den."""
    ratios = [a / b for a, b in zip(num, den, strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


# ----------------------------------------------------------------------------- children
class Child:
    """A child process running `main` with ``src`` first on its import path."""

    def __init__(self, src: Path, mode: str, slices: int | None):
        env = dict(os.environ, PYTHONPATH=str(src))
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), mode, str(slices or 0)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=str(src.parent),
        )
        self.meta = self._reply()

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError(f"the benchmark child exited with code {self.proc.returncode}")
        return json.loads(line)

    def run(self) -> dict:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def old_checkout_problem(root: Path = ROOT, commit: str = OLD_DEMO_COMMIT) -> str | None:
    """Why the old commit cannot be checked out here (None: it can)."""
    git = shutil.which("git")
    if git is None:
        return "git is not installed"
    if not (root / "src" / "napari_unet_stack").is_dir():
        return f"{root} is not a source checkout of the project"
    found = subprocess.run([git, "-C", str(root), "cat-file", "-e", f"{commit}^{{commit}}"],
                           capture_output=True, check=False)
    if found.returncode:
        return f"commit {commit[:7]} is not in {root} (not a git clone of the project, e.g. an sdist or a shallow clone)"
    return None


def old_demo(slices: int | None, repeats: int, root: Path = ROOT, commit: str = OLD_DEMO_COMMIT) -> dict:
    """Today's demo job against the demo at ``commit`` (see the module docstring)."""
    problem = old_checkout_problem(root, commit)
    if problem:
        return {"skipped": problem, "commit": commit}
    git = shutil.which("git")
    tmp = Path(tempfile.mkdtemp(prefix="unet-stack-old-demo-"))
    worktree = tmp / "old"
    children: dict[str, Child] = {}
    try:
        subprocess.run([git, "-C", str(root), "worktree", "add", "--detach", "--quiet", str(worktree), commit],
                       check=True, capture_output=True)
        children["old demo"] = Child(worktree / "src", "segment", slices)
        children["demo today"] = Child(root / "src", "demo", slices)
        replies: dict[str, list[dict]] = {name: [] for name in children}

        def timed(name):
            def go():
                replies[name].append(children[name].run())
                return replies[name][-1]["seconds"]

            return go

        times = alternate({name: timed(name) for name in children}, repeats)
    except subprocess.CalledProcessError as err:  # git worktree add
        return {"skipped": f"`git worktree add` failed: {(err.stderr or b'').decode(errors='replace').strip()}",
                "commit": commit}
    except (RuntimeError, ValueError) as err:  # a child that died or printed something else
        return {"skipped": f"a benchmark child failed ({err}; its traceback is above)", "commit": commit}
    finally:
        for child in children.values():
            child.close()
        subprocess.run([git, "-C", str(root), "worktree", "remove", "--force", str(worktree)],
                       capture_output=True, check=False)
        subprocess.run([git, "-C", str(root), "worktree", "prune"], capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    meta = {name: child.meta for name, child in children.items()}
    mpix = {name: [meta[name]["mpix"] / s for s in times[name]] for name in times}
    job = [meta["demo today"]["mpix"] / r["job_seconds"] for r in replies["demo today"]]
    return {
        "commit": commit, "repeats": repeats, "meta": meta,
        "mpix": {name: statistics.median(v) for name, v in mpix.items()},
        "job_mpix": statistics.median(job),
        "speedup": paired(mpix["demo today"], mpix["old demo"]),
    }  # fmt: skip


# ----------------------------------------------------------------------------- child side
def child_main(mode: str, slices: int | None) -> None:
    """One side of `old_demo` (this file run as a script)."""
    tuned = None
    if mode == "demo":  # today's job, in a process set up as `unet-stack` sets itself up
        from napari_unet_stack.cli.common import keep_freed_memory
        from napari_unet_stack.cli.demo import demo_job

        tuned = keep_freed_memory()
    import napari_unet_stack as nus

    sample, model = nus.load_sample("nuclei_stack"), nus.load_model("nuclei-unet")
    image = sample.image[:slices]

    def job() -> tuple[float, float]:
        if mode == "demo":
            done = demo_job(image, model, device="cpu")
            return done.seconds, done.seconds + done.decode_seconds
        t0 = time.perf_counter()
        nus.segment(image, model, device="cpu")
        seconds = time.perf_counter() - t0
        return seconds, seconds

    job()  # warm-up: oneDNN primitives, the engine's inference copy, the precision check
    describe = getattr(model, "describe", None)
    print(json.dumps({
        "package": str(Path(nus.__file__).parent), "shape": list(image.shape), "dtype": str(image.dtype),
        "mpix": image.size / 1e6, "model": describe() if describe else type(model).__name__,
        "job": ("demo_job: predict once, LabelRule labels (timed), decode_probabilities instances"
                if mode == "demo" else "segment(image, model, device='cpu')"),
        "keep_freed_memory": tuned,
    }), flush=True)  # fmt: skip
    for _line in sys.stdin:
        seconds, job_seconds = job()
        print(json.dumps({"seconds": seconds, "job_seconds": job_seconds}), flush=True)


if __name__ == "__main__":
    child_main(sys.argv[1], int(sys.argv[2]) or None)
