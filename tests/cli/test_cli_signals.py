"""Termination signals to a running `unet-stack predict` (issue 11, item 12): SIGTERM and
SIGHUP, like Ctrl-C, stop the run with exit code 128 + N and leave no output and no
temporary file (``.out.tif.scratch-*``, ``.out.zarr.tmp-*``, ``.out.npy.scratch-*``)."""

import os
import signal
import time

import pytest

from napari_unet_stack import cli
from napari_unet_stack.cli import signals

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "name"), [
    (getattr(signal, "SIGTERM", 15), "labels.tif"),
    (getattr(signal, "SIGHUP", 1), "labels.zarr"),
    (getattr(signal, "SIGTERM", 15), "labels.npy"),
])
def test_termination_signal_leaves_no_partial_output(signal_predict, signum, name):
    code, err, out_dir = signal_predict(name, signum, settle=0.2)
    assert code == 128 + signum, err
    assert f"terminated by {signal.Signals(signum).name}" in err and "Traceback" not in err, err
    assert os.listdir(out_dir) == []


def test_main_turns_a_signal_into_cleanup_and_exit_code(capsys, monkeypatch):
    """In process: the handler raises through the running command (so its ``finally`` and
    ``except BaseException`` cleanups run) and main answers 128 + N; handlers are restored."""
    before = signal.getsignal(signal.SIGTERM)
    cleaned = []

    def command(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
        finally:
            cleaned.append(True)
        return 0

    parser = cli.build_parser()
    args = parser.parse_args(["info"])
    args.func = command
    monkeypatch.setattr(cli, "build_parser", lambda: type("P", (), {"parse_args": lambda self, a: args})())
    assert cli.main([]) == 128 + signal.SIGTERM
    assert cleaned == [True]
    assert "unet-stack: terminated by SIGTERM" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before


def test_ignored_signals_stay_ignored():
    """`nohup` ignores SIGHUP: the run must keep ignoring it rather than stop."""
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with signals.terminate_on_signals():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)
