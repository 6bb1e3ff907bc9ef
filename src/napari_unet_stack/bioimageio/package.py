"""Reading a bioimage.io package's files: a zip, or a folder's ``rdf.yaml`` (pyyaml only).

The description is parsed with ``yaml.safe_load`` (at most `MAX_RDF_BYTES`); its files
are read from inside the package only: URLs, absolute paths and paths leaving the
package are refused (nothing is downloaded), and so are members larger than
`MAX_MEMBER_BYTES` (a zip that claims more than it should).
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from ..checkpoints.errors import cannot_load

__all__ = ["MAX_MEMBER_BYTES", "MAX_RDF_BYTES", "RDF_NAMES", "Package", "is_bioimageio"]

#: the names a package's description may have (bioimage.io's own and the older one)
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
MAX_RDF_BYTES = 1 << 20
#: 4 GiB of float32 weights, the most a checkpoint may claim, plus room for the rest
MAX_MEMBER_BYTES = 5 << 30


def _rdf_member(names: list[str]) -> str | None:
    top = [n for n in names if "/" not in n.rstrip("/")]
    for name in RDF_NAMES:
        if name in top:
            return name
    return next((n for n in top if n.endswith(".bioimageio.yaml")), None)


def is_bioimageio(path: Path) -> bool:
    """Whether ``path`` looks like a bioimage.io package: a ``.yaml``/``.yml`` file, or a zip
    with an ``rdf.yaml`` (``bioimageio.yaml``, ``*.bioimageio.yaml``) at its top."""
    if path.suffix.lower() in (".yaml", ".yml"):
        return True
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return _rdf_member(archive.namelist()) is not None
    except (zipfile.BadZipFile, OSError):
        return False


class Package:
    """The files of one package (``path``: a zip or a description file in its folder)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        if path.suffix.lower() in (".yaml", ".yml"):
            self.root, self.rdf_name = path.parent, path.name
        else:
            try:
                self._zip = zipfile.ZipFile(path)
                names = self._zip.namelist()
            except (zipfile.BadZipFile, OSError) as err:
                raise cannot_load(path, f"a damaged zip ({err})") from err
            member = _rdf_member(names)
            if member is None:
                raise cannot_load(path, "a zip without an rdf.yaml: not a bioimage.io package")
            self.root, self.rdf_name = None, member
        self.rdf = self._description()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> Package:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _description(self) -> dict[str, Any]:
        text = self.read(self.rdf_name, MAX_RDF_BYTES)
        try:
            rdf = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise cannot_load(self.path, f"its {self.rdf_name} is not valid YAML ({err})") from err
        if not isinstance(rdf, dict):
            raise cannot_load(self.path, f"its {self.rdf_name} is not a bioimage.io description")
        return rdf

    def _member(self, source: Any) -> str:
        """The package-relative path of a file ``source`` (str or ``{"source": ...}``)."""
        if isinstance(source, dict):
            source = source.get("source")
        if not isinstance(source, str) or not source:
            raise cannot_load(self.path, f"a file entry {source!r} of its description names no file")
        if "://" in source:
            raise cannot_load(self.path, f"it refers to the remote file {source!r}: download the package "
                                         f"with its files first (nothing is downloaded here)")
        parts = PurePosixPath(source.replace("\\", "/"))
        if parts.is_absolute() or ".." in parts.parts:
            raise cannot_load(self.path, f"its file {source!r} lies outside the package")
        return str(parts)

    def read(self, source: Any, limit: int = MAX_MEMBER_BYTES) -> bytes:
        """The bytes of a package file (at most ``limit``)."""
        name = self._member(source)
        try:
            if self._zip is not None:
                info = self._zip.getinfo(name)
                if info.file_size > limit:
                    raise cannot_load(self.path, f"its {name} claims {info.file_size} bytes, more than {limit}")
                with self._zip.open(info) as f:
                    data = f.read(limit + 1)
            else:
                with open(self.root / name, "rb") as f:
                    data = f.read(limit + 1)
        except (KeyError, FileNotFoundError) as err:
            raise cannot_load(self.path, f"its description names {name}, which the package lacks") from err
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            if isinstance(err, PermissionError):
                raise
            raise cannot_load(self.path, f"its {name} cannot be read ({err})") from err
        if len(data) > limit:
            raise cannot_load(self.path, f"its {name} is larger than {limit} bytes")
        return data

    def extract(self, source: Any, folder: Path) -> Path:
        """A package file as a real file (copied into ``folder`` for a zip)."""
        name = self._member(source)
        target = folder / PurePosixPath(name).name
        if self._zip is None:
            if not (self.root / name).is_file():
                raise cannot_load(self.path, f"its description names {name}, which the package lacks")
            return self.root / name
        try:
            info = self._zip.getinfo(name)
        except KeyError as err:
            raise cannot_load(self.path, f"its description names {name}, which the package lacks") from err
        if info.file_size > MAX_MEMBER_BYTES:
            raise cannot_load(self.path, f"its {name} claims {info.file_size} bytes, more than {MAX_MEMBER_BYTES}")
        try:
            with self._zip.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (zipfile.BadZipFile, EOFError, OSError) as err:
            if isinstance(err, PermissionError):
                raise
            raise cannot_load(self.path, f"its {name} cannot be read ({err})") from err
        return target
