"""Chinese g2p parity with upstream GPT-SoVITS (fixture README §6: text_zh_frontend.json), plus forced readings,
the user dictionary and odd input.

Every case and version is discovered from the fixture file. Two comparisons per sentence and version:

* g2p only: ``g2p_zh(stored norm_text)`` (+ upstream's special-pause / UNK step) against phones, word2ph and
  phone_ids — isolates the g2p from normalisation;
* end to end: ``clean_zh(text)`` against norm_text, phones, word2ph and phone_ids.

Each field must be identical for at least 99.5 % of the sentences; every mismatch is listed (in the assertion
message on failure, as a warning otherwise), for v2 with the first stage where the recorded upstream trace and
ours part ways (segmentation, pre-merge, pypinyin, sandhi, erhua).
"""
from __future__ import annotations

import json
import re
import warnings

import pytest

from gsv_core.errors import GSVError
from gsv_core.text.symbols import phones_to_ids, symbols
from gsv_core.text.zh import ChineseG2PError, clean_zh, finish_phones, g2p_zh, special_pause
from gsv_core.text.zh.g2p import parse_pinyin, syllable_phones

MIN_IDENTICAL = 0.995


# --------------------------------------------------------------------------------------------------------------
# fixture loading and comparison helpers


@pytest.fixture(scope="module")
def frontend(parity_dir):
    data = json.loads((parity_dir / "text_zh_frontend.json").read_text(encoding="utf-8"))
    cases = data["sentences"]
    versions = sorted(
        {
            key
            for case in cases
            for key, value in case.items()
            if re.fullmatch(r"v\d\w*", key) and isinstance(value, dict) and ("phones" in value or "error" in value)
        }
    )
    assert cases and versions, "text_zh_frontend.json has no sentences or versions"
    return cases, versions


def _trace_divergence(case: dict, norm_text: str) -> str:
    """Where our v2 pipeline first differs from the recorded upstream trace (empty if no trace or no difference)."""
    recorded = case.get("v2_trace")
    if not recorded:
        return ""
    ours: list = []
    try:
        g2p_zh(norm_text, "v2", trace=ours)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"our g2p raised {exc!r}"
    pieces = [t for t in ours if "piece" in t]
    words = [t for t in ours if "word" in t]
    for stage in ("lcut", "pre_merge"):
        expected = [[tuple(w) for w in seg] for seg in recorded.get(stage, [])]
        got = [[tuple(w) for w in p[stage]] for p in pieces]
        if expected != got:
            return f"{stage} differs: upstream {expected} / ours {got}"
    for exp, got in zip(recorded.get("words", []), words):
        for exp_key, our_key in (
            ("word", "word"),
            ("pos", "pos"),
            ("finals_pypinyin", "finals_raw"),
            ("finals_after_sandhi", "finals_after_sandhi"),
            ("initials_final", "initials"),
            ("finals_final", "finals_final"),
        ):
            if exp_key not in exp:
                continue
            want, have = exp[exp_key], got[our_key]
            if isinstance(want, list):
                have = list(have)
            if want != have:
                return f"word {exp.get('word')!r}: {exp_key} upstream {want} / ours {have}"
    if len(recorded.get("words", [])) != len(words):
        return f"upstream has {len(recorded.get('words', []))} words, ours {len(words)}"
    return ""


def _summary(kind: str, version: str, totals: dict, mismatches: list[str], compared: int) -> tuple[str, list[str]]:
    """(report text, fields below the bar) of one kind of comparison for one version."""
    lines = [f"{kind} {version}: {compared} sentences compared"]
    lines += [f"  {field}: {ok}/{compared} identical" for field, ok in totals.items()]
    lines += mismatches
    failed = [f"{version}:{f}" for f, ok in totals.items() if not compared or ok / compared < MIN_IDENTICAL]
    return "\n".join(lines), failed


def _conclude(reports: list[tuple[str, list[str]]], any_mismatch: bool) -> None:
    text = "\n".join(r for r, _ in reports)
    print(text)
    failed = [f for _, fs in reports for f in fs]
    assert not failed, f"below {MIN_IDENTICAL:.1%} identical (or nothing compared): {failed}\n{text}"
    if any_mismatch:
        warnings.warn(text)


def _mismatch(case, version, field, expected, got, norm_text) -> str:
    line = (
        f"  MISMATCH id={case.get('id')} {version} {field} text={case['text']!r}\n"
        f"    expected {expected}\n    got      {got}"
    )
    if version == "v2" and field != "norm_text":
        where = _trace_divergence(case, norm_text)
        if where:
            line += f"\n    first divergence: {where}"
    return line


# --------------------------------------------------------------------------------------------------------------
# parity


def test_g2p_from_stored_norm_text(frontend):
    cases, versions = frontend
    fields = ("phones", "word2ph", "phone_ids")
    reports, any_mismatch = [], False
    for version in versions:
        totals = {f: 0 for f in fields}
        mismatches: list[str] = []
        compared = 0
        for case in cases:
            entry = case.get(version)
            if not entry or "error" in entry or "norm_text" not in entry:
                continue
            compared += 1
            norm = entry["norm_text"]
            try:
                phones, word2ph = g2p_zh(norm, version)
                special = special_pause(case["text"])
                phones = finish_phones(phones, version, special[1] if special else None)
                got = {"phones": phones, "word2ph": word2ph, "phone_ids": phones_to_ids(phones, version)}
                assert sum(word2ph) == len(phones) and len(word2ph) == len(norm), "word2ph inconsistent"
            except Exception as exc:  # noqa: BLE001 - a crash counts as a mismatch of every field
                got = {f: f"raised {exc!r}" for f in fields}
            for f in fields:
                if got[f] == entry[f]:
                    totals[f] += 1
                else:
                    mismatches.append(_mismatch(case, version, f, entry[f], got[f], norm))
        any_mismatch |= bool(mismatches)
        reports.append(_summary("g2p_zh(norm_text)", version, totals, mismatches, compared))
    _conclude(reports, any_mismatch)


def test_clean_zh_end_to_end(frontend):
    cases, versions = frontend
    fields = ("norm_text", "phones", "word2ph", "phone_ids")
    reports, any_mismatch = [], False
    for version in versions:
        totals = {f: 0 for f in fields}
        mismatches: list[str] = []
        compared = 0
        for case in cases:
            entry = case.get(version)
            if not entry:
                continue
            if "error" in entry:  # upstream raised: we may only fail with a user-facing error
                try:
                    clean_zh(case["text"], version)
                except GSVError:
                    pass
                continue
            compared += 1
            try:
                phones, word2ph, norm = clean_zh(case["text"], version)
                got = {"norm_text": norm, "phones": phones, "word2ph": word2ph,
                       "phone_ids": phones_to_ids(phones, version)}
            except Exception as exc:  # noqa: BLE001
                got = {f: f"raised {exc!r}" for f in fields}
            for f in fields:
                if got[f] == entry[f]:
                    totals[f] += 1
                else:
                    mismatches.append(_mismatch(case, version, f, entry[f], got[f], entry["norm_text"]))
        any_mismatch |= bool(mismatches)
        reports.append(_summary("clean_zh(text)", version, totals, mismatches, compared))
    _conclude(reports, any_mismatch)


def test_v2_trace_stages(frontend):
    """Segmentation, pre-merge and per-word pinyin/sandhi/erhua stages equal upstream's recorded trace."""
    cases, _ = frontend
    traced = [c for c in cases if c.get("v2_trace") and "norm_text" in (c.get("v2") or {})]
    if not traced:
        pytest.skip("fixture has no v2 traces")
    problems = []
    for case in traced:
        where = _trace_divergence(case, case["v2"]["norm_text"])
        if where:
            problems.append(f"id={case.get('id')} {case['text']!r}: {where}")
    ok = len(traced) - len(problems)
    assert ok / len(traced) >= MIN_IDENTICAL, f"{ok}/{len(traced)} traces identical\n" + "\n".join(problems)
    if problems:
        warnings.warn("\n".join(problems))


# --------------------------------------------------------------------------------------------------------------
# forced readings and the user dictionary


def _phones_of(text: str, index: int, version: str = "v2", **kwargs) -> list[str]:
    phones, word2ph = g2p_zh(text, version, **kwargs)
    start = sum(word2ph[:index])
    return phones[start : start + word2ph[index]]


def test_forced_reading_replaces_the_character_only():
    text = "他很重视这件事."
    i = text.index("重")
    base_phones, base_w2p = g2p_zh(text)
    forced_phones, forced_w2p = g2p_zh(text, forced={i: "chong2"})
    assert forced_w2p == base_w2p
    assert _phones_of(text, i, forced={i: "chong2"}) == list(syllable_phones(*parse_pinyin("chong2")))
    assert _phones_of(text, i) != _phones_of(text, i, forced={i: "chong2"})
    start = sum(base_w2p[:i])
    assert forced_phones[:start] == base_phones[:start]
    assert forced_phones[start + 2 :] == base_phones[start + 2 :]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_forced_reading_is_final(version):
    # 一 before a fourth tone becomes yi2 by sandhi; a forced yi1 stays yi1
    text = "一样."
    assert _phones_of(text, 0, version)[1] == "i2"
    assert _phones_of(text, 0, version, forced={0: "yi1"}) == list(syllable_phones(*parse_pinyin("yi1")))


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_forced_reading_drives_neighbour_sandhi(version):
    # 不 + third tone keeps bu4; forcing the next syllable to a fourth tone turns 不 into bu2
    text = "不好."
    assert _phones_of(text, 0, version)[1] == "u4"
    assert _phones_of(text, 0, version, forced={1: "hao4"})[1] == "u2"


@pytest.mark.parametrize(
    "forced",
    [
        {99: "chong2"},
        {-1: "chong2"},
        {2: "chong2"},
        {0: "chong"},
        {0: "xx9"},
        {0: "hm5"},
        {0: 3},
        {"0": "ni3"},
        {True: "ni3"},
    ],
)
def test_bad_forced_readings_are_user_errors(forced):
    with pytest.raises(ChineseG2PError) as info:
        g2p_zh("你好,世界.", forced=forced)
    assert isinstance(info.value, GSVError) and str(info.value)


def test_forced_pinyin_spellings():
    assert parse_pinyin("lv4") == parse_pinyin("lü4") == parse_pinyin("LU:4")
    assert parse_pinyin(" Chong2 ") == ("ch", "ong2")
    assert parse_pinyin("yi1") == ("", "i1")


def test_clean_zh_carries_forced_readings_across_normalisation():
    text = "我有2个重要的事"
    raw = text.index("重")
    phones, word2ph, norm = clean_zh(text, forced={raw: "chong2"})
    at = norm.index("重")
    start = sum(word2ph[:at])
    assert phones[start : start + 2] == list(syllable_phones(*parse_pinyin("chong2")))
    with pytest.raises(ChineseG2PError):
        clean_zh(text, forced={text.index("2"): "er4"})  # a digit is not a Chinese character


def test_user_dictionary_overrides_pypinyin_then_sandhi_applies():
    text = "他们在银行工作."
    word = "银行"
    i = text.index(word)
    reading = ["yin2", "xing2"]
    phones, _ = g2p_zh(text, user_dict={word: reading})
    assert _phones_of(text, i + 1, user_dict={word: reading}) == list(syllable_phones(*parse_pinyin("xing2")))
    assert _phones_of(text, i + 1) != _phones_of(text, i + 1, user_dict={word: reading})
    # sandhi still runs on dictionary readings: two third tones -> the first becomes second tone
    assert _phones_of("很好.", 0, user_dict={"很好": ["hen3", "hao3"]})[1] == "en2"
    # a forced reading wins over the dictionary
    assert _phones_of(text, i + 1, user_dict={word: reading}, forced={i + 1: "hang2"}) == list(
        syllable_phones(*parse_pinyin("hang2"))
    )


def test_user_dictionary_longest_word_wins_and_errors():
    text = "长城很长."
    got = _phones_of(text, 0, user_dict={"长": ["zhang3"], "长城": ["chang2", "cheng2"]})
    assert got == list(syllable_phones(*parse_pinyin("chang2")))
    assert _phones_of(text, 3, user_dict={"长": ["zhang3"], "长城": ["chang2", "cheng2"]}) == list(
        syllable_phones(*parse_pinyin("zhang3"))
    )
    for bad in ({"长城": ["chang2"]}, {"": []}, {"长": ["zhang"]}, {"长": ["qqq3"]}, ["长"]):
        with pytest.raises(ChineseG2PError):
            g2p_zh(text, user_dict=bad)


# --------------------------------------------------------------------------------------------------------------
# odd input


ODD_NORM_TEXTS = [
    "", ",", "...", "!?…,.-", "-", "abc", "123", "你好 世界", "\n\t", "😀😀", "嗯", "呣呣", "兙兡瓩", "a,b.c",
    "一", "儿", "不", "个", "了了了", "一一一一", "不不不", "儿儿",
]


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("text", ODD_NORM_TEXTS)
def test_odd_norm_text_never_crashes(text, version):
    phones, word2ph = g2p_zh(text, version)
    assert len(word2ph) == len(text)
    assert sum(word2ph) == len(phones)
    table = set(symbols(version))
    assert all(p in table for p in phones)
    for ch, n in zip(text, word2ph):
        if "\u4e00" <= ch <= "\u9fa5":
            assert n in (0, 2)
        elif ch in "!?…,.-":
            assert n == 1
        else:
            assert n == 0


def test_interjections_read_like_normalised_text():
    assert g2p_zh("嗯.") == g2p_zh("恩.")
    assert g2p_zh("呣.") == g2p_zh("母.")


ODD_RAW_TEXTS = [
    "", "   ", "？？？", "……", "abc", "😀", "￥", "^^^", "1,234", "２０２４年", "你好\n\n世界", "。" * 50, "重" * 300,
]


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("text", ODD_RAW_TEXTS)
def test_odd_raw_text_never_crashes(text, version):
    phones, word2ph, norm = clean_zh(text, version)
    assert len(word2ph) == len(norm) and sum(word2ph) == len(phones)
    assert all(p in set(symbols(version)) for p in phones)


def test_special_pause_marks():
    phones, _, _ = clean_zh("价格是￥128,包邮")
    assert "SP2" in phones and "," not in phones
    phones, _, _ = clean_zh("停一下^然后继续")
    assert "SP3" in phones and "," not in phones
    phones, _, _ = clean_zh("价格是￥128^包邮")  # ￥ wins; ^ is dropped by normalisation
    assert "SP2" in phones and "SP3" not in phones


@pytest.mark.parametrize("bad", [None, 12, b"abc", ["你好"]])
def test_non_string_input_is_a_user_error(bad):
    with pytest.raises(GSVError):
        g2p_zh(bad)
    with pytest.raises(GSVError):
        clean_zh(bad)


def test_unknown_version_is_a_user_error():
    with pytest.raises(GSVError):
        g2p_zh("你好.", "v9x")
    with pytest.raises(GSVError):
        clean_zh("你好.", "")


def test_g2pw_request_is_ignored_for_v1(monkeypatch):
    from gsv_core.text.zh import g2pw

    monkeypatch.setattr(g2pw, "active_g2pw", lambda: pytest.fail("v1 must not use G2PW"))
    assert g2p_zh("银行行长.", "v1", use_g2pw=True) == g2p_zh("银行行长.", "v1")
