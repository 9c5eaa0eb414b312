"""CSV tables from users (batch lines, eval test sets, finetune datasets): one reader with one set of rules.

* UTF-8 with or without BOM, else GB18030/GBK (what Excel on a Chinese Windows saves); anything else is refused with
  the line and byte of the first bad byte.
* Strict quoting: a quote that is never closed is an error naming the line it opens on, instead of silently
  merging every following row into one cell.
* Header names are stripped (and a stray BOM removed); rows come back as ``(line number, {header: cell})`` with
  the line where the row starts; a row with more cells than the header is an error naming its line.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Optional

from ..errors import GSVError
from .listfile import ListFormatError, decode, read_bytes


class CSVError(GSVError):
    """A CSV that cannot be read as a table; the message names the file and the line."""


def read_csv_rows(path: str | os.PathLike, shown: Optional[str] = None, delimiter: str = ",",
                  lower_header: bool = False) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(header, rows) of a CSV file; see the module docstring."""
    name = shown or str(path)
    try:
        text, _ = decode(read_bytes(path, shown), name)
    except ListFormatError as exc:
        raise CSVError(str(exc).replace("the .list file", "the CSV file")) from None
    return parse_csv(text, name, delimiter, lower_header)


def parse_csv(text: str, name: str = "the CSV", delimiter: str = ",",
              lower_header: bool = False) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: Optional[list[str]] = None
    rows: list[tuple[int, dict[str, str]]] = []
    start = 1
    try:
        for record in reader:
            line = start
            start = reader.line_num + 1
            if header is None:
                if not any(c.strip() for c in record):
                    continue
                header = [c.strip().lstrip("\ufeff") for c in record]
                if lower_header:
                    header = [h.lower() for h in header]
                continue
            if not any(c.strip() for c in record):
                continue
            if len(record) > len(header):
                raise CSVError(f"{name}: line {line} has {len(record)} cells but the header has {len(header)} "
                               "(quote a text that contains the delimiter)")
            rows.append((line, {h: (record[i] if i < len(record) else "") for i, h in enumerate(header)}))
    except csv.Error as exc:
        raise CSVError(f"{name}: line {start}: {exc} (a quote opened there is never closed?)") from None
    return header or [], rows


__all__ = ["CSVError", "parse_csv", "read_csv_rows"]
