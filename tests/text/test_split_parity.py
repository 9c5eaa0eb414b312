"""Text splitting against upstream's golden data (``text_segmentation.json``): every paragraph x split method x
language of the fixture set, compared exactly. Cases are discovered from the file."""
from __future__ import annotations

import json

import pytest

from gsv_core.text import split as S
from gsv_core.text.split import TextError


@pytest.fixture(scope="module")
def segmentation(parity_dir):
    return json.loads((parity_dir / "text_segmentation.json").read_text(encoding="utf-8"))


def _mismatch_report(rows):
    return "\n".join(f"  {where}: expected {exp!r}\n  {' ' * len(where)}  got      {got!r}" for where, exp, got in rows)


def test_fixture_has_cases(segmentation):
    assert segmentation["paragraphs"], "no paragraphs in text_segmentation.json"
    methods = {m for p in segmentation["paragraphs"] for m in p["cuts"]}
    assert methods <= set(S.METHODS), f"fixture uses unknown methods {methods - set(S.METHODS)}"


def test_split_marks_match(segmentation):
    assert set(segmentation["splits"]) == set(S.SPLIT_MARKS)


def test_cut_methods(segmentation):
    bad, n = [], 0
    for para in segmentation["paragraphs"]:
        for method, expected in para["cuts"].items():
            n += 1
            got = S.cut(para["text"], method)
            if got != expected:
                bad.append((f"paragraph {para['id']} {method}", expected, got))
    assert not bad, f"{len(bad)} of {n} cuts differ:\n" + _mismatch_report(bad)


def test_replace_consecutive_punctuation(segmentation):
    bad = []
    for para in segmentation["paragraphs"]:
        got = S.replace_consecutive_punctuation(para["text"])
        if got != para["replace_consecutive_punctuation"]:
            bad.append((f"paragraph {para['id']}", para["replace_consecutive_punctuation"], got))
    assert not bad, _mismatch_report(bad)


def test_pre_seg_text(segmentation):
    bad, n = [], 0
    for para in segmentation["paragraphs"]:
        text = para["replace_consecutive_punctuation"]
        for lang, per_method in para["pre_seg_text"].items():
            for method, expected in per_method.items():
                n += 1
                got = S.pre_seg_text(text, lang, method)
                if got != expected:
                    bad.append((f"paragraph {para['id']} {lang} {method}", expected, got))
                # the one-call version used by the engine gives the same from the raw paragraph
                assert S.preprocess_pieces(para["text"], lang, method) == got
    assert not bad, f"{len(bad)} of {n} pre_seg_text results differ:\n" + _mismatch_report(bad)


def test_long_pieces_are_split_below_510():
    text = "，".join(["这是一个很长的句子"] * 120) + "。"
    pieces = S.pre_seg_text(text, "zh", "cut0")
    assert len(pieces) > 1
    assert all(len(p) <= S.MAX_PIECE_CHARS for p in pieces)
    assert "".join(pieces) == text


def test_cut1_groups_four_sentences_and_last_takes_the_rest():
    sentences = [f"第{i}句。" for i in "一二三四五六七八九"]
    assert S.cut("".join(sentences), "cut1").split("\n") == ["".join(sentences[:4]), "".join(sentences[4:])]
    assert S.cut("".join(sentences[:8]), "cut1") == "".join(sentences[:8])


def test_cut5_keeps_decimal_points():
    assert S.cut("价格是3.5元，好的。", "cut5") == "价格是3.5元，\n好的。"


def test_empty_and_blank_inputs():
    assert S.pre_seg_text("", "zh", "cut5") == []
    assert S.pre_seg_text("\n\n", "zh", "cut5") == []
    assert S.cut("", "cut3") == ""
    assert S.pre_seg_text(" ", "zh", "cut0") == []  # a piece without word characters is dropped


def test_text_of_marks_only_is_a_clear_error():
    with pytest.raises(TextError, match="nothing to say"):
        S.pre_seg_text("……！！", "zh", "cut5")


def test_unknown_method_is_a_clear_error():
    with pytest.raises(TextError, match="cut9"):
        S.cut("你好", "cut9")
    with pytest.raises(TextError, match="cut9"):
        S.pre_seg_text("你好", "zh", "cut9")
