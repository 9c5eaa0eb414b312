"""The shared library of test texts: named texts (name, language, text, tags, note) kept in the RefAudio database,
picked by the sweep form and the long-text test instead of being typed per task (``python -m refaudio texts``).

Names are unique; tags are a comma-separated list, stored normalised (trimmed, no empties, no duplicates)."""
from __future__ import annotations

import sqlite3
from typing import Any, Sequence

from gsv_core.messages import keyed

from .db import Database, NotFound, in_list
from .library import LANGUAGES, NAME_LIMIT, LibraryError

TEXT_LIMIT = 5000


def _tags(value: Any) -> str:
    if value is None:
        return ""
    items = value if isinstance(value, (list, tuple)) else str(value).replace("，", ",").split(",")
    out: list[str] = []
    for t in items:
        t = str(t).strip()
        if t and t not in out:
            out.append(t)
    return ", ".join(out)


def _name(value: Any) -> str:
    name = str(value if value is not None else "").strip()
    if not name:
        raise keyed(LibraryError, "library.name_empty")
    if len(name) > NAME_LIMIT or any(ch in name for ch in "\x00\r\n"):
        raise LibraryError(f"The text name {name[:40]!r} is too long or contains line breaks.")
    return name


def _text(value: Any) -> str:
    text = str(value if value is not None else "").strip()
    if not text:
        raise keyed(LibraryError, "text.empty")
    if len(text) > TEXT_LIMIT:
        raise keyed(LibraryError, "text.too_long", n=len(text), limit=TEXT_LIMIT)
    return text


def _language(value: Any) -> str:
    lang = str(value or "zh")
    if lang not in LANGUAGES:
        raise LibraryError(f"Language {lang!r} is not supported; use one of {', '.join(LANGUAGES)}.")
    return lang


class TestTexts:
    __test__ = False  # not a pytest class

    def __init__(self, db: Database):
        self.db = db

    def get(self, text_id: int) -> dict:
        row = self.db.one("SELECT * FROM test_texts WHERE id = ?", (int(text_id),))
        if row is None:
            raise keyed(NotFound, "library.not_found", what=f"test text {text_id}")
        return row

    def find(self, name_or_id: Any) -> dict:
        """A text by id (digits) or by exact name."""
        key = str(name_or_id).strip()
        if key.isdigit():
            return self.get(int(key))
        row = self.db.one("SELECT * FROM test_texts WHERE name = ?", (key,))
        if row is None:
            raise keyed(NotFound, "library.not_found", what=f"test text {key!r}")
        return row

    def list(self, search: str = "", language: str = "", tag: str = "", ids: Sequence[int] = ()) -> list[dict]:
        where, params = ["1 = 1"], []
        if search:
            where.append("(instr(lower(name), lower(?)) > 0 OR instr(lower(text), lower(?)) > 0 OR "
                         "instr(lower(note), lower(?)) > 0)")
            params += [search, search, search]
        if language:
            where.append("language = ?")
            params.append(language)
        if tag:
            where.append("instr(', ' || lower(tags) || ',', ', ' || lower(?) || ',') > 0")
            params.append(str(tag).strip())
        if ids:
            marks, values = in_list([int(i) for i in ids])
            where.append(f"id IN ({marks})")
            params += values
        return self.db.all(f"SELECT * FROM test_texts WHERE {' AND '.join(where)} ORDER BY name", params)

    def add(self, name: Any, text: Any, language: Any = "zh", tags: Any = "", note: Any = "") -> int:
        values = (_name(name), _language(language), _text(text), _tags(tags), str(note or ""))
        try:
            with self.db.transaction() as conn:
                return int(conn.execute("INSERT INTO test_texts (name, language, text, tags, note) "
                                        "VALUES (?, ?, ?, ?, ?)", values).lastrowid)
        except sqlite3.IntegrityError:
            raise keyed(LibraryError, "library.name_taken", name=values[0]) from None

    def update(self, text_id: int, name: Any = None, text: Any = None, language: Any = None, tags: Any = None,
               note: Any = None) -> dict:
        row = self.get(text_id)
        fields = {}
        if name is not None:
            fields["name"] = _name(name)
        if text is not None:
            fields["text"] = _text(text)
        if language is not None:
            fields["language"] = _language(language)
        if tags is not None:
            fields["tags"] = _tags(tags)
        if note is not None:
            fields["note"] = str(note)
        if fields:
            try:
                with self.db.transaction() as conn:
                    for column in sorted(fields):  # column names come from the fixed set above
                        conn.execute(f"UPDATE test_texts SET {column} = ? WHERE id = ?", (fields[column], row["id"]))
                    conn.execute("UPDATE test_texts SET updated_at = datetime('now') WHERE id = ?", (row["id"],))
            except sqlite3.IntegrityError:
                raise keyed(LibraryError, "library.name_taken", name=fields.get("name", "")) from None
        return self.get(row["id"])

    def delete(self, text_id: int) -> None:
        row = self.get(text_id)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM test_texts WHERE id = ?", (row["id"],))

    def pairs(self, ids: Sequence[Any]) -> list[tuple[str, str]]:
        """(text, language) of the given texts (ids or names), in the given order: a sweep's ``texts``."""
        return [(r["text"], r["language"]) for r in (self.find(i) for i in ids)]
