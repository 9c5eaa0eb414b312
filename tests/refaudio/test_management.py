"""Library management (issue 19) through the service and ``python -m refaudio``: deleting clips (refused while a
product or task uses one, no files left behind), exporting a role as an upstream .list + audio, deleting roles,
renaming / annotating / deleting sweep tasks, editing / deleting products, the shared test-text library; every delete
only with its confirmation. Also deleting a finetune experiment (gsv_core.finetune.manage and its CLI)."""
from __future__ import annotations

import json
import sqlite3
import zipfile
from pathlib import Path

import pytest

from fakes import FakeEngine
from ra_helpers import REF_TEXT, make_wav
from refaudio.sweeps import TaskSpec


def files_under(root: Path) -> set[Path]:
    return {p for p in Path(root).rglob("*") if p.is_file()}


@pytest.fixture
def svc(settings):
    from refaudio.service import RefAudioService

    s = RefAudioService(settings, engine=FakeEngine(), auto_resume=False, score_after_run=False)
    yield s
    s.close()


@pytest.fixture
def world(svc, tmp_path, models):
    """A role with 4 clips, a finished task over clip a, a product using clip b (reference) and c (auxiliary)."""
    role = svc.create_role("m", "alice")
    a, _ = svc.library.add_clip(role, make_wav(tmp_path / "a.wav", 4.0, seed=1), REF_TEXT, "zh")
    b, _ = svc.library.add_clip(role, make_wav(tmp_path / "b.wav", 5.0, 300, seed=2), "第二句|竖线", "zh")
    c, _ = svc.library.add_clip(role, make_wav(tmp_path / "c.wav", 6.0, 250, seed=3), "third one", "en")
    d, _ = svc.library.add_clip(role, make_wav(tmp_path / "d.wav", 2.0, 350, seed=4), "短", "zh")
    task = svc.create_task(TaskSpec(role, "t", "top_k", dict(models), [("你好。", "zh")], [5, 15],
                                    ref_clip_ids=[a]))
    svc.run_task_now(task)
    item = svc.list_results(task)[0]
    pid = svc.products.save(role, "voice", models["gpt_path"], models["sovits_path"], b, [c], {"top_k": 7})
    return {"role": role, "a": a, "b": b, "c": c, "d": d, "task": task, "item": item, "product": pid}


# -- clips ------------------------------------------------------------------------------------------------------

def test_delete_clip_needs_confirmation_and_refuses_clips_in_use(svc, world):
    from refaudio.library import LibraryError
    from refaudio.service import ConfirmationRequired

    d_path = svc.clip_audio(world["d"])
    view = svc.clip_view(world["d"])  # a cached waveform view belongs to the clip too
    plot = svc.out_root / "grouping" / f"clip{world['d']}_hist.png"  # as svc.similarity() writes it
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot.write_bytes(b"png")
    with pytest.raises(ConfirmationRequired) as exc:
        svc.delete_clip(world["d"])
    assert exc.value.key == "library.confirm_delete" and d_path.is_file()
    for clip in (world["b"], world["c"]):  # the product's reference and its auxiliary reference
        with pytest.raises(LibraryError) as exc:
            svc.delete_clip(clip, confirm=True)
        assert exc.value.key == "library.clip_in_product" and "voice" in str(exc.value)
        assert svc.clip_audio(clip).is_file()
    with pytest.raises(LibraryError) as exc:
        svc.delete_clip(world["a"], confirm=True)
    assert exc.value.key == "library.clip_in_task" and str(world["task"]) in str(exc.value)
    before = files_under(svc.library_root)
    svc.delete_clip(world["d"], confirm=True)
    assert before - files_under(svc.library_root) == {d_path, view}  # its audio and its view, nothing else
    assert not plot.exists()
    assert world["d"] not in {c["id"] for c in svc.list_clips(world["role"])}
    out = svc.delete_clips([world["a"], world["b"]], confirm=True)
    assert out["deleted"] == [] and set(out["refused"]) == {world["a"], world["b"]}


def test_export_role_as_upstream_list(svc, world, tmp_path):
    from gsv_core.formats import listfile

    zpath = svc.export_role(world["role"])
    assert zpath.is_relative_to(svc.out_root / "exports") and zpath.suffix == ".zip"
    with zipfile.ZipFile(zpath) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "unz")
    assert "alice.list" in names and len([n for n in names if n.startswith("audio/")]) == 4
    rows = listfile.read_list(tmp_path / "unz" / "alice.list").rows
    assert [(r.speaker, r.lang_code) for r in rows] == [("alice", "ZH"), ("alice", "ZH"), ("alice", "EN"),
                                                        ("alice", "ZH")]
    assert rows[1].text == "第二句 竖线"  # the .list writer keeps '|' out of fields
    assert all((tmp_path / "unz" / r.audio).is_file() for r in rows)
    folder = svc.export_role(world["role"], as_zip=False, valid_only=True)
    frows = listfile.read_list(next(folder.glob("*.list"))).rows
    assert len(frows) == 3 and all(Path(r.audio).is_absolute() and Path(r.audio).is_file() for r in frows)
    # the export can be imported back into another role (the upstream format round-trips)
    other = svc.create_role("m", "copy")
    report = svc.import_list(other, next(folder.glob("*.list")))
    assert len(report.added) == 3


# -- roles ------------------------------------------------------------------------------------------------------

def test_delete_role_confirm_force_and_no_orphans(svc, world, tmp_path):
    from gsv_core.errors import GSVError
    from refaudio.service import ConfirmationRequired

    role = world["role"]
    with pytest.raises(ConfirmationRequired):
        svc.delete_role(role)
    with pytest.raises(GSVError) as exc:
        svc.delete_role(role, confirm=True)
    assert exc.value.key == "library.role_not_empty" and exc.value.params["clips"] == 4
    task_dir = svc.out_root / f"task_{world['task']}"
    assert task_dir.is_dir() and svc.library.role_dir(role).is_dir()
    out = svc.delete_role(role, confirm=True, force=True)
    assert out == {"role": "m/alice", "clips": 4, "tasks": 1, "products": 1}
    assert not task_dir.exists() and not svc.library.role_dir(role).exists()
    assert files_under(svc.library_root) == set() and not list(svc.out_root.glob("task_*"))
    for table in ("clips", "tasks", "items", "products", "roles"):
        assert svc.db.scalar(f"SELECT COUNT(*) FROM {table}") == 0
    empty = svc.create_role("m", "empty")
    assert svc.delete_role(empty, confirm=True)["clips"] == 0  # an empty role needs no --force


# -- tasks ------------------------------------------------------------------------------------------------------

def test_rename_annotate_delete_task(svc, world):
    from gsv_core.errors import GSVError
    from refaudio.service import ConfirmationRequired

    tid = world["task"]
    assert svc.rename_task(tid, "  top_k check ")["name"] == "top_k check"
    with pytest.raises(GSVError):
        svc.rename_task(tid, " ")
    assert svc.annotate_task(tid, "5 is better")["conclusion"] == "5 is better"
    pid = svc.product_from_result(world["item"]["id"], "from result")
    audio = svc.result_audio(world["item"]["id"])
    with pytest.raises(ConfirmationRequired):
        svc.delete_task(tid)
    assert audio.is_file()
    svc.delete_task(tid, confirm=True)
    assert not (svc.out_root / f"task_{tid}").exists() and not audio.exists()
    assert svc.db.scalar("SELECT COUNT(*) FROM items WHERE task_id = ?", (tid,)) == 0
    assert svc.products.product(pid)["source_item_id"] is None  # the product keeps its settings
    assert svc.library.clip_users(world["a"]) == {"products": ["from result"], "tasks": []}  # no task any more


def test_delete_running_task_is_refused(svc, world):
    from gsv_core.errors import GSVError
    from refaudio.service import JobState

    svc.queue._jobs[world["task"]] = JobState(world["task"], state="running")
    with pytest.raises(GSVError) as exc:
        svc.delete_task(world["task"], confirm=True)
    assert exc.value.key == "library.task_running"
    with pytest.raises(GSVError):
        svc.delete_role(world["role"], confirm=True, force=True)
    svc.queue._jobs.clear()


# -- products ---------------------------------------------------------------------------------------------------

def test_edit_and_delete_product(svc, world, models):
    from gsv_core.errors import GSVError
    from refaudio.products import ProductError
    from refaudio.service import ConfirmationRequired

    pid = world["product"]
    p = svc.update_product(pid, name="voice 2", remark="warm", category="calm", score="4.5",
                           params={"temperature": 0.7}, aux_clip_ids=[])
    assert (p["name"], p["remark"], p["category"], p["score"]) == ("voice 2", "warm", "calm", 4.5)
    assert p["params"]["temperature"] == 0.7 and p["params"]["top_k"] == 7 and p["aux_clip_ids"] == []
    assert svc.update_product(pid, score="")["score"] is None
    with pytest.raises(GSVError):
        svc.update_product(pid, params={"top_k": "many"})
    assert svc.products.product(pid)["params"]["top_k"] == 7  # nothing changed
    with pytest.raises(ProductError):
        svc.update_product(pid, bogus=1)
    other = svc.products.save(world["role"], "other", models["gpt_path"], models["sovits_path"], world["b"])
    with pytest.raises(GSVError) as exc:
        svc.update_product(other, name="voice 2")
    assert exc.value.key == "library.name_taken"
    svc.delete_clip(world["c"], confirm=True)  # no product uses clip c now
    with pytest.raises(ConfirmationRequired):
        svc.delete_product(pid)
    svc.delete_product(pid, confirm=True)
    assert [q["name"] for q in svc.list_products(world["role"])] == ["other"]


def test_deleting_an_imported_product_removes_its_copied_models(svc, world, settings, tmp_path):
    from refaudio.service import RefAudioService

    zpath = svc.export_products([world["product"]], include_models=True)
    other = RefAudioService(settings.__class__(**{**settings.__dict__, "refaudio_db": tmp_path / "o" / "x.db"}),
                            engine=object(), auto_resume=False)
    [pid] = other.import_products(zpath)
    p = other.products.product(pid)
    models = [Path(p["gpt_path"]), Path(p["sovits_path"])]
    assert all(m.is_file() and m.is_relative_to(other.library_root) for m in models)
    other.delete_product(pid, confirm=True)
    assert not any(m.exists() for m in models)
    other.close()


# -- test texts -------------------------------------------------------------------------------------------------

def test_test_text_library(svc, world, models):
    from gsv_core.errors import GSVError
    from refaudio.service import ConfirmationRequired

    t1 = svc.add_text("weather", "今天天气很好。", "zh", "short, daily,short", "first")
    t2 = svc.add_text("long en", "It was a bright cold day in April.", "en", ["long"])
    assert svc.texts.get(t1)["tags"] == "short, daily"
    assert [t["name"] for t in svc.list_texts()] == ["long en", "weather"]
    assert [t["id"] for t in svc.list_texts(tag="daily")] == [t1]
    assert [t["id"] for t in svc.list_texts(language="en")] == [t2]
    assert [t["id"] for t in svc.list_texts(search="april")] == [t2]
    with pytest.raises(GSVError) as exc:
        svc.add_text("weather", "x")
    assert exc.value.key == "library.name_taken"
    for bad in ({"name": " "}, {"text": ""}, {"language": "xx"}):
        with pytest.raises(GSVError):
            svc.update_text(t1, **bad)
    assert svc.update_text(t1, text="明天也很好。", tags="")["text"] == "明天也很好。"
    assert svc.text_pairs(["weather", str(t2)]) == [("明天也很好。", "zh"), ("It was a bright cold day in April.", "en")]
    # a sweep picks them, each with its own language
    spec = TaskSpec(world["role"], "lib", "none", dict(models), svc.text_pairs(["weather", "long en"]),
                    ref_clip_ids=[world["a"]])
    task = svc.create_task(spec)
    assert [(t["text"], t["language"]) for t in svc.sweeps.texts(task)] == svc.text_pairs(["weather", "long en"])
    with pytest.raises(ConfirmationRequired):
        svc.delete_text(t1)
    svc.delete_text(t1, confirm=True)
    assert [t["id"] for t in svc.list_texts()] == [t2]


def test_text_library_migration_on_an_existing_database(tmp_path):
    from refaudio import db as dbmod

    path = tmp_path / "old.sqlite3"
    old = dbmod.Database(path, migrate=False)
    saved = dbmod.MIGRATIONS[:]
    try:
        dbmod.MIGRATIONS[:] = [m for m in saved if m[0] <= 2]
        old.migrate()
    finally:
        dbmod.MIGRATIONS[:] = saved
    assert old.schema_version() == 2
    old.close()
    new = dbmod.Database(path)
    assert new.schema_version() >= 3
    new.execute("INSERT INTO test_texts (name, text) VALUES ('a', 'b')")
    with pytest.raises(sqlite3.IntegrityError):
        new.execute("INSERT INTO test_texts (name, text) VALUES ('a', 'c')")
    new.close()


# -- the CLI ----------------------------------------------------------------------------------------------------

def _cli(settings, *argv):
    from refaudio.__main__ import main

    return main(["--db", str(settings.refaudio_db), "--output-dir", str(settings.output_dir), "--no-asr", *argv])


def test_cli_management(svc, world, settings, models, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)  # no terminal: nothing is deleted without --yes
    for key in ("GSV_GPT_WEIGHT_DIRS", "GSV_SOVITS_WEIGHT_DIRS"):  # the CLI's own settings: the fixture models
        monkeypatch.setenv(key, str(Path(models["gpt_path"]).parent))
    role = "m/alice"
    # clips
    assert _cli(settings, "clip", "delete", str(world["d"])) == 2
    assert "--yes" in capsys.readouterr().err and svc.library.clip(world["d"])
    assert _cli(settings, "clip", "delete", str(world["b"]), "--yes") == 2
    assert "used by product(s) voice" in capsys.readouterr().err
    assert _cli(settings, "clip", "delete", str(world["d"]), "--yes") == 0
    assert world["d"] not in {c["id"] for c in svc.list_clips(world["role"])}
    # role export (zip and folder)
    capsys.readouterr()
    assert _cli(settings, "role", "export", role) == 0
    zpath = Path(capsys.readouterr().out.strip())
    assert zpath.suffix == ".zip" and "alice.list" in zipfile.ZipFile(zpath).namelist()
    assert _cli(settings, "role", "export", role, "--folder", "--out", str(tmp_path / "exp")) == 0
    capsys.readouterr()
    assert len((tmp_path / "exp" / "alice.list").read_text(encoding="utf-8").splitlines()) == 3
    # tasks
    tid = str(world["task"])
    assert _cli(settings, "task", "rename", tid, "renamed") == 0
    assert _cli(settings, "task", "note", tid, "k=5 wins") == 0
    capsys.readouterr()
    assert _cli(settings, "task", "list", "--role", role, "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "renamed" and listed[0]["conclusion"] == "k=5 wins"
    assert _cli(settings, "task", "delete", tid) == 2 and svc.sweeps.task(world["task"])
    assert _cli(settings, "task", "delete", tid, "--yes") == 0
    assert not (svc.out_root / f"task_{tid}").exists()
    # products
    pid = str(world["product"])
    assert _cli(settings, "product", "edit", pid, "--name", "v2", "--params", '{"top_k": 9}', "--score", "3",
                "--aux", "") == 0
    edited = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert edited["name"] == "v2" and edited["params"]["top_k"] == 9 and edited["aux_clip_ids"] == []
    assert _cli(settings, "product", "delete", pid) == 2
    assert _cli(settings, "product", "delete", pid, "--yes") == 0
    assert svc.list_products(world["role"]) == []
    # texts, and a sweep that uses one
    assert _cli(settings, "texts", "add", "hello", "你好，世界。", "--tags", "short") == 0
    assert _cli(settings, "texts", "add", "hi en", "Hello there.", "--lang", "en") == 0
    assert _cli(settings, "texts", "edit", "hello", "--note", "greeting") == 0
    capsys.readouterr()
    assert _cli(settings, "texts", "list", "--json") == 0
    texts = json.loads(capsys.readouterr().out)
    assert [(t["name"], t["note"]) for t in texts] == [("hello", "greeting"), ("hi en", "")]
    assert _cli(settings, "sweep", "create", "--role", role, "--compare", "none", "--base",
                json.dumps(models), "--refs", str(world["a"]), "--library-text", "hello",
                "--library-text", "hi en") == 0
    new_task = svc.list_tasks(world["role"])[0]["id"]
    assert [(t["text"], t["language"]) for t in svc.sweeps.texts(new_task)] == [("你好，世界。", "zh"),
                                                                                ("Hello there.", "en")]
    assert _cli(settings, "texts", "delete", "hello") == 2
    assert _cli(settings, "texts", "delete", "hello", "--yes") == 0
    assert [t["name"] for t in svc.list_texts()] == ["hi en"]
    # roles
    assert _cli(settings, "role", "delete", role, "--yes") == 2
    assert "--force" in capsys.readouterr().err
    assert _cli(settings, "role", "delete", role, "--yes", "--force") == 0
    assert svc.library.find_role("m", "alice") is None and files_under(svc.library_root) == set()


# -- finetune experiments ---------------------------------------------------------------------------------------

def test_delete_finetune_experiment(tmp_path, monkeypatch, capsys):
    import dataclasses

    from config import load_settings
    from gsv_core.finetune.manage import ExperimentDeleteError, delete_experiment

    base = load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=tmp_path / "none.py")
    sov, gpt = tmp_path / "w" / "sovits", tmp_path / "w" / "gpt"
    sov.mkdir(parents=True)
    gpt.mkdir(parents=True)
    settings = dataclasses.replace(base, experiments_dir=tmp_path / "exp", sovits_weight_dirs=(sov,),
                                   gpt_weight_dirs=(gpt,))

    def make(name):
        folder = settings.experiments_dir / name
        (folder / "data").mkdir(parents=True)
        (folder / "data" / "input.list").write_text("x|y|zh|t\n", encoding="utf-8")
        (folder / "experiment.json").write_text(json.dumps({"config": {"name": name, "version": "v2"}}),
                                                encoding="utf-8")
        (sov / f"{name}_e4_s8.pth").write_bytes(b"s")
        (gpt / f"{name}-e5.ckpt").write_bytes(b"g")
        return folder

    folder = make("voice")
    with pytest.raises(ExperimentDeleteError) as exc:
        delete_experiment(settings, "voice")
    assert exc.value.key == "library.confirm_delete" and folder.is_dir()
    with pytest.raises(ExperimentDeleteError):
        delete_experiment(settings, "voice", confirm=True, running="voice")
    with pytest.raises(Exception):
        delete_experiment(settings, "../exp", confirm=True)
    out = delete_experiment(settings, "voice", confirm=True)
    assert not folder.exists() and len(out["exports_kept"]) == 2 and (sov / "voice_e4_s8.pth").is_file()
    folder = make("other")
    out = delete_experiment(settings, "other", confirm=True, with_exports=True)
    assert not folder.exists() and len(out["exports_removed"]) == 2 and not (gpt / "other-e5.ckpt").exists()
    assert (gpt / "voice-e5.ckpt").is_file()  # another experiment's exports stay
    with pytest.raises(ExperimentDeleteError) as exc:
        delete_experiment(settings, "other", confirm=True)
    assert exc.value.key == "library.not_found"
    # the CLI
    from gsv_core.finetune import __main__ as ft_cli

    make("cli")
    monkeypatch.setattr("config.load_settings", lambda *a, **k: settings)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert ft_cli.main(["delete", "--name", "cli"]) == 2
    assert (settings.experiments_dir / "cli").is_dir()
    assert ft_cli.main(["delete", "--name", "cli", "--yes", "--exports"]) == 0
    assert not (settings.experiments_dir / "cli").exists() and not (gpt / "cli-e5.ckpt").exists()
