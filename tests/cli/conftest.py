"""Shared fixtures of the `unet-stack` tests: a small stack, a tiny balanced model and its
checkpoint, input files of three formats, and ``main([...])`` with its captured output."""

import numpy as np
import pytest
import torch

from napari_unet_stack import cli, io, predict
from napari_unet_stack.checkpoints import save_model
from napari_unet_stack.models import UNet

SCALE = {"Z": 2.0, "Y": 0.5, "X": 0.5}
UNITS = {"Z": "um", "Y": "um", "X": "um"}


def balance(model, image, fraction=0.25, **kwargs):
    """Shift the head's bias so that ``fraction`` of the pixels are foreground (non-trivial labels)."""
    p = predict(image, model, device="cpu", **kwargs)[1]
    t = float(np.clip(np.quantile(p, 1 - fraction), 1e-4, 1 - 1e-4))
    head = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        head.bias[1] -= float(np.log(t / (1 - t)))
    return model


@pytest.fixture(scope="session")
def scale():
    return SCALE


@pytest.fixture(scope="session")
def balanced():
    return balance


@pytest.fixture(scope="module")
def stack():
    from napari_unet_stack.synthetic import nuclei_stack

    return nuclei_stack((4, 48, 64), seed=0).image


@pytest.fixture(scope="module")
def model(stack):
    torch.manual_seed(0)
    return balance(UNet(1, 2, base_channels=4, depth=2).eval(), stack)


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    return str(save_model(model, tmp_path_factory.mktemp("ckpt") / "tiny.pt"))


@pytest.fixture
def inputs(tmp_path, stack):
    folder = tmp_path / "in"
    folder.mkdir()
    io.write_image(folder / "a.tif", stack, axes="ZYX", scale=SCALE, units=UNITS)
    io.write_image(folder / "b.ome.zarr", stack[:2], axes="ZYX", scale=SCALE, units=UNITS)
    np.save(folder / "c.npy", stack[:, :32])
    return folder


@pytest.fixture
def run(capsys):
    """``run(*argv)``: (exit code, stdout, stderr) of ``unet-stack *argv``."""
    capsys.readouterr()

    def run_cli(*argv):
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run_cli


@pytest.fixture(scope="session")
def one_line_error():
    """``one_line_error(code, err, match, command="predict")``: exit 2, one line naming it."""

    def check(code, err, match, command="predict"):
        assert code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"unet-stack {command}: error:") and match in lines[0]
        assert "Traceback" not in err

    return check


@pytest.fixture
def train_calls(monkeypatch):
    """`train` replaced by a recorder of its arguments (``images``, ``labels``, ``model`` and
    the options) that returns the model untrained (no steps run)."""
    from napari_unet_stack import training

    calls = []

    def record(images, labels, model, **kwargs):
        calls.append({"images": images, "labels": labels, "model": model, **kwargs})
        return model, {"step": []}

    monkeypatch.setattr(training, "train", record)
    return calls


@pytest.fixture
def signal_predict(tmp_path, stack, checkpoint):
    """``signal_predict(name, signum, settle=0.0)``: start a real `unet-stack predict` of a
    320-slice stack into ``out/<name>``, send ``signum`` once its temporary output exists
    (after ``settle`` more seconds), and return ``(returncode, stderr, out folder)``."""
    import os
    import subprocess
    import sys
    import time

    def run_and_signal(name, signum, settle=0.0):
        src = tmp_path / "big.npy"
        import signal

        if signal.getsignal(signum) is signal.SIG_IGN:  # e.g. under nohup, or SIGINT in a background job
            pytest.skip(f"{signal.Signals(signum).name} is ignored by this process, so by its children too")
        np.save(src, np.concatenate([stack] * 80))  # seconds of work (it stops long before)
        out_dir = tmp_path / "out"
        out_dir.mkdir()
        env = dict(os.environ, OMP_NUM_THREADS="1")
        code = "import sys; from napari_unet_stack.cli import main; sys.exit(main())"
        proc = subprocess.Popen([sys.executable, "-c", code, "predict", str(src), "-o", str(out_dir / name),
                                 "--model", checkpoint, "--device", "cpu", "-q"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            deadline = time.monotonic() + 60
            while not os.listdir(out_dir) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)  # until its temporary output exists: it is writing
            assert os.listdir(out_dir) and proc.poll() is None, "the run did not start writing"
            time.sleep(settle)
            proc.send_signal(signum)
            _out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        return proc.returncode, err, out_dir

    return run_and_signal
