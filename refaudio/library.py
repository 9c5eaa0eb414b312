"""Roles, audio categories and reference clips: import of GPT-SoVITS ``.list`` files, re-labelling, search and
filter, deletion inside the library only, and splitting clips into linked sub-clips.

Files live at ``<library_root>/roles/<role_id>/clips/<clip_id><ext>``: named by id (never by transcript), with the
original extension. Duplicates are found by MD5 within a role, so importing the same list twice adds nothing.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from gsv_core.errors import AudioError, GSVError

from .db import Database, NotFound, in_list, order_by
from gsv_core import languages
from gsv_core.fileio import atomic_path, copy_atomic
from gsv_core.formats import listfile

from gsv_core.messages import keyed

from .files import PathGuard, audio_extension, safe_name

Progress = Callable[[float, str], None]

#: languages a clip may carry: the engine's text modes (the one language table); rows in others are reported
LANGUAGES = languages.text_modes()
BUILTIN_CATEGORIES = ("default", "invalid")
MIN_REF_S, MAX_REF_S = 3.0, 10.0
#: the longest clip the library takes (grouping, waveforms and scoring decode a clip whole)
MAX_CLIP_S = 600.0
NAME_LIMIT = 200

CLIP_SORTS = {
    "id": "c.id", "name": "c.name", "duration": "c.duration", "category": "c.category",
    "created": "c.created_at", "language": "c.language",
    "score": "(SELECT MAX(i.user_score) FROM items i JOIN task_refs r ON r.id = i.ref_id WHERE r.clip_id = c.id)",
}


class LibraryError(GSVError):
    """A library request that cannot be carried out as given."""


@dataclass
class ImportIssue:
    line: int
    path: str
    reason: str


@dataclass
class ImportReport:
    added: list[int] = field(default_factory=list)  # clip ids
    updated: list[int] = field(default_factory=list)
    duplicates: list[ImportIssue] = field(default_factory=list)  # already in the library (same audio)
    out_of_range: list[ImportIssue] = field(default_factory=list)  # imported, marked invalid (3-10 s rule)
    errors: list[ImportIssue] = field(default_factory=list)  # not imported

    def summary(self) -> str:
        text = (f"{len(self.added)} added, {len(self.updated)} updated, {len(self.duplicates)} already present, "
                f"{len(self.out_of_range)} outside {MIN_REF_S:g}-{MAX_REF_S:g} s (imported as invalid), "
                f"{len(self.errors)} rejected")
        if self.errors:
            text += ": " + "; ".join(f"line {e.line}: {e.reason}" for e in self.errors[:10])
            if len(self.errors) > 10:
                text += f"; ... and {len(self.errors) - 10} more"
        return text

    def as_dict(self) -> dict:
        def issues(items):
            return [vars(i) for i in items]
        return {"added": self.added, "updated": self.updated, "duplicates": issues(self.duplicates),
                "out_of_range": issues(self.out_of_range), "errors": issues(self.errors), "summary": self.summary()}


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _clean_name(value: Any, what: str) -> str:
    text = str(value if value is not None else "").strip()
    if not text:
        raise LibraryError(f"The {what} is empty.")
    if len(text) > NAME_LIMIT or any(ch in text for ch in "\x00\r\n"):
        raise LibraryError(f"The {what} {text[:40]!r} is too long or contains line breaks.")
    return text


def is_valid_duration(seconds: float) -> bool:
    return MIN_REF_S <= seconds <= MAX_REF_S


class Library:
    def __init__(self, db: Database, root: Path, guard: PathGuard):
        self.db = db
        self.root = Path(root).resolve()
        self.guard = guard

    # -- roles -------------------------------------------------------------------------------------------------

    def create_role(self, category: str, name: str, remark: str = "") -> int:
        """A role is (category, name); both are stored literally (a '-' in a name is kept). Idempotent."""
        category, name = _clean_name(category, "role category"), _clean_name(name, "role name")
        with self.db.transaction() as conn:
            row = conn.execute("SELECT id FROM roles WHERE category = ? AND name = ?", (category, name)).fetchone()
            if row:
                return int(row[0])
            return int(conn.execute("INSERT INTO roles (category, name, remark) VALUES (?, ?, ?)",
                                    (category, name, remark)).lastrowid)

    def roles(self, search: str = "") -> list[dict]:
        like = f"%{search}%"
        return self.db.all(
            "SELECT r.*, (SELECT COUNT(*) FROM clips c WHERE c.role_id = r.id) AS clips, "
            "(SELECT COUNT(*) FROM tasks t WHERE t.role_id = r.id) AS tasks "
            "FROM roles r WHERE r.category LIKE ? OR r.name LIKE ? ORDER BY r.category, r.name", (like, like))

    def role(self, role_id: int) -> dict:
        row = self.db.one("SELECT * FROM roles WHERE id = ?", (int(role_id),))
        if row is None:
            raise NotFound(f"There is no role with id {role_id}; pick one from the list or create it.")
        return row

    def find_role(self, category: str, name: str) -> Optional[dict]:
        return self.db.one("SELECT * FROM roles WHERE category = ? AND name = ?", (category, name))

    def role_dir(self, role_id: int) -> Path:
        return self.root / "roles" / str(int(role_id))

    def delete_role(self, role_id: int) -> None:
        """Delete the role, its clips, tasks and products, and its folder inside the library."""
        self.role(role_id)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM products WHERE role_id = ?", (int(role_id),))
            conn.execute("DELETE FROM tasks WHERE role_id = ?", (int(role_id),))
            conn.execute("DELETE FROM clips WHERE role_id = ?", (int(role_id),))
            conn.execute("DELETE FROM roles WHERE id = ?", (int(role_id),))
        self.guard.delete_tree(self.role_dir(role_id))

    # -- categories --------------------------------------------------------------------------------------------

    def categories(self, role_id: int) -> list[str]:
        self.role(role_id)
        names = [r["name"] for r in self.db.all("SELECT name FROM categories WHERE role_id = ? ORDER BY name",
                                                (int(role_id),))]
        used = [r["category"] for r in self.db.all("SELECT DISTINCT category FROM clips WHERE role_id = ?",
                                                   (int(role_id),))]
        out = list(BUILTIN_CATEGORIES)
        for n in names + sorted(used):
            if n not in out:
                out.append(n)
        return out

    def add_category(self, role_id: int, name: str) -> str:
        name = _clean_name(name, "category name")
        self.role(role_id)
        with self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO categories (role_id, name) VALUES (?, ?)", (int(role_id), name))
        return name

    def relabel(self, clip_ids: Sequence[int], category: str) -> int:
        """Move clips into ``category`` (created when new); returns how many changed."""
        category = _clean_name(category, "category name")
        ids = [int(i) for i in clip_ids]
        if not ids:
            return 0
        marks, params = in_list(ids)
        with self.db.transaction() as conn:
            roles = {r[0] for r in conn.execute(f"SELECT role_id FROM clips WHERE id IN ({marks})", params)}
            if len(roles) != 1:
                raise LibraryError("Re-labelling works on clips of one role at a time, and the clips must exist.")
            conn.execute("INSERT OR IGNORE INTO categories (role_id, name) VALUES (?, ?)", (roles.pop(), category))
            cur = conn.execute(f"UPDATE clips SET category = ? WHERE category <> ? AND id IN ({marks})",
                               [category, category, *params])
            return cur.rowcount

    # -- clips -------------------------------------------------------------------------------------------------

    def clip(self, clip_id: int) -> dict:
        row = self.db.one("SELECT * FROM clips WHERE id = ?", (int(clip_id),))
        if row is None:
            raise NotFound(f"There is no clip with id {clip_id}.")
        return row

    def clip_path(self, clip_id_or_row: Any) -> Path:
        row = clip_id_or_row if isinstance(clip_id_or_row, dict) else self.clip(clip_id_or_row)
        return self.guard.resolve(row["file"], base=self.root, what=f"audio of clip {row['id']}")

    def clips(self, role_id: Optional[int] = None, *, categories: Sequence[str] = (), name: str = "",
              transcript: str = "", language: str = "", valid: Optional[bool] = None,
              manual_checked: Optional[bool] = None, min_duration: Optional[float] = None,
              max_duration: Optional[float] = None, ids: Sequence[int] = (), source_clip_id: Optional[int] = None,
              sort: Optional[str] = None, descending: Optional[bool] = None, limit: int = 200,
              offset: int = 0) -> list[dict]:
        """Clips matching every given filter; default order duration, longest first. Adds ``best_score``."""
        where, params = ["1 = 1"], []
        if role_id is not None:
            where.append("c.role_id = ?")
            params.append(int(role_id))
        if categories:
            marks, values = in_list([str(c) for c in categories])
            where.append(f"c.category IN ({marks})")
            params += values
        if ids:
            marks, values = in_list([int(i) for i in ids])
            where.append(f"c.id IN ({marks})")
            params += values
        for column, text in (("c.name", name), ("c.transcript", transcript)):
            if text:
                where.append(f"instr(lower({column}), lower(?)) > 0")
                params.append(str(text))
        if language:
            where.append("c.language = ?")
            params.append(str(language))
        if valid is not None:
            where.append("c.valid = ?")
            params.append(1 if valid else 0)
        if manual_checked is not None:
            where.append("c.manual_checked = ?")
            params.append(1 if manual_checked else 0)
        if min_duration is not None:
            where.append("c.duration >= ?")
            params.append(float(min_duration))
        if max_duration is not None:
            where.append("c.duration <= ?")
            params.append(float(max_duration))
        if source_clip_id is not None:
            where.append("c.source_clip_id = ?")
            params.append(int(source_clip_id))
        order = order_by(sort, descending, CLIP_SORTS, "duration", True, "c.id")
        sql = (f"SELECT c.*, {CLIP_SORTS['score']} AS best_score FROM clips c WHERE {' AND '.join(where)} "
               f"{order} LIMIT ? OFFSET ?")
        return self.db.all(sql, [*params, max(1, min(int(limit), 10000)), max(0, int(offset))])

    def update_clip(self, clip_id: int, **fields: Any) -> dict:
        """Edit name, transcript, language, remark, manual_checked or category of one clip."""
        allowed = {"name", "transcript", "language", "remark", "manual_checked", "category"}
        unknown = set(fields) - allowed
        if unknown:
            raise LibraryError(f"Cannot edit {', '.join(sorted(unknown))}; editable: {', '.join(sorted(allowed))}.")
        row = self.clip(clip_id)
        if "language" in fields and fields["language"] not in LANGUAGES:
            raise LibraryError(f"Language {fields['language']!r} is not supported; use one of {', '.join(LANGUAGES)}.")
        if "category" in fields:
            self.relabel([clip_id], fields.pop("category"))
        if "name" in fields:
            fields["name"] = _clean_name(fields["name"], "clip name")
        if "manual_checked" in fields:
            fields["manual_checked"] = 1 if fields["manual_checked"] else 0
        with self.db.transaction() as conn:
            for column in sorted(fields):  # column names come from the whitelist above
                conn.execute(f"UPDATE clips SET {column} = ? WHERE id = ?", (fields[column], row["id"]))
        return self.clip(clip_id)

    def clip_users(self, clip_id: int) -> dict:
        """What uses a clip: ``{"products": [names], "tasks": [task ids]}`` (a product's reference or one of its
        auxiliary references; a task's reference)."""
        cid = int(clip_id)
        products = []
        for p in self.db.all("SELECT id, name, ref_clip_id, aux_clip_ids FROM products ORDER BY name"):
            try:
                aux = [int(a) for a in json.loads(p["aux_clip_ids"] or "[]")]
            except (ValueError, TypeError):
                aux = []
            if p["ref_clip_id"] == cid or cid in aux:
                products.append(p["name"])
        tasks = [r["task_id"] for r in self.db.all("SELECT DISTINCT task_id FROM task_refs WHERE clip_id = ? "
                                                   "ORDER BY task_id", (cid,))]
        return {"products": products, "tasks": tasks}

    def clip_files(self, row: dict) -> list[Path]:
        """Every file of a clip inside the library: its audio and its cached waveform views."""
        files = []
        if row["file"]:
            files.append(self.guard.resolve(row["file"], base=self.root, must_exist=False,
                                            what=f"audio of clip {row['id']}"))
        views = self.role_dir(row["role_id"]) / "views"
        if views.is_dir():
            files += sorted(views.glob(f"clip{int(row['id'])}_*.png"))
        return files

    def delete_clip(self, clip_id: int) -> None:
        """Delete a clip row and its files (audio, cached views; only ever files inside the library). Refused while
        a product or a task uses the clip (keyed ``library.clip_in_product`` / ``library.clip_in_task``)."""
        row = self.clip(clip_id)
        users = self.clip_users(row["id"])
        if users["products"]:
            raise keyed(LibraryError, "library.clip_in_product", clip=row["id"],
                        products=", ".join(users["products"]))
        if users["tasks"]:
            raise keyed(LibraryError, "library.clip_in_task", clip=row["id"],
                        tasks=", ".join(map(str, users["tasks"])))
        files = self.clip_files(row)  # resolved first: a row pointing outside the library is refused, row kept
        try:
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM clips WHERE id = ?", (row["id"],))
        except sqlite3.IntegrityError:  # a task took it meanwhile
            raise keyed(LibraryError, "library.clip_in_task", clip=row["id"], tasks="?") from None
        for path in files:
            self.guard.delete_file(path)

    def export_role(self, role_id: int, dest: Path, as_zip: bool = True, categories: Sequence[str] = (),
                    valid_only: bool = False) -> Path:
        """A role's clips as an upstream GPT-SoVITS ``.list`` (``path|speaker|LANG|text``, the role's name as the
        speaker) plus the audio files: a zip (``<speaker>.list`` + ``audio/<id><ext>``, paths relative to the zip)
        or a folder (the same layout; its ``.list`` names the audio by absolute path, as upstream's tools write
        it). ``categories`` / ``valid_only`` narrow the clips."""
        import shutil
        import zipfile

        role = self.role(role_id)
        rows = self.clips(role_id, categories=categories, valid=True if valid_only else None, sort="id",
                          descending=False, limit=10000)
        if not rows:
            raise LibraryError(f"Role {role['category']}/{role['name']} has no clips to export"
                               + (" in the chosen categories." if categories or valid_only else "."))
        speaker = safe_name(role["name"], "speaker")
        dest = Path(dest)
        entries = [(self.clip_path(r), f"audio/{r['id']}{Path(r['file']).suffix}", r) for r in rows]
        if as_zip:
            lines = [listfile.format_line(arc, speaker, r["language"], r["transcript"]) for _, arc, r in entries]
            with atomic_path(dest, fsync=False) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
                for src, arc, _ in entries:
                    z.write(src, arc)
                z.writestr(f"{speaker}.list", "\n".join(lines) + "\n")
            return dest
        if dest.exists():
            raise LibraryError(f"{dest.name} exists already; choose a new folder.")
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "audio").mkdir(parents=True)
        try:
            for src, arc, _ in entries:
                shutil.copyfile(src, tmp / arc)
            listfile.write_list(tmp / f"{speaker}.list", [((dest / arc).as_posix(), speaker, r["language"],
                                                            r["transcript"]) for _, arc, r in entries])
            tmp.rename(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

    # -- adding audio ------------------------------------------------------------------------------------------

    def add_clip(self, role_id: int, source: Path, transcript: str, language: str = "zh",
                 category: str = "default", name: str = "", remark: str = "", manual_checked: bool = False,
                 on_duplicate: str = "skip", source_clip_id: Optional[int] = None,
                 split: Optional[tuple[float, float]] = None) -> tuple[int, str]:
        """Copy one audio file into the library. Returns (clip id, 'added' | 'updated' | 'duplicate').

        ``on_duplicate``: 'skip' leaves an existing clip with the same audio untouched; 'update' replaces its
        transcript, language, category and remark (the audio is the same, so the file is kept)."""
        from gsv_core.audio import audio_duration

        if on_duplicate not in ("skip", "update"):
            raise LibraryError(f"on_duplicate must be 'skip' or 'update', not {on_duplicate!r}.")
        if language not in LANGUAGES:
            raise LibraryError(f"language {language!r} is not supported by this engine (use {', '.join(LANGUAGES)})")
        src = Path(source)
        ext = audio_extension(src)
        if not ext:
            raise LibraryError(f"{src.name}: not an audio file name (expected one of .wav .flac .ogg .mp3 .m4a "
                               ".aac .opus .webm)")
        if not src.is_file():
            raise LibraryError(f"{src}: audio file not found")
        duration = audio_duration(src)  # AudioError for unreadable files; read from the header, nothing decoded
        if duration > MAX_CLIP_S:
            raise LibraryError(f"{src.name}: {duration / 60:.1f} min is too long for a reference clip (at most "
                               f"{MAX_CLIP_S / 60:g} min); cut the recording first (the Finetune tab's slicer)")
        digest = md5_file(src)
        size = src.stat().st_size
        category = _clean_name(category or "default", "category name")
        name = (name or src.stem)[:NAME_LIMIT]
        self.role(role_id)
        with self.db.transaction() as conn:
            existing = conn.execute("SELECT id FROM clips WHERE role_id = ? AND md5 = ?",
                                    (int(role_id), digest)).fetchone()
            if existing:
                if on_duplicate == "update":
                    conn.execute("UPDATE clips SET transcript = ?, language = ?, category = ?, remark = ? "
                                 "WHERE id = ?", (transcript, language, category, remark, existing[0]))
                    return int(existing[0]), "updated"
                return int(existing[0]), "duplicate"
            conn.execute("INSERT OR IGNORE INTO categories (role_id, name) VALUES (?, ?)", (int(role_id), category))
            clip_id = int(conn.execute(
                "INSERT INTO clips (role_id, category, name, transcript, language, duration, valid, md5, size, "
                "manual_checked, remark, source_clip_id, split_start, split_end) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (int(role_id), category, name, transcript, language, float(duration),
                 1 if is_valid_duration(duration) else 0, digest, size, 1 if manual_checked else 0, remark,
                 source_clip_id, split[0] if split else None, split[1] if split else None)).lastrowid)
            target = self.role_dir(role_id) / "clips" / f"{clip_id}{ext}"
            copy_atomic(src, target)  # inside the transaction: a failed copy leaves no row behind
            conn.execute("UPDATE clips SET file = ? WHERE id = ?", (self.guard.relative(target), clip_id))
        return clip_id, "added"

    def import_list(self, role_id: int, list_path: Path, category: str = "default", manual_checked: bool = False,
                    on_duplicate: str = "skip", base_dir: Optional[Path] = None,
                    progress: Optional[Progress] = None, cancel: Optional[Callable[[], bool]] = None,
                    audio_allowed: Optional[Callable[[Path], bool]] = None) -> ImportReport:
        """Import a GPT-SoVITS ``.list`` (``audio|speaker|language|text``; a text may itself contain '|').

        Audio paths are absolute or relative to the list's folder (or ``base_dir``). Every row that cannot be
        imported is reported with its line number and reason; clips outside 3-10 s are imported marked invalid.
        ``audio_allowed`` (the app's path policy) refuses rows whose audio lies outside the folders it may read,
        with a message that does not say whether the file exists."""
        list_path = Path(list_path)
        self.role(role_id)
        try:
            parsed = listfile.read_list(list_path, strict=False)
        except listfile.ListFormatError as exc:
            raise LibraryError(str(exc)) from None
        base = Path(base_dir) if base_dir else list_path.parent
        report = ImportReport()
        issues = {p.line: p for p in parsed.problems}
        lines = sorted({*issues, *(r.line for r in parsed.rows)})
        if not lines:
            raise LibraryError(f"{list_path}: the file has no entries")
        rows = {r.line: r for r in parsed.rows}
        for n, no in enumerate(lines):
            if cancel is not None and cancel():
                break
            if progress is not None:
                progress(n / len(lines), f"line {no}")
            row = rows.get(no)
            if row is None or no in issues:
                report.errors.append(ImportIssue(no, row.audio if row else issues[no].raw.split("|", 1)[0].strip(),
                                                 issues[no].reason))
                continue
            audio, text = row.audio, row.text
            lang = row.lang
            if lang not in languages.text_modes():
                report.errors.append(ImportIssue(no, audio, f"language {row.lang_code!r} cannot be read by this "
                                                 f"engine (use one of {', '.join(languages.text_modes())})"))
                continue
            src = Path(audio).expanduser()
            if not src.is_absolute():
                src = base / src
            if audio_allowed is not None and not audio_allowed(src):
                report.errors.append(ImportIssue(no, audio, "cannot be used: not in a folder the app may read "
                                                 "(DATA_DIRS or an upload)"))
                continue
            if not src.is_file():
                report.errors.append(ImportIssue(no, audio, f"audio file not found: {src}"))
                continue
            try:
                clip_id, outcome = self.add_clip(role_id, src, text, lang, category, manual_checked=manual_checked,
                                                 on_duplicate=on_duplicate)
            except (LibraryError, AudioError) as exc:
                report.errors.append(ImportIssue(no, audio, str(exc)))
                continue
            if outcome == "duplicate":
                report.duplicates.append(ImportIssue(no, audio, f"same audio as clip {clip_id}"))
                continue
            (report.added if outcome == "added" else report.updated).append(clip_id)
            row = self.clip(clip_id)
            if not row["valid"]:
                report.out_of_range.append(ImportIssue(no, audio, f"{row['duration']:.2f} s is outside "
                                                       f"{MIN_REF_S:g}-{MAX_REF_S:g} s"))
        if progress is not None:
            progress(1.0, report.summary())
        return report

    def export_list(self, clip_ids: Sequence[int], dest: Path, speaker: str = "") -> Path:
        """A zip of the clips plus a ``.list`` with paths relative to the zip (audio/<id><ext>), proper speaker."""
        import zipfile

        rows = self.clips(ids=clip_ids, limit=10000, sort="id", descending=False)
        if not rows:
            raise LibraryError("No clips to export.")
        role = self.role(rows[0]["role_id"])
        spk = speaker or role["name"]
        lines = []
        dest = Path(dest)
        with atomic_path(dest, fsync=False) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for r in rows:
                arc = f"audio/{r['id']}{Path(r['file']).suffix}"
                z.write(self.clip_path(r), arc)
                text = r["transcript"].replace("\n", " ").replace("\r", " ")
                lines.append(f"{arc}|{spk.replace('|', '_')}|{r['language']}|{text}")
            z.writestr(f"{spk}.list".replace("/", "_"), "\n".join(lines) + "\n")
        return dest

    # -- splitting ---------------------------------------------------------------------------------------------

    def split_clip(self, clip_id: int, segments: Sequence[dict], join: bool = False,
                   crossfade_ms: float = 10.0) -> list[int]:
        """Cut ``segments`` (dicts with ``start``, ``end`` seconds and optional ``transcript``, ``name``,
        ``category``) out of a clip. Each becomes a new clip linked by ``source_clip_id``; with ``join`` all of
        them are joined in the given order (short crossfade) into one new clip. The original stays untouched."""
        import tempfile

        from gsv_core.audio import load_audio, save_wav

        row = self.clip(clip_id)
        wav, sr = load_audio(self.clip_path(row))
        total = len(wav) / sr
        if not segments:
            raise LibraryError("Choose at least one region (start and end in seconds) to cut out.")
        pieces = []
        for k, seg in enumerate(segments, 1):
            try:
                start, end = float(seg["start"]), float(seg["end"])
            except (KeyError, TypeError, ValueError):
                raise LibraryError(f"Region {k}: give start and end in seconds.") from None
            if not (0.0 <= start < end <= total + 1e-6):
                raise LibraryError(f"Region {k}: {start:.2f}-{end:.2f} s is not inside the clip (0-{total:.2f} s) "
                                   "or is empty.")
            pieces.append((start, end, wav[int(round(start * sr)):int(round(end * sr))], seg))
        if join:
            fade = int(sr * crossfade_ms / 1000)
            out = pieces[0][2].astype(np.float32)
            for _, _, piece, _ in pieces[1:]:
                piece = piece.astype(np.float32)
                n = min(fade, len(out), len(piece))
                if n > 0:
                    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
                    out = np.concatenate([out[:-n], out[-n:] * (1 - ramp) + piece[:n] * ramp, piece[n:]])
                else:
                    out = np.concatenate([out, piece])
            first = segments[0]
            text = first.get("transcript") or " ".join(str(s.get("transcript") or "") for s in segments).strip()
            outputs = [(pieces[0][0], pieces[-1][1], out, {**first, "transcript": text})]
        else:
            outputs = pieces
        made = []
        with tempfile.TemporaryDirectory(dir=self.root) as tmp:
            for k, (start, end, audio, seg) in enumerate(outputs, 1):
                path = save_wav(Path(tmp) / f"part{k}.wav", audio, sr)
                clip, _ = self.add_clip(
                    row["role_id"], path, str(seg.get("transcript") or ""), row["language"],
                    seg.get("category") or row["category"], name=seg.get("name") or f"{row['name']}-{k}",
                    remark=str(seg.get("remark") or ""), source_clip_id=row["id"], split=(start, end),
                    on_duplicate="skip")
                made.append(clip)
        return made

    def clip_view(self, clip_id: int, marks: Sequence[float] = (),
                  regions: Sequence[tuple[float, float]] = ()) -> Path:
        """A PNG of the clip's waveform and spectrogram (split marks drawn), cached under the library."""
        from gsv_core.audio import load_audio

        from .plots import clip_view_png

        row = self.clip(clip_id)
        wav, sr = load_audio(self.clip_path(row))
        tag = hashlib.md5(repr((list(marks), list(regions))).encode()).hexdigest()[:8]
        path = self.role_dir(row["role_id"]) / "views" / f"clip{row['id']}_{tag}.png"
        return clip_view_png(wav, sr, path, marks, regions, title=f"clip {row['id']}: {row['name']}")
