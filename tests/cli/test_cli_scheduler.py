"""``--scheduler`` (issue 11, item 23): ports are checked, and an unreachable scheduler fails
within a short, overridable connect timeout (it took 22 s)."""

import socket
import time

import pytest

from napari_unet_stack import distributed


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("port", ["0", "65536", "99999", "0008786999"])
def test_ports_outside_1_to_65535_are_refused(port):
    with pytest.raises(ValueError, match=rf"port must be in 1\.\.65535, got {int(port)} in 'tcp://h:{port}'"):
        distributed.parse_scheduler(f"tcp://h:{port}")


def test_valid_ports_are_kept():
    assert distributed.parse_scheduler("tcp://h:1") == ("tcp", "tcp://h:1")
    assert distributed.parse_scheduler("tls://h:65535") == ("tcp", "tls://h:65535")


def test_cli_refuses_a_bad_port_before_loading_anything(run, one_line_error, tmp_path, inputs):
    code, _, err = run("predict", inputs / "a.tif", "-o", tmp_path / "l.zarr", "--model", "no-such-model",
                       "--scheduler", "tcp://127.0.0.1:99999")
    one_line_error(code, err, "port must be in 1..65535")


def test_connect_timeout_comes_from_the_argument_the_environment_or_the_default(monkeypatch):
    monkeypatch.delenv(distributed.SCHEDULER_TIMEOUT_ENV, raising=False)
    assert distributed.connect_timeout() == distributed.DEFAULT_CONNECT_TIMEOUT <= 5
    monkeypatch.setenv(distributed.SCHEDULER_TIMEOUT_ENV, "12.5")
    assert distributed.connect_timeout() == 12.5
    assert distributed.connect_timeout("2") == 2.0
    for bad in ("0", "-1", "nan", "inf", "soon"):
        with pytest.raises(ValueError, match=rf"--scheduler-timeout must be a number of seconds > 0, got '{bad}'"):
            distributed.connect_timeout(bad, "--scheduler-timeout")
    monkeypatch.setenv(distributed.SCHEDULER_TIMEOUT_ENV, "x")
    with pytest.raises(ValueError, match=rf"{distributed.SCHEDULER_TIMEOUT_ENV} must be a number"):
        distributed.connect_timeout()


@pytest.mark.slow
def test_unreachable_scheduler_fails_fast(monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.delenv(distributed.SCHEDULER_TIMEOUT_ENV, raising=False)
    address = f"tcp://127.0.0.1:{_unused_port()}"
    t0 = time.perf_counter()
    match = rf"cannot reach the dask scheduler at {address} within 3 s"
    with pytest.raises(OSError, match=match), distributed.connect(address):
        pass
    assert time.perf_counter() - t0 < 5


@pytest.mark.slow
def test_cli_with_an_unreachable_scheduler_fails_fast(run, one_line_error, tmp_path, inputs, checkpoint,
                                                      monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.delenv(distributed.SCHEDULER_TIMEOUT_ENV, raising=False)
    address = f"tcp://127.0.0.1:{_unused_port()}"
    t0 = time.perf_counter()
    code, _, err = run("predict", inputs / "a.tif", "-o", tmp_path / "l.zarr", "--model", checkpoint,
                       "--scheduler", address)
    assert time.perf_counter() - t0 < 8  # the 3 s timeout, the model and the client
    one_line_error(code, err, f"cannot reach the dask scheduler at {address} within")
    assert "--scheduler-timeout" in err
    assert list(tmp_path.glob("*l.zarr*")) == []


@pytest.mark.slow
def test_scheduler_timeout_option_is_used(run, one_line_error, tmp_path, inputs, checkpoint):
    pytest.importorskip("distributed")
    address = f"tcp://127.0.0.1:{_unused_port()}"
    t0 = time.perf_counter()
    code, _, err = run("predict", inputs / "a.tif", "-o", tmp_path / "l.zarr", "--model", checkpoint,
                       "--scheduler", address, "--scheduler-timeout", "0.5")
    assert time.perf_counter() - t0 < 3
    one_line_error(code, err, "within 0.5 s")
