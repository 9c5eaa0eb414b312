"""Linguistic tables used by the Chinese text normaliser, read once from ``gsv_core/text/data/``.

Every table is a small UTF-8 text file whose first lines (starting with ``#``) name its origin; the rows keep the
order of the file because some tables (unit abbreviations) are applied in that order.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

__all__ = ["DATA_DIR", "measure_words", "symbol_readings", "traditional_to_simplified", "unit_abbreviations"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def _rows(name: str, columns: int) -> tuple[tuple[str, ...], ...]:
    """The data rows of ``data/<name>``: header lines skipped, each row split on tabs into ``columns`` fields."""
    path = DATA_DIR / name
    rows: list[tuple[str, ...]] = []
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            if not line or (line.startswith("#") and not rows):
                continue
            fields = tuple(line.split("\t")) if columns > 1 else (line,)
            if len(fields) != columns or not all(fields):
                raise RuntimeError(f"{path}:{number}: expected {columns} non-empty tab-separated field(s)")
            rows.append(fields)
    return tuple(rows)


@lru_cache(maxsize=None)
def traditional_to_simplified() -> dict[int, str]:
    """A ``str.translate`` table mapping each listed traditional character to its simplified form."""
    return {ord(trad): simp for trad, simp in _rows("zh_t2s.tsv", 2)}


@lru_cache(maxsize=None)
def measure_words() -> tuple[str, ...]:
    """Measure words and units that, right after a number, make it a counted quantity (2 -> 两)."""
    return tuple(row[0] for row in _rows("zh_measure_words.txt", 1))


@lru_cache(maxsize=None)
def unit_abbreviations() -> tuple[tuple[str, str], ...]:
    """(abbreviation, reading) pairs, to be substituted as plain substrings in this order."""
    return tuple((abbr, reading) for abbr, reading in _rows("zh_unit_abbreviations.tsv", 2))


@lru_cache(maxsize=None)
def symbol_readings() -> dict[str, str]:
    """Single symbols (circled numbers, Greek letters, arithmetic signs, '/') and how they are read."""
    return {symbol: reading for symbol, reading in _rows("zh_symbol_readings.tsv", 2)}
