"""Library database: migrations, pragmas, .list import (idempotent, reported rows, 3-10 s rule), concurrency,
re-labelling, search, splitting, persistence."""
from __future__ import annotations

import multiprocessing as mp
import sqlite3
import threading
from pathlib import Path

import pytest

from ra_helpers import make_wav, write_list
from refaudio.db import Database, DatabaseError
from refaudio.library import LibraryError


def _list(tmp: Path) -> Path:
    make_wav(tmp / "src" / "a.wav", 4.0, 200, seed=1)
    make_wav(tmp / "src" / "b.flac", 5.0, 260, seed=2)
    make_wav(tmp / "src" / "short.wav", 1.5, 300, seed=3)
    make_wav(tmp / "src" / "long.wav", 11.0, 180, seed=4)
    return write_list(tmp / "src" / "clips.list", [
        "a.wav|spk|ZH|第一句话。",
        f"{tmp / 'src' / 'b.flac'}|spk|zh|带竖线|的文本",
        "short.wav|spk|zh|太短了。",
        "long.wav|spk|zh|太长了。",
        "missing.wav|spk|zh|找不到。",
        "a.wav|spk|zh",
        "a.wav|spk|fr|une phrase",
        "a.wav|spk|zh|   ",
        "",
    ])


def test_migrations_idempotent_wal_foreign_keys(tmp_path):
    db = Database(tmp_path / "x.sqlite3")
    assert db.schema_version() == 3  # 1: the tables; 2: tasks.phase (a sweep interrupted while scoring resumes);
    # 3: the test-text library
    assert db.migrate() == []
    assert db.scalar("PRAGMA journal_mode") == "wal"
    assert db.scalar("PRAGMA foreign_keys") == 1
    with pytest.raises(sqlite3.IntegrityError):
        with db.transaction() as conn:
            conn.execute("INSERT INTO clips (role_id, name, md5) VALUES (999, 'x', 'y')")
    db.close()
    again = Database(tmp_path / "x.sqlite3")
    assert again.migrate() == [] and again.scalar("SELECT COUNT(*) FROM schema_migrations") == 3


def test_import_reports_rows_and_reimport_is_idempotent(service, tmp_path):
    lst = _list(tmp_path)
    role = service.create_role("动漫", "角色-A")
    assert service.create_role("动漫", "角色-A") == role  # idempotent, '-' kept
    assert service.library.role(role)["name"] == "角色-A"
    rep = service.import_list(role, lst)
    assert len(rep.added) == 4
    reasons = {e.line: e.reason for e in rep.errors}
    assert set(reasons) == {5, 6, 7, 8}
    assert "not found" in reasons[5] and "found 3" in reasons[6] and "'fr'" in reasons[7]
    assert "the text is empty" in reasons[8]
    assert sorted(Path(i.path).name for i in rep.out_of_range) == ["long.wav", "short.wav"]
    clips = service.list_clips(role)
    assert [round(c["duration"]) for c in clips] == [11, 5, 4, 2]  # default: duration, longest first
    by_name = {c["name"]: c for c in clips}
    assert by_name["b"]["transcript"] == "带竖线|的文本" and by_name["b"]["file"].endswith(".flac")
    assert by_name["a"]["valid"] == 1 and by_name["short"]["valid"] == 0 and by_name["long"]["valid"] == 0
    for c in clips:  # stored by id, inside the library
        path = service.clip_audio(c["id"])
        assert path.name == f"{c['id']}{Path(c['file']).suffix}" and path.is_relative_to(service.library_root)
    files_before = sorted(p.name for p in (service.library.role_dir(role) / "clips").iterdir())
    rep2 = service.import_list(role, lst)
    assert rep2.added == [] and len(rep2.duplicates) == 4
    assert len(service.list_clips(role)) == 4
    assert sorted(p.name for p in (service.library.role_dir(role) / "clips").iterdir()) == files_before
    rep3 = service.import_list(role, lst, on_duplicate="update", category="clean")
    assert len(rep3.updated) == 4 and {c["category"] for c in service.list_clips(role)} == {"clean"}


def test_relabel_search_filter_and_delete(service, tmp_path):
    role = service.create_role("c", "r")
    service.import_list(role, _list(tmp_path))
    clips = service.list_clips(role)
    ids = [c["id"] for c in clips]
    assert service.relabel(ids[:2], "calm") == 2
    assert "calm" in service.categories(role) and "default" in service.categories(role)
    assert {c["id"] for c in service.list_clips(role, categories=["calm"])} == set(ids[:2])
    assert [c["name"] for c in service.list_clips(role, transcript="竖线")] == ["b"]
    assert all(c["valid"] for c in service.list_clips(role, valid=True))
    assert [c["name"] for c in service.list_clips(role, sort="name", descending=False)] == ["a", "b", "long", "short"]
    updated = service.update_clip(ids[0], transcript="新的文本", manual_checked=True)
    assert updated["transcript"] == "新的文本" and updated["manual_checked"] == 1
    path = service.clip_audio(ids[0])
    service.delete_clip(ids[0], confirm=True)
    assert not path.exists() and len(service.list_clips(role)) == 3


def test_split_clip_makes_linked_subclips(service, tmp_path):
    role = service.create_role("c", "split")
    clip, _ = service.library.add_clip(role, make_wav(tmp_path / "long.wav", 12.0), "一段很长的话", "zh")
    parts = service.split_clip(clip, [{"start": 0.5, "end": 4.0, "transcript": "前半"},
                                      {"start": 5.0, "end": 9.5, "transcript": "后半"}])
    rows = [service.library.clip(p) for p in parts]
    assert [r["source_clip_id"] for r in rows] == [clip, clip]
    assert [round(r["duration"], 2) for r in rows] == [3.5, 4.5] and all(r["valid"] for r in rows)
    assert (rows[0]["split_start"], rows[0]["split_end"]) == (0.5, 4.0)
    joined = service.split_clip(clip, [{"start": 0, "end": 2}, {"start": 3, "end": 5, "transcript": "x"}], join=True)
    assert len(joined) == 1 and abs(service.library.clip(joined[0])["duration"] - 3.99) < 0.02
    with pytest.raises(LibraryError, match="not inside"):
        service.split_clip(clip, [{"start": 11, "end": 13}])
    assert service.library.clip(clip)["duration"] == pytest.approx(12.0)
    view = service.clip_view(clip, marks=[4.0], regions=[(0.5, 4.0)])
    assert view.read_bytes()[:4] == b"\x89PNG" and view.is_relative_to(service.library_root)


def _writer_process(db_path: str, start: int, n: int) -> None:
    db = Database(db_path)
    for k in range(start, start + n):
        with db.transaction() as conn:
            conn.execute("INSERT INTO roles (category, name) VALUES (?, ?)", ("proc", f"r{k}"))
    db.close()


def test_concurrent_writers_threads_and_processes(tmp_path):
    path = tmp_path / "c.sqlite3"
    db = Database(path)
    errors = []

    def writer(t):
        try:
            for k in range(40):
                with db.transaction() as conn:
                    n = conn.execute("SELECT COUNT(*) FROM roles").fetchone()[0]
                    conn.execute("INSERT INTO roles (category, name) VALUES (?, ?)", ("thread", f"{t}-{k}-{n}"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer_process, args=(str(path), 1000 * (p + 1), 30)) for p in range(2)]
    for x in threads + procs:
        x.start()
    for x in threads + procs:
        x.join(120)
    assert not errors, errors
    assert [p.exitcode for p in procs] == [0, 0]
    assert db.scalar("SELECT COUNT(*) FROM roles WHERE category = 'thread'") == 160
    assert db.scalar("SELECT COUNT(*) FROM roles WHERE category = 'proc'") == 60


def test_same_list_imported_concurrently_gives_no_duplicates(settings, tmp_path):
    from refaudio.service import RefAudioService

    lst = _list(tmp_path)
    a = RefAudioService(settings, engine=object(), auto_resume=False)
    b = RefAudioService(settings, engine=object(), auto_resume=False)
    role = a.create_role("c", "dup")
    reports = []
    threads = [threading.Thread(target=lambda s=s: reports.append(s.import_list(role, lst))) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(r.added) for r in reports) == 4 and len(a.list_clips(role)) == 4
    a.close()
    b.close()


def test_sort_whitelist_and_literal_names(service):
    evil = 'x"; DROP TABLE clips; --'
    role = service.create_role(evil, evil)
    service.library.add_category(role, evil)
    assert service.library.role(role)["category"] == evil
    assert evil in service.categories(role)
    assert service.list_clips(role, categories=[evil, "Content", "name"]) == []
    for bad in ("duration; DROP TABLE clips", "id DESC, (SELECT 1)", "nope"):
        with pytest.raises(DatabaseError, match="Cannot sort by"):
            service.list_clips(role, sort=bad)
    assert service.db.scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'clips'") == 1
