"""Products (export/import round trip, valid JSON with awkward transcripts, preset loading), speaker grouping,
and the CLI (import, sweep, results, score, export) through main(argv)."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from fakes import FakeEngine
from ra_helpers import make_wav, write_list
from refaudio.grouping import histogram
from refaudio.products import ProductError, load_preset
from refaudio.sweeps import TaskSpec

AWKWARD = 'He said "hi"\\ then\nleft | 走了 {"x": 1}'


def _product(svc, tmp_path, models):
    role = svc.create_role("p", 'role "quoted"')
    ref, _ = svc.library.add_clip(role, make_wav(tmp_path / "ref.wav", 4.0, seed=1), AWKWARD, "zh")
    aux, _ = svc.library.add_clip(role, make_wav(tmp_path / "aux.wav", 5.0, 300, seed=2), "辅助", "zh")
    task = svc.create_task(TaskSpec(role, "t", "speed", {**models, "aux_refs": [aux]}, [("你好。", "zh")], [0.9, 1.1],
                                    ref_clip_ids=[ref]))
    svc.run_task_now(task)
    item = svc.list_results(task, sort="cell", descending=True)[0]
    svc.set_score(item["id"], 4)
    pid = svc.product_from_result(item["id"], 'best "one"/v1', remark="line1\nline2")
    return role, ref, aux, item, pid


def test_product_export_import_round_trip(settings, tmp_path, models):
    from refaudio.service import RefAudioService

    svc = RefAudioService(settings, engine=FakeEngine(), auto_resume=False, score_after_run=False)
    role, ref, aux, item, pid = _product(svc, tmp_path, models)
    p = svc.products.product(pid)
    assert p["params"]["speed"] == 1.1 and p["params"]["seed"] == item["seed"] and p["aux_clip_ids"] == [aux]
    assert p["score"] == 4 and p["remark"] == "line1\nline2"
    with pytest.raises(ProductError, match="exists"):
        svc.product_from_result(item["id"], 'best "one"/v1')
    zpath = svc.export_products([pid], include_models=True)
    assert zpath.is_relative_to(svc.out_root)
    with zipfile.ZipFile(zpath) as z:
        names = z.namelist()
        folder = names[0].split("/")[0]
        preset = json.loads(z.read(f"{folder}/preset.json"))
        api = json.loads(z.read(f"{folder}/api_v2.json"))
        assert json.loads(z.read(f"{folder}/tts_infer.yaml")) == api["tts_infer"]
    assert "/" not in folder.replace(folder, "") and '"' not in folder
    assert preset["reference"]["text"] == AWKWARD and preset["reference"]["audio"] == "audio/ref.wav"
    assert api["request"]["prompt_text"] == AWKWARD and api["request"]["speed_factor"] == 1.1
    assert api["request"]["aux_ref_audio_paths"] == ["audio/aux_1.wav"]
    assert api["tts_infer"]["custom"]["t2s_weights_path"].startswith("models/")
    assert {f"{folder}/audio/ref.wav", f"{folder}/audio/aux_1.wav"} <= set(names)
    # load into the TTS tab's request values, from an unpacked export
    unpacked = svc.out_root / "uploads" / "unpacked"  # where the TTS tab unpacks an uploaded product zip
    with zipfile.ZipFile(zpath) as z:
        z.extractall(unpacked)
    values = load_preset(unpacked / folder)
    assert Path(values["ref_audio"]).is_file() and Path(values["gpt_path"]).is_file()
    assert values["ref_text"] == AWKWARD and values["speed"] == 1.1 and len(values["aux_refs"]) == 1
    from pages.services import Services

    fields = {k: values[k] for k in ("ref_audio", "ref_text", "ref_lang", "gpt_path", "sovits_path", "aux_refs",
                                     "split_method", "top_k", "top_p", "temperature", "repetition_penalty",
                                     "speed", "pause", "seed", "text_lang")}
    req = Services(settings, engine=object()).make_request(text="测试。", **fields)
    assert req.speed == 1.1 and req.seed == item["seed"]
    # import into a new library
    other = RefAudioService(settings.__class__(**{**settings.__dict__, "refaudio_db": tmp_path / "b" / "x.db"}),
                            engine=object(), auto_resume=False)
    [new] = other.import_products(zpath)
    q = other.products.product(new)
    assert q["name"] == p["name"] and q["params"] == p["params"] and q["role_name"] == 'role "quoted"'
    assert Path(q["gpt_path"]).is_relative_to(other.library_root)
    assert other.library.clip(q["ref_clip_id"])["transcript"] == AWKWARD
    assert other.import_products(zpath, overwrite=True) == [new]  # idempotent: same clips, same product
    assert len(other.list_clips(q["role_id"])) == 2
    # an archive with a traversal entry is refused as a whole
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../escape.txt", "x")
        z.writestr("p/preset.json", "{}")
    with pytest.raises(ProductError, match="unsafe"):
        other.import_products(evil)
    assert not (tmp_path / "escape.txt").exists()
    svc.close()
    other.close()


def test_grouping_histogram_clusters_and_move(settings, tmp_path):
    from refaudio.service import RefAudioService

    class Encoder:  # "speaker" = dominant frequency band, so two tone families form two groups
        def __call__(self, wav16):
            import torch

            x = torch.as_tensor(wav16, dtype=torch.float32).reshape(1, -1)
            return torch.fft.rfft(x[:, :8000], n=256).abs()[:, :40]

        segment_embedding = __call__  # the verification embedding grouping uses (a stand-in: the same vector)

    svc = RefAudioService(settings, engine=object(), speaker_encoder=Encoder(), auto_resume=False)
    role = svc.create_role("g", "mixed")
    low = [svc.library.add_clip(role, make_wav(tmp_path / f"l{k}.wav", 4, 200 + 3 * k, seed=k), "低", "zh")[0]
           for k in range(3)]
    high = [svc.library.add_clip(role, make_wav(tmp_path / f"h{k}.wav", 4, 2400 + 3 * k, seed=9 + k), "高", "zh")[0]
            for k in range(3)]
    sim = svc.similarity(low[0], threshold=0.8)
    scores = dict(sim["scores"])
    assert set(scores) == set(low[1:] + high) and sum(sim["counts"]) == 5
    assert min(scores[i] for i in low[1:]) > max(scores[i] for i in high)
    assert Path(sim["histogram_png"]).read_bytes()[:4] == b"\x89PNG"
    clusters = svc.cluster(role, 0.8)
    assert sorted(map(sorted, clusters)) == sorted([sorted(low), sorted(high)])
    moved = svc.move_similar(low[0], 0.8, "main")
    assert sorted(moved) == sorted(low)
    assert {c["id"] for c in svc.list_clips(role, categories=["main"])} == set(low)
    assert svc.db.scalar("SELECT COUNT(*) FROM speaker_embeddings") == 6  # cached, computed once
    counts, edges = histogram([-0.95, -0.5, 0.0, 0.99, 1.0])
    assert sum(counts) == 5 and edges[0] == -1.0 and edges[-1] == 1.0 and counts[0] == 1  # nothing dropped
    svc.close()


def test_cli_import_sweep_results_score_export(settings, tmp_path, models, monkeypatch, capsys):
    import refaudio.__main__ as cli
    import refaudio.service as service_mod

    real = service_mod.RefAudioService

    def with_fake_engine(*a, **kw):  # the CLI builds its own engine; give it the fast stand-in
        kw["engine_factory"] = FakeEngine
        return real(*a, **kw)

    monkeypatch.setattr(service_mod, "RefAudioService", with_fake_engine)
    for kind in ("GPT", "SOVITS"):  # the CLI reads the settings itself; the fixtures are its model folder
        monkeypatch.setenv(f"GSV_{kind}_WEIGHT_DIRS", str(Path(models["gpt_path"]).parent))
    make_wav(tmp_path / "src" / "a.wav", 4.0)
    lst = write_list(tmp_path / "src" / "x.list", ["a.wav|s|zh|你早上好。", "nope.wav|s|zh|缺失。"])
    base = ["--db", str(settings.refaudio_db), "--output-dir", str(settings.output_dir), "--no-asr",
            "--sv-path", str(tmp_path / "none.ckpt")]
    assert cli.main(base + ["import", "--role", "cli/voice", "--create-role", str(lst)]) == 0
    out = capsys.readouterr()
    assert "1 added" in out.out and "line 2" in out.err
    assert cli.main(base + ["clips", "--role", "cli/voice", "--json"]) == 0
    clip = json.loads(capsys.readouterr().out)[0]["id"]
    assert cli.main(base + ["sweep", "create", "--role", "cli/voice", "--compare", "top_k", "--values", "[5, 20]",
                            "--base", json.dumps(models), "--refs", str(clip), "--text", "今天天气很好。",
                            "--samples", "2", "--run"]) == 0
    assert "4 done, 0 failed" in capsys.readouterr().out
    assert cli.main(base + ["results", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and [r["duration"] for r in rows] == sorted((r["duration"] for r in rows), reverse=True)
    assert cli.main(base + ["score", "1", "--item", str(rows[0]["id"]), "--score", "5"]) == 0
    assert cli.main(base + ["product", "save", "--item", str(rows[0]["id"]), "--name", "cli preset"]) == 0
    pid = int(capsys.readouterr().out.strip().splitlines()[-1])
    out_zip = tmp_path / "exp.zip"
    assert cli.main(base + ["export", str(pid), "--out", str(out_zip)]) == 0
    assert zipfile.is_zipfile(out_zip)
    assert cli.main(base + ["results", "1", "--sort", "duration; DROP TABLE items"]) == 2
    assert "Cannot sort by" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--help"])


def test_speaker_index_caches_each_embedding_kind_apart(settings, tmp_path):
    """The 192-d verification embedding is the default; forward3 vectors of the same clips live under their own
    cache key (``<model>|<kind>``) and never mix with them."""
    import numpy as np

    from refaudio.grouping import GroupingError, SpeakerIndex
    from refaudio.service import RefAudioService

    calls = {"segment": 0, "forward3": 0}

    class Encoder:
        def __call__(self, wav16):  # forward3 stand-in: 40 values
            import torch

            calls["forward3"] += 1
            x = torch.as_tensor(wav16, dtype=torch.float32).reshape(1, -1)
            return torch.fft.rfft(x[:, :8000], n=256).abs()[:, :40]

        def segment_embedding(self, wav16):  # verification stand-in: 8 values
            calls["segment"] += 1
            return self(wav16)[:, :8] + 1.0

    svc = RefAudioService(settings, engine=object(), auto_resume=False)
    role = svc.create_role("k", "mixed")
    clips = [svc.library.add_clip(role, make_wav(tmp_path / f"c{k}.wav", 1, 200 + 50 * k, seed=k), "好", "zh")[0]
             for k in range(2)]
    enc = Encoder()
    seg = SpeakerIndex(svc.db, svc.library, lambda: enc, "model-a")
    f3 = SpeakerIndex(svc.db, svc.library, lambda: enc, "model-a", kind="forward3")
    assert seg.kind == "segment" and seg.model_key == "model-a|segment" and f3.model_key == "model-a|forward3"
    calls.update(segment=0, forward3=0)
    v_seg, v_f3 = seg.embeddings(clips), f3.embeddings(clips)
    assert {v.size for v in v_seg.values()} == {8} and {v.size for v in v_f3.values()} == {40}
    assert calls["segment"] == 2
    rows = svc.db.all("SELECT model, dim FROM speaker_embeddings ORDER BY model, clip_id")
    assert [(r["model"], r["dim"]) for r in rows] == [("model-a|forward3", 40)] * 2 + [("model-a|segment", 8)] * 2
    again = SpeakerIndex(svc.db, svc.library, lambda: enc, "model-a").embeddings(clips)  # from the cache
    assert calls["segment"] == 2 and all(np.array_equal(again[c], v_seg[c]) for c in clips)
    with pytest.raises(GroupingError, match="Unknown speaker embedding"):
        SpeakerIndex(svc.db, svc.library, lambda: enc, "model-a", kind="mean")
    svc.close()
