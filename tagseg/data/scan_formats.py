"""The registry of extra scan formats that ``tagseg predict`` and ``tagseg strain`` read.

The built-in formats (slice store, HDF5 ``imt``, NIfTI, DICOM) are recognised in
:mod:`tagseg.data.scans`; a format of your own is one :func:`register_scan_format` call in a module
of yours, named on the command line with ``reader.formats=[<module>]`` (imported before the inputs
are searched). Its reader returns a :class:`tagseg.data.scans.Scan`, most simply built with
:func:`tagseg.data.scans.scan_from_frames`; its masks are written as NIfTI in that scan's geometry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagseg.errors import ConfigError

#: suffixes the built-in readers own (a registered format cannot take them over)
BUILT_IN_SUFFIXES = (".nii", ".nii.gz", ".h5", ".hdf5", ".mat", ".dcm", ".dicom", ".ima")
#: kinds the built-in readers use
BUILT_IN_KINDS = ("store", "h5", "nifti", "dicom", "unsupported")


@dataclass(frozen=True)
class ScanFormat:
    """One extra input format.

    Attributes:
        kind: its name (the ``kind`` column of predict's outputs), not a built-in kind.
        suffixes: file-name endings it owns, lower case with the dot (``.npz``, ``.raw.gz``).
        read: ``read(path, default_spacing_mm) -> Scan``; raises :class:`tagseg.errors.DataError`
            naming the file for a bad one.
        description: what it reads, as the phrase added to "expected ..." messages.
    """

    kind: str
    suffixes: tuple[str, ...]
    read: Callable[[Path, float], Any]
    description: str

    def stem(self, path: Path) -> str:
        """The output file stem of ``path`` (its name without the matched suffix)."""
        name = path.name
        for suffix in self.suffixes:
            if name.lower().endswith(suffix):
                return name[: -len(suffix)]
        return path.stem


SCAN_FORMATS: dict[str, ScanFormat] = {}


def register_scan_format(fmt: ScanFormat, replace: bool = False) -> ScanFormat:
    """Make ``fmt`` readable by predict and strain from now on.

    Raises:
        ConfigError: a built-in kind or suffix, a suffix without its dot, or a kind registered
            already (unless ``replace``).
    """
    suffixes = tuple(s.lower() for s in fmt.suffixes)
    if fmt.kind in BUILT_IN_KINDS:
        raise ConfigError(f"scan format {fmt.kind!r}: a built-in kind; choose another name")
    if not suffixes or any(not s.startswith(".") for s in suffixes):
        raise ConfigError(f"scan format {fmt.kind!r}: suffixes must start with '.', got {fmt.suffixes}")
    taken = [s for s in suffixes if s in BUILT_IN_SUFFIXES]
    if taken:
        raise ConfigError(f"scan format {fmt.kind!r}: {taken} are read by tagseg's own readers")
    if fmt.kind in SCAN_FORMATS and not replace:
        raise ConfigError(f"scan format {fmt.kind!r}: registered already (pass replace=True)")
    SCAN_FORMATS[fmt.kind] = ScanFormat(fmt.kind, suffixes, fmt.read, fmt.description)
    return SCAN_FORMATS[fmt.kind]


def unregister_scan_format(kind: str) -> None:
    """Forget a registered format (tests, notebooks)."""
    SCAN_FORMATS.pop(kind, None)


def format_for(path: Path) -> ScanFormat | None:
    """The registered format whose suffix ``path`` ends with (the longest match), or None."""
    name = path.name.lower()
    matches = [(len(s), f) for f in SCAN_FORMATS.values() for s in f.suffixes if name.endswith(s)]
    return max(matches, key=lambda m: m[0])[1] if matches else None


def import_scan_formats(modules: Iterable[str] | None) -> None:
    """Import the modules that register formats (``reader.formats``).

    Raises:
        ConfigError: a module cannot be imported.
    """
    for module in modules or ():
        try:
            importlib.import_module(str(module))
        except ImportError as exc:
            raise ConfigError(f"reader.formats: cannot import {module!r} ({exc})") from None


def format_phrases() -> str:
    """The registered formats' descriptions, each after ", ", for the "expected ..." messages."""
    return "".join(f", {f.description}" for f in SCAN_FORMATS.values())


__all__ = [
    "SCAN_FORMATS",
    "ScanFormat",
    "format_for",
    "format_phrases",
    "import_scan_formats",
    "register_scan_format",
    "unregister_scan_format",
]
