"""Files only inside the library and output folders; SQL built from whitelists; deletes never leave the library."""
from __future__ import annotations

import os

import pytest

from fakes import FakeEngine
from ra_helpers import REF_TEXT, make_wav
from refaudio.files import PathGuard, UnsafePathError
from refaudio.scoring import ScoringError
from refaudio.sweeps import TaskSpec
from refaudio.db import DatabaseError

ATTACKS = ["../../etc/passwd", "/etc/passwd", "roles/../../../etc/passwd", "..\\..\\etc\\passwd", "a\x00b", ""]


def test_guard_rejects_traversal_absolute_and_symlink_escape(tmp_path):
    lib, out, outside = tmp_path / "lib", tmp_path / "out", tmp_path / "secret"
    for d in (lib, out, outside):
        d.mkdir()
    (outside / "key.txt").write_text("secret")
    (lib / "ok.wav").write_bytes(b"x")
    os.symlink(outside / "key.txt", lib / "link.wav")
    os.symlink(outside, lib / "dirlink")
    guard = PathGuard([lib, out])
    assert guard.resolve("ok.wav") == (lib / "ok.wav").resolve()
    assert guard.resolve(str(lib / "ok.wav")) == (lib / "ok.wav").resolve()
    for bad in ATTACKS + ["link.wav", "dirlink/key.txt", str(outside / "key.txt")]:
        with pytest.raises(UnsafePathError):
            guard.resolve(bad)
    with pytest.raises(UnsafePathError):
        guard.resolve("ok.wav", base=outside)
    with pytest.raises(UnsafePathError):
        guard.delete_tree(lib)
    with pytest.raises(UnsafePathError):
        guard.delete_file(str(outside / "key.txt"))
    with pytest.raises(UnsafePathError):
        guard.delete_file("link.wav")
    assert (outside / "key.txt").read_text() == "secret"
    assert guard.delete_file("ok.wav") and not (lib / "ok.wav").exists()


def test_every_file_parameter_of_the_service_is_guarded(settings, tmp_path, models):
    from refaudio.service import RefAudioService

    svc = RefAudioService(settings, engine=FakeEngine(), auto_resume=False, score_after_run=False)
    role = svc.create_role("s", "r")
    clip, _ = svc.library.add_clip(role, make_wav(tmp_path / "a.wav", 4.0), REF_TEXT, "zh")
    task = svc.create_task(TaskSpec(role, "t", "none", dict(models), [("你好。", "zh")], ref_clip_ids=[clip]))
    svc.run_task_now(task)
    item = svc.list_results(task)[0]["id"]
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    for bad in ATTACKS + [str(secret)]:
        with pytest.raises(UnsafePathError):
            svc.resolve_served(bad)
        # a tampered database row cannot make the service read outside either
        with svc.db.transaction() as conn:
            conn.execute("UPDATE clips SET file = ? WHERE id = ?", (bad, clip))
            conn.execute("UPDATE items SET audio_file = ?, spectrogram_file = ? WHERE id = ?", (bad, bad, item))
        for call in (lambda: svc.clip_audio(clip), lambda: svc.result_audio(item),
                     lambda: svc.result_spectrogram(item)):
            with pytest.raises((UnsafePathError, ScoringError)):
                call()
    # deleting a clip whose row points outside never deletes that file
    with svc.db.transaction() as conn:
        conn.execute("DELETE FROM tasks")
        conn.execute("UPDATE clips SET file = ? WHERE id = ?", (str(secret), clip))
    with pytest.raises(UnsafePathError):
        svc.delete_clip(clip, confirm=True)
    assert secret.read_text() == "do not serve"
    svc.close()


def test_sql_values_are_parameters_and_sorts_whitelisted(settings, tmp_path, models):
    from refaudio.service import RefAudioService

    svc = RefAudioService(settings, engine=FakeEngine(), auto_resume=False, score_after_run=False)
    evil = 'x"; DROP TABLE clips; --'
    role = svc.create_role(evil, "Content")
    clip, _ = svc.library.add_clip(role, make_wav(tmp_path / "a.wav", 4.0), evil, "zh", category=evil)
    assert svc.list_clips(role, categories=[evil])[0]["transcript"] == evil
    assert svc.list_clips(role, transcript="'; DELETE FROM roles; --") == []
    task = svc.create_task(TaskSpec(role, evil, "none", dict(models), [(evil + "你好。", "zh")], ref_clip_ids=[clip]))
    svc.run_task_now(task)
    assert svc.list_results(task, ref_categories=[evil, "category"], remark="' OR 1=1 --") == []
    for bad in ("duration DESC; DROP TABLE items", "user_score", "1", "(SELECT name FROM sqlite_master)"):
        with pytest.raises(DatabaseError):
            svc.list_results(task, sort=bad)
    svc.set_score(svc.list_results(task)[0]["id"], 3, remark=evil)
    assert svc.list_results(task, remark=evil)[0]["remark"] == evil
    assert svc.db.scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('clips', 'items', "
                         "'roles')") == 3
    svc.close()


def test_delete_role_stays_inside_library(settings, tmp_path, models):
    from refaudio.service import RefAudioService

    svc = RefAudioService(settings, engine=FakeEngine(), auto_resume=False, score_after_run=False)
    src = make_wav(tmp_path / "keep" / "a.wav", 4.0)
    role = svc.create_role("s", "gone")
    clip, _ = svc.library.add_clip(role, src, REF_TEXT, "zh")
    task = svc.create_task(TaskSpec(role, "t", "none", dict(models), [("你好。", "zh")], ref_clip_ids=[clip]))
    svc.run_task_now(task)
    task_dir = svc.out_root / f"task_{task}"
    assert task_dir.is_dir()
    svc.delete_role(role, confirm=True, force=True)
    assert src.is_file() and not task_dir.exists() and not svc.library.role_dir(role).exists()
    assert svc.library_root.is_dir() and svc.out_root.is_dir()
    svc.close()
