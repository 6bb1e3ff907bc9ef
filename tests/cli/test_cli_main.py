"""The `unet-stack` entry point: the package's public names, the subcommands, one ``-q``."""

import subprocess
import sys
from pathlib import Path

import pytest

from napari_unet_stack import cli

ROOT = Path(__file__).resolve().parents[2]


def test_public_names():
    assert sorted(cli.__all__) == ["DEFAULT_MODEL", "USER_ERRORS", "build_parser", "main"]
    assert 'unet-stack = "napari_unet_stack.cli:main"' in (ROOT / "pyproject.toml").read_text()


def test_subcommands_in_order(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "{info,predict,models,demo,train,export-bioimageio}" in out


@pytest.mark.parametrize("command", ["predict", "demo", "train"])
def test_every_subcommand_with_progress_takes_quiet(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    assert "-q, --quiet" in capsys.readouterr().out


def test_no_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2 and "usage: unet-stack" in capsys.readouterr().err


@pytest.mark.slow
def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "napari_unet_stack.cli", "info"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0 and result.stdout.startswith("napari-unet-stack "), result.stderr
