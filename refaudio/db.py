"""The SQLite store of the reference library: connections, transactions, numbered migrations, safe SQL builders.

* One connection per thread (``sqlite3`` connections must not be shared across threads), each with WAL journaling,
  ``foreign_keys=ON`` and a busy timeout, so several threads and processes can write without "database is locked".
* :meth:`Database.transaction` opens ``BEGIN IMMEDIATE`` (the write lock is taken at the start, so two writers never
  deadlock on an upgrade) and nests: an inner block joins the outer transaction.
* Migrations are numbered and applied in order, each in its own transaction, recorded in ``schema_migrations``.
* SQL text is built only from constants in this package: ORDER BY fields come from whitelists
  (:func:`order_by`), IN-lists are placeholders (:func:`in_list`), every value is a bound parameter.
"""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

from gsv_core.errors import GSVError

BUSY_TIMEOUT_MS = 30_000


class DatabaseError(GSVError):
    """The library database cannot be opened or a request to it is invalid."""


class NotFound(DatabaseError):
    """A role, clip, task, result or product id that does not exist."""


# Each migration: (number, description, statements). Never edit a released one; append a new number instead.
MIGRATIONS: list[tuple[int, str, tuple[str, ...]]] = [
    (1, "library, tasks, results, products", (
        """CREATE TABLE roles (
            id INTEGER PRIMARY KEY,
            category TEXT NOT NULL,
            name TEXT NOT NULL,
            remark TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL DEFAULT (datetime('now')),
            UNIQUE (category, name))""",
        """CREATE TABLE categories (
            id INTEGER PRIMARY KEY,
            role_id INTEGER NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            UNIQUE (role_id, name))""",
        """CREATE TABLE clips (
            id INTEGER PRIMARY KEY,
            role_id INTEGER NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
            category TEXT NOT NULL DEFAULT 'default',
            name TEXT NOT NULL,
            file TEXT NOT NULL DEFAULT '',
            transcript TEXT NOT NULL DEFAULT '',
            language TEXT NOT NULL DEFAULT 'zh',
            duration REAL NOT NULL DEFAULT 0,
            valid INTEGER NOT NULL DEFAULT 0,
            md5 TEXT NOT NULL,
            size INTEGER NOT NULL DEFAULT 0,
            manual_checked INTEGER NOT NULL DEFAULT 0,
            remark TEXT NOT NULL DEFAULT '',
            source_clip_id INTEGER REFERENCES clips(id) ON DELETE SET NULL,
            split_start REAL,
            split_end REAL,
            created_at TEXT NOT NULL DEFAULT (datetime('now')),
            UNIQUE (role_id, md5))""",
        "CREATE INDEX clips_role_category ON clips(role_id, category)",
        "CREATE INDEX clips_source ON clips(source_clip_id)",
        """CREATE TABLE speaker_embeddings (
            clip_id INTEGER NOT NULL REFERENCES clips(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,
            PRIMARY KEY (clip_id, model))""",
        """CREATE TABLE tasks (
            id INTEGER PRIMARY KEY,
            role_id INTEGER NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            compare_type TEXT NOT NULL,
            spec TEXT NOT NULL,
            samples INTEGER NOT NULL DEFAULT 1,
            status TEXT NOT NULL DEFAULT 'ready'
                CHECK (status IN ('ready', 'queued', 'running', 'done', 'cancelled', 'failed')),
            error TEXT NOT NULL DEFAULT '',
            conclusion TEXT NOT NULL DEFAULT '',
            parent_item_id INTEGER,
            created_at TEXT NOT NULL DEFAULT (datetime('now')),
            updated_at TEXT NOT NULL DEFAULT (datetime('now')))""",
        """CREATE TABLE task_texts (
            id INTEGER PRIMARY KEY,
            task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            text TEXT NOT NULL,
            language TEXT NOT NULL,
            UNIQUE (task_id, position))""",
        """CREATE TABLE task_refs (
            id INTEGER PRIMARY KEY,
            task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            clip_id INTEGER REFERENCES clips(id) ON DELETE RESTRICT,
            UNIQUE (task_id, position))""",
        """CREATE TABLE task_cells (
            id INTEGER PRIMARY KEY,
            task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            label TEXT NOT NULL,
            params TEXT NOT NULL,
            gpt_path TEXT NOT NULL,
            sovits_path TEXT NOT NULL,
            UNIQUE (task_id, position))""",
        """CREATE TABLE items (
            id INTEGER PRIMARY KEY,
            task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
            cell_id INTEGER NOT NULL REFERENCES task_cells(id) ON DELETE CASCADE,
            ref_id INTEGER NOT NULL REFERENCES task_refs(id) ON DELETE CASCADE,
            text_id INTEGER NOT NULL REFERENCES task_texts(id) ON DELETE CASCADE,
            sample INTEGER NOT NULL,
            seed INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
            error TEXT NOT NULL DEFAULT '',
            attempts INTEGER NOT NULL DEFAULT 0,
            audio_file TEXT,
            spectrogram_file TEXT,
            duration REAL,
            asr_text TEXT,
            cer REAL,
            sim_ref REAL,
            sim_centroid REAL,
            sec_per_char REAL,
            duration_z REAL,
            flags TEXT NOT NULL DEFAULT '',
            scored INTEGER NOT NULL DEFAULT 0,
            user_score INTEGER CHECK (user_score IS NULL OR (user_score BETWEEN 0 AND 5)),
            remark TEXT NOT NULL DEFAULT '',
            finished_at TEXT,
            UNIQUE (task_id, cell_id, ref_id, text_id, sample))""",
        "CREATE INDEX items_task_status ON items(task_id, status)",
        """CREATE TABLE products (
            id INTEGER PRIMARY KEY,
            role_id INTEGER NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            category TEXT NOT NULL DEFAULT '',
            gpt_path TEXT NOT NULL,
            sovits_path TEXT NOT NULL,
            ref_clip_id INTEGER NOT NULL REFERENCES clips(id) ON DELETE RESTRICT,
            aux_clip_ids TEXT NOT NULL DEFAULT '[]',
            params TEXT NOT NULL,
            score REAL,
            remark TEXT NOT NULL DEFAULT '',
            source_item_id INTEGER REFERENCES items(id) ON DELETE SET NULL,
            created_at TEXT NOT NULL DEFAULT (datetime('now')),
            UNIQUE (role_id, name))""",
    )),
    # a task whose synthesis is done but whose results are not all measured yet is in phase 'scoring'; a process
    # killed meanwhile finds it at start and measures the rest (the status column keeps its CHECK)
    (2, "task phase (scoring survives a crash)", (
        "ALTER TABLE tasks ADD COLUMN phase TEXT NOT NULL DEFAULT ''",
    )),
    # the shared library of test texts: named texts that sweeps and long-text tests pick instead of typing them
    (3, "test-text library", (
        """CREATE TABLE test_texts (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            language TEXT NOT NULL DEFAULT 'zh',
            text TEXT NOT NULL,
            tags TEXT NOT NULL DEFAULT '',
            note TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL DEFAULT (datetime('now')),
            updated_at TEXT NOT NULL DEFAULT (datetime('now')))""",
    )),
]


class DamagedDatabaseError(DatabaseError):
    """The database file exists but is not a readable SQLite database."""


def move_aside(path: Any) -> Path:
    """Rename a damaged database (and its -wal/-shm files) to ``<name>.damaged-<time>``; returns the new path.
    Nothing is deleted: the file can still be inspected or recovered."""
    import time

    src = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = src.with_name(f"{src.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        part = Path(str(src) + suffix)
        if part.exists():
            part.rename(Path(str(target) + suffix))
    return target


class Database:
    """A library database file. Thread-safe: every thread gets its own connection."""

    def __init__(self, path: Any, migrate: bool = True):
        self.path = Path(path).expanduser().resolve()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"Cannot create the folder of the library database {self.path}: {exc}") from None
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        if migrate:
            self.migrate()

    # -- connections -------------------------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                       check_same_thread=False)
            except sqlite3.Error as exc:
                raise DatabaseError(f"Cannot open the library database {self.path}: {exc}") from None
            conn.row_factory = sqlite3.Row
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_MS)}")
                conn.execute("PRAGMA foreign_keys = ON")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise DamagedDatabaseError(
                    f"The RefAudio library database {self.path.name} cannot be read ({exc}); it is damaged or not "
                    "a database. Move it aside (the RefAudio tab offers to) to start a new library.") from None
            if str(mode).lower() != "wal":
                raise DatabaseError(f"{self.path}: the database cannot use WAL journaling (got {mode}); "
                                    "put it on a local disk")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            self._local.depth = 0
            with self._all_lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection this object opened (call when done; used by tests before reopening)."""
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception); nested blocks join the outer one."""
        conn = self.conn
        depth = self._local.depth
        if depth == 0:
            conn.execute("BEGIN IMMEDIATE")
        self._local.depth = depth + 1
        try:
            yield conn
        except BaseException:
            self._local.depth = depth
            if depth == 0:
                conn.execute("ROLLBACK")
            raise
        self._local.depth = depth
        if depth == 0:
            conn.execute("COMMIT")

    # -- queries -----------------------------------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def all(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[dict]:
        return [dict(r) for r in self.conn.execute(sql, params).fetchall()]

    def one(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Optional[dict]:
        row = self.conn.execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    def scalar(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row is not None else None

    # -- schema ------------------------------------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Apply the migrations not yet applied, in order; returns the numbers applied now (empty when current)."""
        self.conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                          "description TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT (datetime('now')))")
        applied = []
        for number, description, statements in MIGRATIONS:
            with self.transaction() as conn:
                if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (number,)).fetchone():
                    continue  # another process applied it meanwhile: the check runs under the write lock
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations (version, description) VALUES (?, ?)",
                             (number, description))
                applied.append(number)
        return applied

    def schema_version(self) -> int:
        return int(self.scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") or 0)


# -- safe SQL builders ------------------------------------------------------------------------------------------

def in_list(values: Sequence[Any]) -> tuple[str, list[Any]]:
    """``("?, ?, ?", [values])`` for an IN (...) clause; an empty list gives ``NULL`` (matches nothing)."""
    values = list(values)
    if not values:
        return "NULL", []
    return ", ".join("?" for _ in values), values


def order_by(sort: Optional[str], descending: Optional[bool], whitelist: Mapping[str, str], default: str,
             default_desc: bool, tiebreak: str) -> str:
    """An ORDER BY clause whose field comes from ``whitelist`` (public name -> SQL expression written by us).

    An unknown field raises :class:`DatabaseError` naming the allowed ones; user text never reaches the SQL."""
    key = default if sort in (None, "") else str(sort)
    if key not in whitelist:
        raise DatabaseError(f"Cannot sort by {key!r}; choose one of: {', '.join(sorted(whitelist))}.")
    desc = default_desc if descending is None else bool(descending)
    direction = "DESC" if desc else "ASC"
    # NULLs (not measured yet) go last in either direction
    expr = whitelist[key]
    return f"ORDER BY ({expr}) IS NULL, {expr} {direction}, {tiebreak}"
