"""The app in process: every TTS action through its api_name with gradio_client against a launched app, on the tiny
fixture checkpoints and tiny BERT/HuBERT/SV models; bad input gives a readable error and the app keeps serving."""
from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from config import load_settings

TEXT = "今天天气很好。我们去公园散步吧！"
REF_TEXT = "你早上好，这是参考声音。"
TOKENS = 12


def app_settings(root: Path, parity_dir: Path, tiny_assets: dict, with_models: bool = True):
    """Settings rooted in ``root`` with copies of the fixture checkpoints in the weight folders."""
    gpt_dir, sovits_dir = root / "weights" / "gpt", root / "weights" / "sovits"
    gpt_dir.mkdir(parents=True, exist_ok=True)
    sovits_dir.mkdir(parents=True, exist_ok=True)
    if with_models:
        shutil.copy(parity_dir / "s1_v2.ckpt", gpt_dir / "s1_v2.ckpt")
        for name in ("s2_v2.pth.xz", "s2_v2ProPlus.pth.xz"):
            shutil.copy(parity_dir / name, sovits_dir / name)
    base = load_settings(environ={"GSV_HOME": str(root)}, my_config=root / "no_my_config.py")
    return dataclasses.replace(
        base, bert_dir=Path(tiny_assets["bert"]), hubert_dir=Path(tiny_assets["hubert"]), sv_path=Path(tiny_assets["sv"]),
        gpt_weight_dirs=(gpt_dir,), sovits_weight_dirs=(sovits_dir,), device="cpu", precision="fp32",
        data_dirs=(*base.data_dirs, Path(tiny_assets["ref"]).parent),  # the test references are server files
    )


def serve_app(settings):
    """The app built for ``settings`` and launched in this process on a free loopback port (call .close())."""
    from pages.app import build_app, launch_kwargs

    app = build_app(settings)
    app.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True,
                       **launch_kwargs(settings))
    return app


def write_wav(path: Path, seconds: float, sr: int = 32000, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wav = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(len(t))
    sf.write(path, wav.astype(np.float32), sr)
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory, parity_dir, tiny_assets):
    import os

    from gradio_client import Client

    root = tmp_path_factory.mktemp("app")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(root / "gradio_tmp"))
    settings = app_settings(root, parity_dir, tiny_assets)
    app = serve_app(settings)
    try:
        client = Client(app.local_url, verbose=False)
        yield {"app": app, "client": client, "root": root, "settings": settings, "services": app.gsv_services}
    finally:
        app.close()


def _params(served, tiny_assets, **kw):
    from gradio_client import handle_file

    services = served["services"]
    gpt = services.gpt_choices()[0][1]
    sovits = dict((label.split("/")[-1], v) for label, v in services.sovits_choices())["s2_v2.pth.xz"]
    values = dict(gpt=gpt, sovits=sovits, ref_audio=handle_file(str(tiny_assets["ref"])), ref_text=REF_TEXT,
                  ref_lang="zh", aux_refs=[], text=TEXT, text_lang="zh", split="cut5", top_k=15, top_p=1.0,
                  temperature=1.0, repetition_penalty=1.35, speed=1.0, pause=0.3, seed=1234, random_seed=False,
                  max_tokens=TOKENS, noise_scale=0.5, batch_size=8, parallel=True)
    values.update(kw)
    return list(values.values())


def test_model_lists_and_versions(served):
    services = served["services"]
    assert [label for label, _ in services.gpt_choices()] == ["gpt/s1_v2.ckpt"]
    assert [label for label, _ in services.sovits_choices()] == ["sovits/s2_v2.pth.xz", "sovits/s2_v2ProPlus.pth.xz"]
    info = served["client"].predict(services.gpt_choices()[0][1], services.sovits_choices()[1][1],
                                    api_name="/tts_info_gpt")
    assert "GPT (s1) weights" in info and "v2ProPlus" in info


def test_tts_seed_history_and_reuse(served, tiny_assets):
    client = served["client"]
    audio, info, download, seed_used, history, pick = client.predict(*_params(served, tiny_assets), api_name="/tts")
    data, sr = sf.read(audio)
    assert sr == 32000 and len(data) > 0 and np.abs(data).max() > 0
    assert seed_used == 1234 and "seed 1234" in info and "RTF" in info
    # the same seed gives the same audio; a random seed is reported and recorded
    audio2, *_ = client.predict(*_params(served, tiny_assets), api_name="/tts")
    assert np.array_equal(sf.read(audio2)[0], data)
    _, info3, _, seed3, history3, pick3 = client.predict(*_params(served, tiny_assets, random_seed=True), api_name="/tts")
    assert f"seed {int(seed3)}" in info3
    entries = served["services"].history.entries()
    assert entries[0].seed == int(seed3) and entries[1].seed == 1234 and len(history3["data"]) >= 3
    replay_audio, replay_info = client.predict(entries[1].id, api_name="/history_replay")
    assert np.array_equal(sf.read(replay_audio)[0], data) and "seed 1234" in replay_info
    restored = client.predict(entries[0].id, api_name="/history_reuse")
    from pages.tts import REUSE_KEYS

    keys = [*REUSE_KEYS, "random_seed"]
    values = dict(zip(keys, restored))
    assert values["text"] == TEXT and values["seed"] == int(seed3) and values["random_seed"] is False
    assert values["noise_scale"] == 0.5 and values["batch_size"] == 8 and values["parallel"] is True


def test_ab_same_seed_two_model_pairs(served, tiny_assets):
    services = served["services"]
    gpt, (sov_a, sov_b) = services.gpt_choices()[0][1], [v for _, v in services.sovits_choices()]
    a, info_a, b, info_b, seed, *_ = served["client"].predict(*_params(served, tiny_assets, random_seed=True), gpt,
                                                             sov_b, api_name="/tts_ab")
    assert f"seed {int(seed)}" in info_a and f"seed {int(seed)}" in info_b
    assert "s2_v2.pth" in info_a and "s2_v2ProPlus" in info_b and "RTF" in info_b
    wa, wb = sf.read(a)[0], sf.read(b)[0]
    assert len(wa) > 0 and len(wb) > 0 and not np.array_equal(wa[: len(wb)], wb[: len(wa)])
    # B alone with the same seed is what the A/B run gave for B
    alone, *_ = served["client"].predict(*_params(served, tiny_assets, sovits=sov_b, seed=int(seed)), api_name="/tts")
    np.testing.assert_allclose(sf.read(alone)[0], wb, atol=2e-4)


def test_stream_matches_whole(served, tiny_assets):
    services = served["services"]
    req = services.make_request(text=TEXT, ref_audio=str(tiny_assets["ref"]), ref_text=REF_TEXT,
                                gpt_path=services.gpt_choices()[0][1], sovits_path=services.sovits_choices()[0][1],
                                split_method="cut5", seed=7, max_tokens=TOKENS)
    whole = services.synthesize(req).result
    for mode, pieces in (("fragments", 2), ("tokens", None)):
        chunks, done = [], None
        for chunk, gen in services.stream(req, mode=mode, chunk_tokens=8):
            if chunk is not None:
                chunks.append(chunk)
            else:
                done = gen
        assert all(sr == 32000 and a.dtype == np.int16 for sr, a in chunks)
        assert len(chunks) == (pieces or len(chunks)) and len(chunks) >= 2
        if mode == "tokens":
            assert len(chunks) > 2  # pieces inside the fragments
        streamed = sf.read(done.entry.file, dtype="int16")[0]
        assert len(streamed) == len(whole.int16())
        if mode == "fragments":
            np.testing.assert_allclose(streamed.astype(np.float32), whole.int16().astype(np.float32), atol=8)
    # the streaming endpoint answers through the API as well (stream mode and chunk size are its last inputs)
    job = served["client"].submit(*_params(served, tiny_assets, seed=7, sample_steps=0, super_sampling=False),
                                  "fragments", 24, api_name="/tts_stream")
    assert "streamed 2 piece(s)" in job.result()[1]
    job = served["client"].submit(*_params(served, tiny_assets, seed=7, sample_steps=0, super_sampling=False),
                                  "tokens", 8, api_name="/tts_stream")
    final = job.result()[1]
    assert "first audio after" in final and "streamed 2 piece(s)" not in final


def test_batch_export_and_malformed_csv(served, tiny_assets, tmp_path):
    from gradio_client import handle_file

    good = tmp_path / "lines.csv"
    good.write_text("id,text\nl1,今天天气很好。\nl2,我们去公园散步吧！\nl3,[pause=x]\nl4,\n", encoding="utf-8")
    info, results, zipped, table = served["client"].predict(handle_file(str(good)),
                                                            *_params(served, tiny_assets), api_name="/tts_batch")
    rows = list(csv.DictReader(open(results, encoding="utf-8")))
    assert [r["status"] for r in rows] == ["ok", "ok", "error", "error"] and "pause" in rows[2]["error"]
    assert "the text is empty" in rows[3]["error"]  # one empty row fails alone; the batch goes on
    assert all(float(r["duration_s"]) > 0 and r["seed"] == "1234" and "s1_v2" in r["gpt"] for r in rows[:2])
    assert "2 of 4 line(s)" in info and "l3" in info
    # random weights never emit EOS: every line ran into the token cap, and the summary says so
    assert all("token cap" in r["warning"] for r in rows[:2]) and "⚠ check" in info
    import zipfile

    assert sorted(zipfile.ZipFile(zipped).namelist()) == ["l1.wav", "l2.wav", "results.csv"]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,words\na,b\n", encoding="utf-8")
    with pytest.raises(Exception, match="must contain the columns id and text") as err:
        served["client"].predict(handle_file(str(bad)), *_params(served, tiny_assets), api_name="/tts_batch")
    assert "bad.csv" in str(err.value) and "gradio" not in str(err.value)  # the upload's name, not its temp path
    assert served["client"].predict(api_name="/tts_batch_cancel") == "No batch is running."


def test_batch_cancel_stops_between_lines(served, tiny_assets, tmp_path):
    services = served["services"]
    lines = tmp_path / "many.csv"
    lines.write_text("id,text\n" + "".join(f"n{i},今天天气很好。\n" for i in range(6)), encoding="utf-8")
    req = services.make_request(text="", ref_audio=str(tiny_assets["ref"]), ref_text=REF_TEXT,
                                gpt_path=services.gpt_choices()[0][1], sovits_path=services.sovits_choices()[0][1],
                                seed=3, max_tokens=TOKENS, for_batch=True)
    seen = []

    def progress(frac, desc):
        seen.append(desc)
        if len(seen) == 2:
            assert services.cancel("job-1")

    outcome = services.run_batch(req, lines, key="job-1", progress=progress)
    assert outcome.cancelled and 1 <= len(outcome.rows) < 6 and "cancelled" in outcome.summary()
    assert not services.cancel("job-1")


@pytest.mark.parametrize("case, message", [
    ("empty_text", "the text is empty"),
    ("short_ref", "too short"),
    ("long_ref", "too long"),
    ("corrupt_ref", "corrupt"),
    ("no_ref", "No reference audio"),
    ("bad_tag", "pause"),
])
def test_bad_inputs_give_readable_errors_and_app_keeps_serving(served, tiny_assets, tmp_path, case, message):
    from gradio_client import handle_file

    kw = {}
    if case == "empty_text":
        kw["text"] = "   "
    elif case == "short_ref":
        kw["ref_audio"] = handle_file(str(write_wav(tmp_path / "short.wav", 1.0)))
    elif case == "long_ref":
        kw["ref_audio"] = handle_file(str(write_wav(tmp_path / "long.wav", 30.0)))
    elif case == "corrupt_ref":
        bad = tmp_path / "corrupt.wav"
        bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" + bytes(200))
        kw["ref_audio"] = handle_file(str(bad))
    elif case == "no_ref":
        kw["ref_audio"] = None
    elif case == "bad_tag":
        kw["text"] = "今天[pause=abc]天气"
    with pytest.raises(Exception) as err:
        served["client"].predict(*_params(served, tiny_assets, **kw), api_name="/tts")
    assert message.lower() in str(err.value).lower()
    audio, *_ = served["client"].predict(*_params(served, tiny_assets), api_name="/tts")  # still serving
    assert Path(audio).is_file()


def test_no_models_present(tmp_path, parity_dir, tiny_assets):
    from pages.services import Services

    services = Services(app_settings(tmp_path, parity_dir, tiny_assets, with_models=False))
    assert services.gpt_choices() == [] and "No GPT model and no SoVITS model found" in services.no_models_message()
    assert "Open the Models tab" in services.no_models_message()  # no folder paths (issue 19)
    from gsv_core.errors import GSVError

    with pytest.raises(GSVError, match="No GPT model and no SoVITS model found"):
        services.make_request(text="你好", ref_audio=str(tiny_assets["ref"]), gpt_path=None, sovits_path=None)


def test_downloaded_base_models_are_listed(tmp_path, parity_dir, tiny_assets):
    """Issue 12 item 2: the base models `python -m gsv_core.download --version v2ProPlus` puts in the pretrained
    folder appear in the model lists (zero-shot synthesis without finetuned weights), once each, after the
    finetuned weights; the model-folder rule accepts them."""
    from pages.services import Services

    settings = app_settings(tmp_path, parity_dir, tiny_assets, with_models=False)
    pm = Path(settings.pretrained_dir)
    (pm / "v2Pro").mkdir(parents=True)
    shutil.copy(parity_dir / "s1_v2.ckpt", pm / "s1v3.ckpt")  # shared by v2Pro and v2ProPlus
    shutil.copy(parity_dir / "s2_v2ProPlus.pth.xz", pm / "v2Pro" / "s2Gv2ProPlus.pth")
    services = Services(settings)
    (label, value), = services.gpt_choices()
    assert label == value and label.startswith("pretrained v2Pro/v2ProPlus") and label.endswith(" · s1v3.ckpt")
    assert str(pm) not in value  # the value is the label: no server path in the page
    assert services.check_model_path(label, "GPT") == str((pm / "s1v3.ckpt").resolve())
    assert [label for label, _ in services.sovits_choices()] == ["pretrained v2ProPlus · s2Gv2ProPlus.pth"]
    assert services.no_models_message() == ""
    shutil.copy(parity_dir / "s2_v2.pth.xz", Path(settings.sovits_weight_dirs[0]) / "voice.pth")
    labels = [label for label, _ in services.sovits_choices()]
    assert labels == ["sovits/voice.pth", "pretrained v2ProPlus · s2Gv2ProPlus.pth"]
    req = services.make_request(text="你好。", ref_audio=str(tiny_assets["ref"]), ref_text="参考。",
                                gpt_path=services.gpt_choices()[0][1], sovits_path=services.sovits_choices()[1][1])
    assert req.sovits_path.endswith("s2Gv2ProPlus.pth")


def test_app_builds_every_tab(served):
    config = served["app"].config
    from pages.i18n import EN, ZH

    keys = {str(c.get("props", {}).get("label")) for c in config["components"] if c.get("type") == "tabitem"}
    labels = {EN[k.split('"key": "')[1].rstrip('"}')] for k in keys if '"key": "' in k}  # T() markers -> English
    assert {"TTS", "ASR", "Dataset", "Finetune", "Eval", "RefAudio", "Models"} <= labels
    assert {ZH[k] for k, v in EN.items() if v == "Models"} == {"模型"}
    api_names = {d.get("api_name") for d in config["dependencies"]}
    assert {"tts", "tts_ab", "tts_stream", "tts_batch", "tts_batch_cancel", "history_replay", "history_reuse",
            "tts_refresh_models"} <= api_names


def test_model_paths_outside_the_weight_folders_are_refused(served, tiny_assets, parity_dir):
    """An API caller cannot make the app read an arbitrary file as a checkpoint."""
    from gsv_core.errors import GSVError

    services = served["services"]
    good_gpt = services.gpt_choices()[0][1]
    good_sovits = services.sovits_choices()[0][1]
    outside = str(parity_dir / "s1_v2.ckpt")  # a real checkpoint, but not in a weight folder
    for gpt, sovits in ((outside, good_sovits), (good_gpt, "/etc/passwd"), (good_gpt, "../../etc/passwd")):
        with pytest.raises(GSVError, match="is not one of the listed models"):
            services.make_request(text="你好。", ref_audio=str(tiny_assets["ref"]), ref_text="参考。", gpt_path=gpt,
                                  sovits_path=sovits)
    services.make_request(text="你好。", ref_audio=str(tiny_assets["ref"]), ref_text="参考。", gpt_path=good_gpt,
                          sovits_path=good_sovits)
    # through the HTTP API too (gradio's own choice check or ours): a readable error, and the app keeps serving
    with pytest.raises(Exception, match="listed models|not in the list of choices"):
        served["client"].predict(*_params(served, tiny_assets, gpt=outside), api_name="/tts")
    assert services.gpt_choices()
