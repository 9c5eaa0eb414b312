"""English front end: normalisation, dictionary, spelling, possessives, homographs, the OOV predictor, the
reference's post-processing, and that all of it runs offline. Expected values were checked by hand against
CMUdict, the g2p_en documentation and GPT-SoVITS' rules (quirks of the reference are kept and named)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from gsv_core.text.en import clean_en, g2p_en, normalize_en, word_phones
from gsv_core.text.en_predict import predict_phones


def phones(text: str) -> list[str]:
    return g2p_en(normalize_en(text))


# ---- normalisation -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("2.5", "two point five"),
        ("Pi is 3.14", "Pi is three point one four"),
        ("$3", "three dollars"),
        ("$1", "one dollar"),
        ("$3.50", "three dollars and fifty cents"),
        ("£2.01", "two pounds and one penny"),
        ("1,234", "twelve thirty-four"),  # 1001..2999 are read like years by the reference
        ("12,345", "twelve thousand, three hundred forty-five"),
        ("in 1990", "in nineteen ninety"),
        ("in 2005", "in two thousand five"),
        ("in 1900", "in nineteen hundred"),
        ("in 2000", "in two thousand"),
        ("the 21st century", "the twenty-first century"),
        ("1/2 and 3/4", "one half and three fourths"),
        ("50%", "fifty percent"),
        ("at 13:30", "at one thirty p.m."),
        ("at 4:00", "at four o'clock a.m."),
        ("5km", "five kilometers"),
        ("1h", "one hour"),
        ("-5", "negative five"),
        ("1. item", "first, item"),
        ("e.g. cats", "for example cats"),
        ("NASA", "N A S A"),
        ("café", "cafe"),
        ("Hello!!! World??", "Hello! World?"),
        ("你好。", "."),
    ],
)
def test_normalize(text, expected):
    assert normalize_en(text) == expected


def test_decade_reads_as_seconds_like_the_reference():
    # reference quirk: "1990s" matches the measurement rule "<number>s" (seconds) before decades are considered
    assert normalize_en("the 1990s") == "the nineteen ninety seconds"


def test_semicolon_and_curly_quote_are_dropped_like_the_reference():
    # the reference's replacement map only matches its bracketed keys literally, so ; and ’ are removed instead
    assert normalize_en("a;b") == "ab"
    assert normalize_en("don’t") == "dont"


def test_huge_number_does_not_crash():
    text = normalize_en("9" * 80)
    assert text and set(text) <= set("abcdefghijklmnopqrstuvwxyz -,")


# ---- dictionary, spelling, possessives ------------------------------------------------------------------------------
def test_dictionary_words():
    assert phones("hello world") == ["HH", "AH0", "L", "OW1", "W", "ER1", "L", "D"]
    assert phones("the cat") == ["DH", "AH0", "K", "AE1", "T"]


def test_hot_words_of_the_reference_are_known():
    # GPT-SoVITS' engdict-hot.rep entries override CMUdict
    assert word_phones("ChatGPT") == ["CH", "AE1", "T", "JH", "IY1", "P", "IY1", "T", "IY1"]
    assert word_phones("JSON") == ["JH", "EY1", "S", "AH0", "N"]


def test_single_letters_and_capital_a():
    assert phones("A") == ["EY1"]
    assert phones("a cat") == ["AH0", "K", "AE1", "T"]
    assert phones("b") == ["B", "IY1"]


def test_short_unknown_words_are_spelled_and_removed_abbreviations_too():
    assert word_phones("xqz") == ["EH1", "K", "S", "K", "Y", "UW1", "Z", "IY1"]
    assert word_phones("AI") == ["EY1", "AY1"]  # deleted from the dictionary by the reference so that it is spelled


def test_possessive_rules():
    assert word_phones("zorblax's")[-2:] == ["AH0", "Z"]  # after a sibilant
    assert word_phones("quoxdalt's")[-2:] == ["T", "S"]  # after a voiceless consonant
    assert word_phones("glorbo's")[-1] == "Z"  # after a vowel


def test_names_dictionary_for_title_case():
    # a title-case word missing from CMUdict comes from the reference's name list
    from gsv_core.text import en_lexicon

    name = next(n for n in sorted(en_lexicon.names()) if n.isalpha() and len(n) > 4)
    assert word_phones(name.title()) == en_lexicon.names()[name]


def test_homographs_follow_part_of_speech():
    # g2p_en's documented example: verb "refuse" vs noun "refuse"
    assert phones("I refuse to collect the refuse around here.") == (
        "AY1 R IH0 F Y UW1 Z T UW1 K AH0 L EH1 K T DH AH0 R EH1 F Y UW2 Z ER0 AW1 N D HH IY1 R .".split()
    )


def test_oov_predictor_matches_g2p_en_documentation():
    # g2p_en README: "activationist" -> AE2 K T IH0 V EY1 SH AH0 N IH0 S T
    assert predict_phones("activationist") == "AE2 K T IH0 V EY1 SH AH0 N IH0 S T".split()


def test_oov_word_goes_through_wordsegment_then_predictor():
    out = phones("flibbertigibbetzork")
    assert out and all(p[-1].isdigit() or p.isalpha() for p in out)


# ---- post-processing of the reference ------------------------------------------------------------------------------
def test_comma_prepended_when_fewer_than_four_phones():
    ph, word2ph, norm = clean_en("Hi")
    assert ph == [",", "HH", "AY1"] and word2ph is None and norm == "Hi"


def test_apostrophe_token_becomes_dash_and_unknown_symbols_are_dropped():
    assert phones("'hello'") == ["-", "HH", "AH0", "L", "OW1", "-"]
    assert phones("hello @#") == ["HH", "AH0", "L", "OW1"]


def test_v1_and_v2_agree_for_english():
    assert clean_en("It costs $3.", "v1") == clean_en("It costs $3.", "v2")


def test_empty_text_gives_the_comma_only():
    assert clean_en("") == ([","], None, "")


# ---- offline -------------------------------------------------------------------------------------------------------
def test_runs_without_network_and_never_downloads(tmp_path):
    code = textwrap.dedent(
        """
        import socket, nltk
        def refuse(*a, **k):
            raise RuntimeError("network or download attempted")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        nltk.download = refuse
        import nltk.data
        real_find = nltk.data.find
        def find(resource, *a, **k):  # behave as on a machine without NLTK's tagger data
            if "tagger" in resource:
                raise LookupError(resource)
            return real_find(resource, *a, **k)
        nltk.data.find = find
        from gsv_core.text.en import clean_en
        from gsv_core.text import en_lexicon
        ph, _, norm = clean_en("I read the refuse of Zorblaxia's kitchen at 13:30 for $3.50.")
        assert "UNK" not in ph and len(ph) > 20, ph
        print(en_lexicon.tagger_name())
        """
    )
    env = {**os.environ, "NLTK_DATA": str(tmp_path / "empty_nltk_data"), "HOME": str(tmp_path)}
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=repo, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "textblob-aptagger" in proc.stdout  # no local NLTK data: the packaged model is used
