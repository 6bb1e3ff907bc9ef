"""Packaging: the license and its file, project URLs, no setuptools deprecation, and what the
sdist ships (issue 11, item 8)."""

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_is_an_spdx_expression_with_its_file(pyproject):
    project = pyproject["project"]
    assert project["license"] == "BSD-3-Clause"
    assert project["license-files"] == ["LICENSE"]
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))  # not with SPDX
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License")
    for clause in ("Redistributions of source code must retain the above copyright notice",
                   "Redistributions in binary form must reproduce the above copyright notice",
                   "Neither the name of the copyright holder nor the names of its",
                   'THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"'):
        assert clause in text


def test_build_requires_a_setuptools_that_knows_spdx_licenses(pyproject):
    requires = pyproject["build-system"]["requires"]
    [setuptools] = [r for r in requires if r.startswith("setuptools")]
    assert setuptools == "setuptools>=77"


def test_project_urls(pyproject):
    urls = pyproject["project"]["urls"]
    assert {"Homepage", "Source", "Issues"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())


def test_demo_output_is_ignored():
    assert "/demo_output/" in (ROOT / ".gitignore").read_text().split()


@pytest.mark.slow
def test_sdist_builds_without_deprecation_and_ships_license_and_screenshot(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp_path)!r}))"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "deprecated" not in result.stderr.lower(), result.stderr
    [sdist] = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
        pkg_info = tar.extractfile(next(n for n in tar.getnames() if n.endswith("/PKG-INFO"))).read().decode()
    assert {"LICENSE", "docs/screenshot.png", "README.md", "src/napari_unet_stack/napari.yaml"} <= names
    assert "License-Expression: BSD-3-Clause" in pkg_info
    assert "License-File: LICENSE" in pkg_info
    assert "Project-URL: Source," in pkg_info
