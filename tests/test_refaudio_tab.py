"""The RefAudio tab in process through its api_names (gradio_client against a launched app, tiny fixture models):
create a role, import an uploaded .list, run a small sweep, score a result (persisted), save a product, load it in
the TTS tab (library and exported zip); every file-taking endpoint refuses path traversal with a readable error and
the app keeps serving."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from test_app import app_settings, serve_app

REF_TEXT = "你早上好，这是参考声音。"


def make_clip(path: Path, seconds: float, freq: float, seed: int) -> Path:
    sr = 32000
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    wav = (0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
           + 0.02 * rng.standard_normal(t.size))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav.astype(np.float32), sr)
    return path


def write_library_list(folder: Path) -> tuple[Path, list[Path]]:
    """3 clips of 3.5-5.5 s and a 1.5 s one (imported as invalid), with a .list naming them relatively."""
    wavs = [make_clip(folder / f"clip_{k}.wav", s, f, k) for k, (s, f) in
            enumerate([(3.5, 180), (4.5, 220), (5.5, 150), (1.5, 200)])]
    lst = folder / "voice.list"
    lst.write_text("".join(f"{w.name}|alice|zh|{REF_TEXT}\n" for w in wavs), encoding="utf-8")
    return lst, wavs


@pytest.fixture(scope="module")
def app(tmp_path_factory, parity_dir, tiny_assets):
    from gradio_client import Client

    root = tmp_path_factory.mktemp("ra_app")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(root / "gradio_tmp"))
    served = serve_app(app_settings(root, parity_dir, tiny_assets))
    try:
        yield {"client": Client(served.local_url, verbose=False), "services": served.gsv_services, "root": root}
    finally:
        served.close()


def v(x):
    """The value of a component output (gr.update dicts carry it under 'value')."""
    return x.get("value") if isinstance(x, dict) and x.get("__type__") == "update" else x


def _results(client, task_id, sort="duration", desc=True):
    out = client.predict(task_id, sort, desc, "done", -1, "", "", "any", "", api_name="/refaudio_results")
    return out["data"]


def _sweep_args(services, role, ref_ids, **kw):
    gpt = services.gpt_choices()[0][1]
    sovits = dict((label.split("/")[-1], v) for label, v in services.sovits_choices())["s2_v2.pth.xz"]
    values = dict(role=role, name="top_k 对比", compare="top_k", values="2, 5", grid_k="", grid_p="", grid_t="",
                  gpt_values=[], sovits_values=[], gpt=gpt, sovits=sovits, ref_ids=ref_ids, ref_categories=[],
                  aux_ids="", texts="今天天气很好。", text_lang="zh", samples=1, seed=7, top_k=15, top_p=1.0,
                  temperature=1.0, repetition_penalty=1.35, speed=1.0, split="cut1", pause=0.3, noise_scale=0.5,
                  max_tokens=10)
    values.update(kw)
    return list(values.values())


def test_role_import_sweep_score_product_and_tts_load(app, tmp_path):
    from gradio_client import handle_file

    client, services = app["client"], app["services"]
    svc = services.refaudio
    role, status = client.predict("测试", "alice", api_name="/refaudio_create_role")
    role = v(role)
    assert "测试/alice" in status and svc.library.role(role)["name"] == "alice"

    lst, wavs = write_library_list(tmp_path / "upload")
    report, clips, *_ = client.predict(role, [handle_file(str(lst))] + [handle_file(str(w)) for w in wavs], "", "default",
                                       False, api_name="/refaudio_import")
    assert "4 added" in report and "1 outside 3-10 s" in report and "line 4" in report
    rows = clips["data"]
    assert len(rows) == 4 and [r[3] for r in rows] == sorted((r[3] for r in rows), reverse=True)  # duration desc
    # the table filters: valid only, transcript search, duration range
    valid = client.predict(role, [], "", "valid", 0, 0, "duration", True, api_name="/refaudio_clips")["data"]
    assert len(valid) == 3 and all(r[4] == "yes" for r in valid)
    assert client.predict(role, [], "没有这句", "all", 0, 0, "duration", True, api_name="/refaudio_clips")["data"] == []
    short = client.predict(role, [], "参考", "all", 0, 4.0, "id", False, api_name="/refaudio_clips")["data"]
    assert [r[3] for r in short] == [3.5, 1.5]
    # relabel: two clips into "best"
    ids = [r[0] for r in valid]
    msg, *_ = client.predict(role, f"{ids[0]}, {ids[1]}", "best", [], "", "all", 0, 0, "duration", True,
                             api_name="/refaudio_relabel")
    assert "2 clip(s) moved to **best**" in msg
    assert {c["id"] for c in svc.list_clips(role, categories=["best"])} == {ids[0], ids[1]}
    # the clip view: its audio and waveform/spectrogram image come from the library
    audio, view, text, lang, checked = client.predict(ids[0], api_name="/refaudio_clip")
    assert Path(audio).stat().st_size > 0 and Path(view).stat().st_size > 0 and text == REF_TEXT

    # a small sweep: top_k 2 values x 1 text x 1 reference
    status, tasks, task_pick, task_id, role_pick = client.submit(*_sweep_args(services, role, str(ids[0])),
                                                                 api_name="/refaudio_sweep").result()
    assert "2/2 done" in status and "0 failed" in status
    # the role's label counts the new task at once (issue 12 item 7)
    assert any("1 tasks" in label for label, value in role_pick["choices"] if value == role)
    results = _results(client, task_id)
    assert len(results) == 2 and results[0][6] >= results[1][6]  # longest first
    assert {r[1] for r in results} == {"top_k=2", "top_k=5"} and len({r[5] for r in results}) == 1  # same seed
    asc = _results(client, task_id, "duration", False)
    assert [r[6] for r in asc] == sorted(r[6] for r in results) and {r[0] for r in asc} == {r[0] for r in results}

    item = results[-1][0]
    audio, spec, info, score, remark = client.predict(item, api_name="/refaudio_result")
    assert sf.info(audio).samplerate == 32000 and Path(spec).suffix == ".png" and score == -1
    assert f"Result {item}" in info and "duration" in info
    note, table = client.predict(item, 4, task_id, "duration", True, "done", -1, "", "", "any", "",
                                 api_name="/refaudio_score")
    assert "saved: 4" in note and [r[12] for r in table["data"] if r[0] == item] == [4]
    assert svc.result(item)["user_score"] == 4  # saved at once
    assert "Remark" in client.predict(item, "干净 clean", api_name="/refaudio_remark")
    assert svc.result(item)["remark"] == "干净 clean" and svc.result(item)["user_score"] == 4
    by_score = _results(client, task_id, "score", True)
    assert by_score[0][0] == item and by_score[0][12] == 4
    with pytest.raises(Exception, match="not in the list of choices"):
        client.predict(item, 9, task_id, "duration", True, "done", -1, "", "", "any", "", api_name="/refaudio_score")
    # A/B compare of the two results names the setting that differs
    *_, ab = client.predict(results[0][0], results[1][0], api_name="/refaudio_compare")
    assert "top_k" in ab and "(differs)" in ab

    # save a product from the scored result, then load it in the TTS tab
    p_info, products, _ = client.predict(role, item, "晴天", "", False, api_name="/refaudio_product_save")
    assert "晴天" in p_info and len(products["data"]) == 1
    pid = products["data"][0][0]
    loaded = client.predict(pid, api_name="/tts_load_product")
    gpt, sovits, ref_audio, aux, ref_text, ref_lang, text_lang, split, top_k, *rest = map(v, loaded)
    seed, random_seed, _, note = rest[-4:]
    it = svc.result(item)
    # the dropdowns get list labels (no server paths in the page) that name the result's files
    assert services.check_model_path(gpt, "GPT") == it["params"]["gpt_path"]
    assert services.check_model_path(sovits, "SoVITS") == it["params"]["sovits_path"]
    assert ref_text == REF_TEXT and ref_lang == "zh" and top_k == it["params"]["top_k"] and seed == it["seed"]
    assert random_seed is False and "晴天" in note
    assert Path(ref_audio).read_bytes() == svc.clip_audio(ids[0]).read_bytes()
    # the loaded values make a valid TTS request (the page sends the clip back as the library file it served;
    # this client's downloaded copy is not a server file the app may read)
    req = services.make_request(text="你好。", ref_audio=str(svc.clip_audio(ids[0])), ref_text=ref_text, gpt_path=gpt, sovits_path=sovits,
                                top_k=top_k, seed=seed, split_method=split)
    assert req.seed == it["seed"] and req.top_k == it["params"]["top_k"]

    # export the product as a zip, and load that zip in the TTS tab
    zip_path, msg = client.predict([pid], False, api_name="/refaudio_product_export")
    names = zipfile.ZipFile(zip_path).namelist()
    assert any(n.endswith("/preset.json") for n in names) and any(n.endswith("/api_v2.json") for n in names)
    from_zip = client.predict(handle_file(zip_path), api_name="/tts_load_preset")
    from_zip = [v(x) for x in from_zip]
    assert from_zip[0] == gpt and from_zip[8] == top_k and from_zip[-4] == it["seed"]
    assert Path(from_zip[2]).read_bytes() == Path(ref_audio).read_bytes()

    # long-text stage from the scored result: same settings and seed, a new task
    long_info, _, _, long_rows = client.predict(role, item, task_id, "今天天气很好。我们去公园散步吧！", "zh",
                                                api_name="/refaudio_long_text")
    assert "1/1 done" in long_info and long_rows["data"][0][5] == it["seed"]


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


def test_path_traversal_refused_and_app_keeps_serving(app, tmp_path):
    from gradio_client import handle_file

    client, svc = app["client"], app["services"].refaudio
    role = v(client.predict("safety", "bob", api_name="/refaudio_create_role")[0])
    # the .list path field
    # the .list path field: the one path policy; a refusal reads the same whether the file exists or not
    data = app["root"] / "data"
    data.mkdir(exist_ok=True)
    for path, message in (("../../etc/passwd.list", "cannot be used"), ("/etc/passwd", "cannot be used"),
                          (str(tmp_path / "missing.list"), "cannot be used"),
                          (str(data / "missing.list"), "does not exist")):
        with pytest.raises(Exception, match=message) as err:
            client.predict(role, None, path, "default", False, api_name="/refaudio_import")
        assert "root:" not in str(err.value)
    # an uploaded zip with an escaping entry
    evil = _zip(tmp_path / "evil.zip", {"../evil.list": b"a.wav|x|zh|text\n"})
    with pytest.raises(Exception, match="unsafe entry"):
        client.predict(role, [handle_file(str(evil))], "", "default", False, api_name="/refaudio_import")
    assert not (app["root"] / "output" / "refaudio" / "uploads" / "evil.list").exists()
    # an uploaded .list whose row climbs out with '..': that row is refused, the good row imported
    good = make_clip(tmp_path / "good.wav", 4.0, 190, 3)
    lst = tmp_path / "climb.list"
    lst.write_text(f"../../../../etc/hostname|x|zh|text\n{good.name}|x|zh|{REF_TEXT}\n", encoding="utf-8")
    report, *_ = client.predict(role, [handle_file(str(lst)), handle_file(str(good))], "", "default", False,
                                api_name="/refaudio_import")
    assert "1 added" in report and "line 1" in report and "absolute path or '..'" in report
    # product import and the TTS preset loader: escaping zip entries, and a preset naming a file outside its folder
    with pytest.raises(Exception, match="unsafe entry"):
        client.predict(role, handle_file(str(evil)), False, api_name="/refaudio_product_import")
    with pytest.raises(Exception, match="unsafe entry"):
        client.predict(handle_file(str(evil)), api_name="/tts_load_preset")
    preset = {"format": "gsv-playground-preset", "format_version": 1, "name": "x",
              "models": {"gpt": {"file": None, "name": "a", "source_path": str(tmp_path / "none.ckpt")},
                         "sovits": {"file": None, "name": "b", "source_path": str(tmp_path / "none.pth")}},
              "reference": {"audio": "../../../etc/passwd", "text": "t", "language": "zh"}, "params": {}}
    outside = _zip(tmp_path / "outside.zip", {"p/preset.json": json.dumps(preset).encode()})
    with pytest.raises(Exception, match="not in this app's model folders"):  # a source_path outside: refused
        client.predict(handle_file(str(outside)), api_name="/tts_load_preset")
    svcs = app["services"]
    preset["models"] = {k: {"file": None, "name": k, "source_path": svcs.check_model_path(choices()[0][1], kind)}
                        for k, kind, choices in (("gpt", "GPT", svcs.gpt_choices), ("sovits", "SoVITS", svcs.sovits_choices))}
    outside = _zip(tmp_path / "outside2.zip", {"p/preset.json": json.dumps(preset).encode()})
    with pytest.raises(Exception, match="Unsafe path"):
        client.predict(handle_file(str(outside)), api_name="/tts_load_preset")
    with pytest.raises(Exception, match="Unsafe path"):
        client.predict(role, handle_file(str(outside)), False, api_name="/refaudio_product_import")
    # ids that do not exist give readable errors too
    with pytest.raises(Exception, match="no clip with id 99999"):
        client.predict(99999, api_name="/refaudio_clip")
    with pytest.raises(Exception, match="no result with id 99999"):
        client.predict(99999, api_name="/refaudio_result")
    # nothing outside the library and output folders is served
    with pytest.raises(Exception):
        svc.resolve_served("/etc/passwd")
    # still serving
    rows = client.predict(role, [], "", "all", 0, 0, "duration", True, api_name="/refaudio_clips")["data"]
    assert len(rows) == 1


def test_sweep_model_paths_outside_the_weight_folders_are_refused(tmp_path, parity_dir):
    """The model-folder rule lives in RefAudioService.create_task: the tab and ``python -m refaudio sweep create``
    refuse a model outside the model folders alike (issue 13)."""
    import os
    import shutil
    import subprocess
    import sys

    from config import load_settings
    from gsv_core.errors import GSVError
    from refaudio.service import RefAudioService
    from refaudio.sweeps import TaskSpec, sweep_model_paths

    base = {"gpt_path": "w/g.ckpt", "sovits_path": "w/s.pth"}
    found = sweep_model_paths(TaskSpec(1, "t", "models", base, [("x", "zh")], [["w/g2.ckpt", "w/s2.pth"]]))
    assert ("GPT", "w/g2.ckpt") in found and ("SoVITS", "w/s2.pth") in found and ("GPT", "w/g.ckpt") in found
    full = sweep_model_paths(TaskSpec(1, "t", "full", base, [("x", "zh")], {"sovits_path": ["z.pth"], "top_k": [5]}))
    assert ("SoVITS", "z.pth") in full

    env = {"GSV_HOME": str(tmp_path), "GSV_REFAUDIO_DB": str(tmp_path / "ra" / "lib.sqlite3"),
           "GSV_GPT_WEIGHT_DIRS": str(tmp_path / "weights"), "GSV_SOVITS_WEIGHT_DIRS": str(tmp_path / "weights")}
    (tmp_path / "weights").mkdir()
    inside = {"gpt_path": str(tmp_path / "weights" / "g.ckpt"), "sovits_path": str(tmp_path / "weights" / "s.pth")}
    shutil.copy(parity_dir / "s1_v2.ckpt", inside["gpt_path"])
    shutil.copy(parity_dir / "s2_v2.pth.xz", inside["sovits_path"])
    outside = str(parity_dir / "s1_v2.ckpt")  # a real checkpoint, but not in a model folder
    svc = RefAudioService(load_settings(environ=env, my_config=tmp_path / "none.py"), engine=object(),
                          auto_resume=False)
    try:
        role = svc.create_role("c", "n")
        for compare, values in (("gpt_path", [outside]), ("models", [[outside, inside["sovits_path"]]]),
                                ("full", {"gpt_path": [outside], "top_k": [5]})):
            with pytest.raises(GSVError, match="is not one of the listed models"):
                svc.create_task(TaskSpec(role, "t", compare, inside, [("你好。", "zh")], values))
    finally:
        svc.close()
    cli_env = dict(os.environ, GSV_MY_CONFIG=str(tmp_path / "none.py"), **env)
    out = subprocess.run([sys.executable, "-m", "refaudio", "--no-asr", "sweep", "create", "--role", "c/n",
                          "--compare", "top_k", "--values", "[5, 15]", "--base",
                          json.dumps({"gpt_path": outside, "sovits_path": inside["sovits_path"]}), "--text", "你好。"],
                         cwd=Path(__file__).resolve().parents[1], env=cli_env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "is not one of the listed models" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_a_chinese_browser_reads_the_tab_in_chinese(app):
    """Issue #19: the statuses, choice labels and errors of the tab follow the browser's language."""
    from gradio_client import Client

    from pages import i18n

    zh = Client(app["client"].src, verbose=False, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    role, status = zh.predict("语言", "小明", api_name="/refaudio_create_role")
    assert "角色 **语言/小明** 已就绪" in status and "ready" not in status
    assert any("个片段" in label for label, value in role["choices"] if value == v(role))
    with pytest.raises(Exception, match="请先选择片段") as err:
        zh.predict(v(role), "", "x", [], "", "all", 0, 0, "duration", True, api_name="/refaudio_relabel")
    with pytest.raises(Exception, match="不是数字"):
        zh.predict(v(role), "3, x", "x", [], "", "all", 0, 0, "duration", True, api_name="/refaudio_relabel")
    assert "Select clips first" not in str(err.value)
    # the English browser of the other tests reads the same actions in English
    _, status = app["client"].predict("语言", "小红", api_name="/refaudio_create_role")
    assert "ready" in status
    # every static label is in both tables, Chinese on the Chinese side
    assert i18n.EN[i18n.T("Sweep", "参数对比").key] == "Sweep" and "参数对比" in i18n.ZH.values()
    assert {"素材库", "结果", "预设", "基础参数", "说话人分组"} <= set(i18n.ZH.values())
