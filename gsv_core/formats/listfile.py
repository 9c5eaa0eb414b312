"""GPT-SoVITS ``.list`` files: ``audio_path|speaker|LANG|text``, one utterance per line.

The one reader and writer every room uses (ASR tab, finetune data and features, checkpoint selection, RefAudio
import and export). Rules:

* **``|`` in the text**: a line is cut at its first three ``|`` only, so a text containing ``|`` is read whole.
  Writing never puts ``|`` inside a field (text: a space, as for line breaks; path and speaker: ``_``), so
  upstream's own reader, which splits at every ``|``, reads what we write.
* **Encoding**: UTF-8 with or without BOM; a file that is not UTF-8 but decodes as GB18030/GBK (common for Chinese
  Windows tools) is read as such and the fact is reported (:attr:`ListFile.encoding`). Anything else is refused
  with the line and byte offset of the first bad byte.
* **Language codes**: every spelling upstream accepts (``ZH``/``zh``, ``JP``/``JA``/``ja``, ``EN``/``En``,
  ``KO``/``Ko``, ``YUE``/``Yue``) and our text modes (``all_zh``, ``auto_yue``, ...), through
  :func:`gsv_core.languages.list_code_to_mode`; rows carry the canonical lower-case code. Writing uses the
  upper-case code of :func:`gsv_core.languages.mode_to_list_code`.
* **Line numbers**: every problem names its line (1-based, blank lines counted); blank lines are skipped.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

from .. import languages
from ..errors import GSVError
from ..fileio import write_text_atomic


class ListFormatError(GSVError):
    """A ``.list`` that cannot be used; the message names every bad line (up to a limit)."""


@dataclass(frozen=True)
class ListRow:
    line: int
    audio: str  # as written (relative paths are the caller's to resolve)
    speaker: str
    lang: Optional[str]  # canonical code (zh, en, ja, ko, yue, all_zh, ...) or None when unknown
    lang_code: str  # as written
    text: str
    raw: str


@dataclass(frozen=True)
class ListProblem:
    line: int
    reason: str
    raw: str
    kind: str = "invalid_row"  # invalid_row | unknown_language | empty_text | empty_path


@dataclass
class ListFile:
    rows: list[ListRow] = field(default_factory=list)
    problems: list[ListProblem] = field(default_factory=list)
    encoding: str = "utf-8"
    source: str = ""

    def describe_problems(self, limit: int = 20) -> str:
        shown = [f"line {p.line}: {p.reason}" for p in self.problems[:limit]]
        more = f"\n... and {len(self.problems) - limit} more" if len(self.problems) > limit else ""
        return "\n".join(shown) + more


def decode(data: bytes, source: str = "the .list") -> tuple[str, str]:
    """(text, encoding) of a ``.list``/CSV file's bytes: UTF-8 (BOM dropped), else GB18030; a clear error
    naming the line and byte otherwise."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        utf8_error = exc
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError:
        pass
    line = data[:utf8_error.start].count(b"\n") + 1
    raise ListFormatError(f"{source}: line {line} (byte offset {utf8_error.start}, byte "
                          f"0x{data[utf8_error.start]:02x}) is not UTF-8 (nor GBK) text; re-save the file as UTF-8")


def read_bytes(path: str | os.PathLike, shown: Optional[str] = None) -> bytes:
    p = Path(path)
    name = shown or str(p)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise ListFormatError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise ListFormatError(f"{name}: is a folder; give the .list file") from None
    except OSError as exc:
        raise ListFormatError(f"{name}: cannot read the file ({exc.strerror or exc})") from None


def parse(text: str, source: str = "") -> ListFile:
    """Every line of a ``.list`` text: rows that have the four fields, problems for the others. A row with an
    unknown language code (kept with ``lang=None``) or an empty text is kept *and* reported, so each caller decides
    what to do with it."""
    out = ListFile(source=source)
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip("\r")
        if not line.strip():
            continue
        parts = line.split("|", 3)
        if len(parts) < 4:
            out.problems.append(ListProblem(number, f"expected 4 fields 'path|speaker|language|text' separated by "
                                                    f"'|', found {len(parts)}", line))
            continue
        audio, speaker, code, text_ = (p.strip() for p in parts)
        audio = audio.strip('"').strip()
        if not audio:
            out.problems.append(ListProblem(number, "the audio path is empty", line, "empty_path"))
            continue
        if not text_:
            out.problems.append(ListProblem(number, "the text is empty", line, "empty_text"))
        lang = languages.list_code_to_mode(code)
        if lang is None:
            out.problems.append(ListProblem(
                number, f"unknown language code {code!r} (use one of ZH, EN, JA, KO, YUE or a text mode such as "
                        f"all_zh)", line, "unknown_language"))
        out.rows.append(ListRow(number, audio, speaker, lang, code, text_, line))
    return out


def read_list(path: str | os.PathLike, *, strict: bool = True, shown: Optional[str] = None,
              max_errors: int = 20) -> ListFile:
    """Read a ``.list``. ``strict``: any problem (bad line, unknown language) raises one
    :class:`ListFormatError` listing them; otherwise the caller inspects :attr:`ListFile.problems`."""
    name = shown or str(path)
    text, encoding = decode(read_bytes(path, shown), name)
    result = parse(text, name)
    result.encoding = encoding
    if strict and result.problems:
        raise ListFormatError(f"{name} has {len(result.problems)} bad line(s):\n"
                              + result.describe_problems(max_errors))
    if strict:
        result.rows = [r for r in result.rows if r.lang is not None and r.text]
    return result


def audio_names(path: str | os.PathLike) -> list[str]:
    """The audio base names of a ``.list`` in order (the utterance keys of upstream's feature files); a line
    without the four fields or without an audio path is an error naming it."""
    parsed = read_list(path, strict=False)
    broken = [p for p in parsed.problems if p.kind in ("invalid_row", "empty_path")]
    if broken:
        raise ListFormatError(f"{path} line {broken[0].line}: {broken[0].reason}")
    return [Path(r.audio.replace("\\", "/")).name for r in parsed.rows]


def _field(value: str, bar: str) -> str:
    return " ".join(str(value).replace("|", bar).split())


def format_line(audio: str | os.PathLike, speaker: str, lang: str, text: str) -> str:
    """One ``.list`` line; ``|`` and line breaks never end up inside a field."""
    code = languages.mode_to_list_code(lang) if lang else "ZH"
    return f"{_field(str(audio), '_')}|{_field(speaker, '_') or 'speaker'}|{code}|{_field(text, ' ')}"


def write_list(path: str | os.PathLike, rows: Iterable[Sequence[str]]) -> Path:
    """Write ``(audio, speaker, lang, text)`` rows atomically as UTF-8 (no BOM), one line each."""
    return write_text_atomic(path, "".join(format_line(*r) + "\n" for r in rows))


__all__ = ["ListFile", "ListFormatError", "ListProblem", "ListRow", "audio_names", "decode", "format_line", "parse", "read_bytes",
           "read_list", "write_list"]
