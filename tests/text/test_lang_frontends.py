"""Japanese, Korean and Cantonese through the whole front end: modes from the language table, v1 refusals, text with
nothing to read, inline tags, missing optional packages/dictionaries (clear errors), the Japanese user dictionary
hook, and the command line. Parity with upstream is in test_lang_parity.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gsv_core import languages
from gsv_core.errors import GSVError
from gsv_core.text import (
    LANGS,
    MissingDataError,
    MissingPackageError,
    NothingToReadError,
    Pause,
    TagError,
    TextError,
    UnsupportedLanguageError,
    preprocess_text,
    text_to_phones,
)
from gsv_core.text import ja, ko, langdetect, yue

REPO = Path(__file__).resolve().parents[2]
NEW_MODES = ["ja", "all_ja", "ko", "all_ko", "yue", "all_yue", "auto", "auto_yue"]
SAMPLES = {
    "ja": "今日はとても良い天気ですね。",
    "all_ja": "今日はとても良い天気ですね。",
    "ko": "오늘은 날씨가 정말 맑네요.",
    "all_ko": "오늘은 날씨가 정말 맑네요.",
    "yue": "我哋今日去飲茶好唔好？",
    "all_yue": "我哋今日去飲茶好唔好？",
    "auto": "今日はいい天気。Hello world! 你好世界。",
    "auto_yue": "我哋去飲茶。Hello world!",
}


def t2p(text, lang, version="v2", **kw):
    kw.setdefault("user_dict", None)
    kw.setdefault("use_g2pw", False)
    return text_to_phones(text, lang, version, **kw)


# ---- the language table ----------------------------------------------------------------------------------------------
def test_modes_come_from_the_language_table():
    assert {"ja", "ko", "yue"} <= languages.IMPLEMENTED
    assert LANGS == languages.text_modes() == tuple(languages.TEXT_MODES)
    for mode in NEW_MODES:
        assert languages.check_mode(mode, "v2") == mode


@pytest.mark.parametrize("mode", NEW_MODES)
def test_every_new_mode_reads_its_sample(mode):
    res = t2p(SAMPLES[mode], mode)
    assert res.phones and len(res.phones) == len(res.phone_ids)
    expected = {"ja": {"ja"}, "ko": {"ko"}, "yue": {"yue"}}.get(languages.TEXT_MODES[mode].language)
    if expected:
        assert {s.lang for s in res.segments} <= expected | {"en"}


def test_detected_languages_in_auto_modes():
    assert [s.lang for s in t2p("今日はいい天気ですね。Hello!", "auto").segments] == ["ja", "en"]
    assert [s.lang for s in t2p("안녕하세요. Hello 你好", "auto").segments] == ["ko", "en", "zh"]
    assert [s.lang for s in t2p("我哋去飲茶。Hello world!", "auto_yue").segments] == ["yue", "en"]


def test_segment_word2ph_and_bert_languages():
    res = t2p("呢部Laptop好易用。", "all_yue")
    assert [s.lang for s in res.segments] == ["yue", "en", "yue"]
    for seg in res.segments:
        if seg.lang == "yue":
            assert len(seg.word2ph) == len(seg.norm_text) and sum(seg.word2ph) == len(seg.phones)
    assert t2p("今日は", "ja").segments[0].word2ph is None
    assert t2p("안녕하세요", "ko").segments[0].word2ph is None


def test_all_modes_keep_plain_english_but_read_digits_in_the_language():
    assert [(s.lang, s.text) for s in t2p("Python 3.12のRelease notesを読みました。", "all_ja").segments] == [
        ("en", "Python "), ("ja", "3.12の"), ("en", "Release notes"), ("ja", "を読みました。")]
    assert [(s.lang, s.text) for s in t2p("Python 3.12のRelease notesを読みました。", "ja").segments] == [
        ("en", "Python 3.12"), ("ja", "の"), ("en", "Release notes"), ("ja", "を読みました。")]


def test_preprocess_text_splits_japanese():
    pieces = preprocess_text("今日は晴れです。明日は雨が降るでしょう。", "ja", "v2", "cut5", user_dict=None)
    assert [p.text for p in pieces] == ["今日は晴れです。", "明日は雨が降るでしょう。"]


# ---- v1 models ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["ko", "all_ko", "yue", "all_yue"])
def test_v1_refuses_korean_and_cantonese(mode):
    with pytest.raises(UnsupportedLanguageError, match="v1") as err:
        t2p(SAMPLES[mode], mode, "v1")
    assert isinstance(err.value, TextError) and isinstance(err.value, languages.LanguageError)


def test_v1_refuses_detected_korean_and_cantonese_spans():
    with pytest.raises(UnsupportedLanguageError, match="Korean"):
        t2p("안녕하세요 Hello", "auto", "v1")
    with pytest.raises(UnsupportedLanguageError, match="Cantonese"):
        t2p("我哋去飲茶", "auto_yue", "v1")
    assert [s.lang for s in t2p("Hello 你好", "auto", "v1").segments] == ["en", "zh"]


def test_v1_reads_japanese_with_its_own_table():
    v1, v2 = t2p("今日は良い天気です。", "ja", "v1"), t2p("今日は良い天気です。", "ja", "v2")
    assert len(v1.phones) == len(v2.phones)
    assert "]" in v2.phones and "]" not in v1.phones  # pitch marks exist in the v2 table only
    assert all(p == q or p == "UNK" for p, q in zip(v1.phones, v2.phones))


def test_front_end_functions_refuse_v1_too():
    with pytest.raises(GSVError, match="v2"):
        ko.clean_ko("안녕", "v1")
    with pytest.raises(GSVError, match="v2"):
        yue.clean_yue("你好", "v1")


# ---- nothing to read ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", NEW_MODES)
def test_only_symbols_is_nothing_to_read(mode):
    with pytest.raises(NothingToReadError):
        t2p("。！？……，,.!?「」（）", mode)


@pytest.mark.parametrize("mode", NEW_MODES)
def test_only_emoji_is_nothing_to_read(mode):
    with pytest.raises(NothingToReadError):
        t2p("😀🎉👍", mode)


def test_clean_text_dispatches_like_upstream():
    from gsv_core.text import clean_text

    assert clean_text("今日は", "ja", "v2") == ja.clean_ja("今日は", "v2")
    assert clean_text("안녕", "ko", "v2") == ko.clean_ko("안녕", "v2")
    assert clean_text("你好", "yue", "v2") == yue.clean_yue("你好", "v2")
    assert clean_text("你好", "zh", "v2")[1] == [2, 2]
    with pytest.raises(UnsupportedLanguageError):
        clean_text("안녕", "ko", "v1")
    with pytest.raises(UnsupportedLanguageError):
        clean_text("hello", "fr", "v2")


def test_front_ends_on_empty_text():
    assert ja.clean_ja("", "v2") == ([], None, "")
    assert ko.clean_ko("", "v2") == ([], None, "")
    assert yue.clean_yue("", "v2") == ([], [], "")


def test_cantonese_character_without_reading_is_a_clear_error():
    with pytest.raises(yue.CantoneseError, match="乄"):
        yue.clean_yue("呢個字係乄。")
    with pytest.raises(TextError, match="乄"):
        t2p("呢個字係乄，你識唔識讀？", "yue")


# ---- tags -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,text", [
    ("ja", "今日は晴れです。[pause=0.5]明日は雨です。"),
    ("ko", "오늘은 맑아요.[pause=0.5]내일은 비가 와요."),
    ("yue", "我哋去飲茶。[pause=0.5]好唔好呀？"),
    ("auto", "今日は晴れです。[pause=0.5]Hello world."),
])
def test_pause_tags_work_in_every_language(mode, text):
    res = t2p(text, mode)
    kinds = [type(i).__name__ for i in res.items]
    assert Pause(0.5) in res.items and kinds[0] == "Segment" and kinds[-1] == "Segment"
    assert len(res.utterances()) == 2


@pytest.mark.parametrize("mode,text", [("ja", "東京[dong1]に行く"), ("yue", "銀行[hang2]喺邊"), ("all_yue", "去銀行[hang2]")])
def test_reading_tags_are_mandarin_only(mode, text):
    with pytest.raises(TagError, match="Mandarin"):
        t2p(text, mode)


def test_tags_off_reads_brackets_literally_in_japanese():
    res = t2p("今日は[pause=1]晴れ", "all_ja", tags=False)
    assert not res.pauses and [s.lang for s in res.segments] == ["ja", "en", "ja"]
    assert res.segments[0].phones[-1] == "["  # a literal "[" is upstream's pitch-rise symbol (v2 table)


# ---- missing optional packages and data -------------------------------------------------------------------------------
def _assert_names(err, *words):
    assert not isinstance(err, ImportError)
    assert isinstance(err, GSVError)
    for word in words:
        assert word in str(err)


def test_missing_pyopenjtalk(monkeypatch):
    monkeypatch.setattr(ja, "_ENGINE", None)
    monkeypatch.setitem(sys.modules, "pyopenjtalk", None)
    with pytest.raises(MissingPackageError) as err:
        t2p("今日は良い天気です。", "ja")
    _assert_names(err.value, "pyopenjtalk", "Japanese")


def test_missing_openjtalk_dictionary_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setattr(ja, "_ENGINE", None)
    monkeypatch.delenv("OPEN_JTALK_DICT_DIR", raising=False)
    monkeypatch.setattr(ja, "DEBIAN_DICT_DIR", tmp_path / "no-such-dictionary")
    with pytest.raises(MissingDataError) as err:
        t2p("今日は良い天気です。", "ja")
    _assert_names(err.value, "open-jtalk-mecab-naist-jdic", "apt-get install")
    monkeypatch.setenv("OPEN_JTALK_DICT_DIR", str(tmp_path))
    with pytest.raises(MissingDataError, match="OPEN_JTALK_DICT_DIR"):
        ja.find_dictionary()


def test_missing_g2pk2(monkeypatch):
    monkeypatch.setattr(ko, "_G2P", None)
    monkeypatch.setitem(sys.modules, "g2pk2.g2pk2", None)
    with pytest.raises(MissingPackageError) as err:
        t2p("안녕하세요", "ko")
    _assert_names(err.value, "g2pk2", "Korean")


def test_missing_mecab_ko(monkeypatch):
    monkeypatch.setattr(ko, "_G2P", None)
    monkeypatch.setitem(sys.modules, "mecab", None)
    with pytest.raises(MissingPackageError) as err:
        t2p("안녕하세요", "all_ko")
    _assert_names(err.value, "python-mecab-ko")


def test_missing_tojyutping(monkeypatch):
    monkeypatch.setitem(sys.modules, "ToJyutping", None)
    with pytest.raises(MissingPackageError) as err:
        t2p("我哋去飲茶", "yue")
    _assert_names(err.value, "ToJyutping", "Cantonese")


def test_missing_split_lang_only_matters_for_detection(monkeypatch):
    monkeypatch.setattr(langdetect, "_SPLITTER", None)
    monkeypatch.setitem(sys.modules, "split_lang", None)
    with pytest.raises(MissingPackageError) as err:
        t2p("今日は良い天気です。", "auto")
    _assert_names(err.value, "split-lang")
    assert t2p("今日は良い天気です。", "ja").phones  # the named modes need no detector
    assert t2p("Hello 你好", "auto").phones  # nor does auto without kana


def test_language_detection_uses_a_local_model():
    path = langdetect.detector_model_path()
    assert path.is_file() and path.name in ("lid.176.ftz", "lid.176.bin")


# ---- Japanese user dictionary hook -------------------------------------------------------------------------------------
def test_extra_japanese_user_dictionary(monkeypatch, tmp_path):
    before = ja.g2p_ja("zqxjです")
    words = tmp_path / "words.csv"
    words.write_text("ｚｑｘｊ,1348,1348,100,名詞,固有名詞,一般,*,*,*,ネコ,ネコ,ネコ,1/2,*\n", encoding="utf-8")
    monkeypatch.setenv("GSV_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GSV_JA_USER_DICT", str(words))
    after = ja.g2p_ja("zqxjです")
    assert after != before and [p for p in after if p not in "[]#"][:4] == ["n", "e", "k", "o"]
    assert list((tmp_path / "cache" / "openjtalk").glob("userdict-*.dic"))
    monkeypatch.setenv("GSV_JA_USER_DICT", str(tmp_path / "missing.csv"))
    with pytest.raises(MissingDataError, match="GSV_JA_USER_DICT"):
        ja.g2p_ja("zqxj")


# ---- command line ---------------------------------------------------------------------------------------------------
def run_cli(*args, env_extra=None, stdin=None):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "gsv_core.text", *args], input=stdin, capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=600)


@pytest.mark.parametrize("mode", NEW_MODES)
def test_cli_json_matches_the_api(mode, capsys):
    from gsv_core.text.__main__ import main

    assert main([SAMPLES[mode], "--lang", mode, "--json", "--no-user-dict", "--g2pw", "off"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    obj = json.loads(out[0])
    expected = t2p(SAMPLES[mode], mode)
    assert obj["phone_ids"] == expected.phone_ids and obj["norm_text"] == expected.norm_text
    assert [s["lang"] for s in obj["segments"]] == [s.lang for s in expected.segments]


def test_cli_stdin_mode(capsys, monkeypatch):
    import io

    from gsv_core.text.__main__ import main

    monkeypatch.setattr(sys, "stdin", io.StringIO("今日は晴れ。\n😀\n明日は雨。\n"))
    assert main(["--lang", "all_ja", "--no-user-dict"]) == 1  # the emoji line fails, the others are read
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [("error" in r) for r in rows] == [False, True, False]


def test_cli_report_and_errors(tmp_path):
    proc = run_cli("今日は良い天気です。", "--lang", "ja", env_extra={"GSV_CACHE_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("segment   ja:") and "phone_ids" in proc.stdout  # no dictionary-compiler output
    proc = run_cli("안녕하세요", "--lang", "ko", "--version", "v1")
    assert proc.returncode == 1 and "v1" in proc.stderr and "Traceback" not in proc.stderr


def test_korean_import_never_tries_an_nltk_download():
    code = "from gsv_core.text.ko import clean_ko; print(' '.join(clean_ko('안녕하세요')[0]))"
    env = {**os.environ, "PYTHONPATH": str(REPO), "NLTK_DATA": "/nonexistent"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "nltk_data" not in proc.stderr + proc.stdout and proc.stdout.startswith("ㅇ ㅏ ㄴ")
