"""Phone symbol tables of the two GPT-SoVITS text encoders and phone -> id conversion.

``'v1'`` models embed 322 symbols; every later version (v2, v2Pro, v2ProPlus, ...) embeds the 732-symbol table,
which is the v1 table followed by the Japanese pitch marks, Korean jamo and Cantonese phones. A phone's id is its
index in the table. The tables are stored in ``data/symbols_v1.json`` and ``data/symbols_v2.json``.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from ..errors import GSVError

__all__ = ["UNKNOWN", "SymbolError", "normalize_symbol_version", "symbols", "symbol_to_id", "phones_to_ids"]

#: the phone every symbol missing from a table becomes (upstream's cleaner does the same)
UNKNOWN = "UNK"


class SymbolError(GSVError):
    """An unknown symbol-table version was requested."""


def normalize_symbol_version(version: str) -> str:
    """``'v1'`` for v1 models, ``'v2'`` for every later model version ("v2", "v2Pro", "v2ProPlus", "v3", "v4")."""
    if not isinstance(version, str) or not version.strip():
        raise SymbolError(f"model version must be a non-empty string such as 'v1' or 'v2', not {version!r}")
    v = version.strip().lower()
    if v == "v1":
        return "v1"
    if re.fullmatch(r"v[2-9](pro|proplus)?", v):
        return "v2"
    raise SymbolError(f"unknown model version {version!r}: expected 'v1', 'v2', 'v2Pro' or 'v2ProPlus'")


@lru_cache(maxsize=None)
def _table(version: str) -> tuple[str, ...]:
    name = "symbols_v1.json" if version == "v1" else "symbols_v2.json"
    raw = (Path(__file__).resolve().parent / "data" / name).read_text(encoding="utf-8")
    return tuple(json.loads(raw)["symbols"])


@lru_cache(maxsize=None)
def _index(version: str) -> dict[str, int]:
    return {s: i for i, s in enumerate(_table(version))}


def symbols(version: str = "v2") -> list[str]:
    """The symbol table of ``version`` in id order (a fresh list: 322 entries for v1, 732 for later versions)."""
    return list(_table(normalize_symbol_version(version)))


def symbol_to_id(version: str = "v2") -> dict[str, int]:
    """``{symbol: id}`` for ``version`` (a copy; mutate freely)."""
    return dict(_index(normalize_symbol_version(version)))


def phones_to_ids(phones: Iterable[str], version: str = "v2") -> list[int]:
    """Ids of ``phones`` in the table of ``version``; a phone missing from the table is looked up as ``'UNK'``."""
    index = _index(normalize_symbol_version(version))
    unk = index[UNKNOWN]
    return [index.get(p, unk) for p in phones]
