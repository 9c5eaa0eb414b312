"""Punctuation / pause sensitivity variants (eval/variants.py) and their deltas."""
import math

import pytest

from eval.metrics import MetricsError
from eval.variants import (VARIANT_KINDS, expand_variants, extra_commas, no_commas, no_punct, punctuation_variants,
                           to_fullwidth, to_halfwidth, variant_deltas, variant_summary)


def test_each_variant():
    zh = "今天天气很好，我们去公园散步吧！"
    assert no_punct(zh) == "今天天气很好我们去公园散步吧"
    assert no_commas(zh) == "今天天气很好我们去公园散步吧！"
    assert to_halfwidth(zh) == "今天天气很好,我们去公园散步吧!"
    assert to_fullwidth("今天天气很好,我们去公园散步吧!") == zh
    en = "Hello, world! It costs 3.5 dollars, doesn't it?"
    assert no_punct(en) == "Hello world It costs 3.5 dollars doesn't it"     # marks inside words stay
    assert no_commas(en) == "Hello world! It costs 3.5 dollars doesn't it?"
    assert to_fullwidth(en) == "Hello，world！It costs 3.5 dollars，doesn't it？"
    assert to_fullwidth('He said "go" in the U.S. today.') == "He said “go” in the U.S. today。"
    assert to_halfwidth("他说：“好的”。Then, 走") == '他说:"好的". Then, 走'


def test_extra_commas_deterministic():
    text = "今天天气很好我们一起去公园散步吧"
    chars = extra_commas(text, every=5, segmenter="chars")
    assert chars == "今天天气很，好我们一起，去公园散步吧"
    assert chars.replace("，", "") == text
    assert extra_commas("one two three four five six seven", every=3) == "one two three, four five six seven"
    assert extra_commas("one two three four", every=3, min_tail=2) == "one two three four"  # tail too short
    jieba = extra_commas(text, every=4)
    assert jieba.replace("，", "") == text and jieba == extra_commas(text, every=4)   # same text, same commas
    assert extra_commas("短句。", every=5) == "短句。"
    with pytest.raises(MetricsError):
        extra_commas(text, every=0)


def test_punctuation_variants_and_expand():
    vs = punctuation_variants("你好，世界。", segmenter="chars")
    assert [v.name for v in vs] == list(VARIANT_KINDS)
    same = {v.name: v.same_as_original for v in vs}
    assert same["original"] is False and same["fullwidth"] is True and same["halfwidth"] is False
    rows = expand_variants([("s1", "你好，世界。"), {"id": "s2", "text": "Hi, there.", "lang": "en"}],
                           kinds=("original", "no_punct"), skip_unchanged=True)
    assert [r["id"] for r in rows] == ["s1__original", "s1__no_punct", "s2__original", "s2__no_punct"]
    assert rows[3] == dict(id="s2__no_punct", base_id="s2", variant="no_punct", text="Hi there", lang="en",
                           same_as_original=False)
    with pytest.raises(MetricsError, match="unknown punctuation variant"):
        punctuation_variants("x", kinds=("shouting",))


def test_variant_deltas_and_summary():
    results = [
        dict(system="A", id="s1__original", error_rate=0.1, duration=2.0, pause_s=0.3),
        dict(system="A", id="s1__no_punct", error_rate=0.2, duration=1.8, pause_s=0.0),
        dict(system="A", id="s2__original", error_rate=0.0, duration=3.0, pause_s=0.5),
        dict(system="A", id="s2__no_punct", error_rate=0.1, duration=2.4, pause_s=0.1),
        dict(system="A", id="s3__no_punct", error_rate=0.3, duration=1.0, pause_s=0.0),   # no original
    ]
    d = variant_deltas(results)
    s1 = d[d.id == "s1__no_punct"].iloc[0]
    assert s1["base_id"] == "s1" and s1["variant"] == "no_punct"
    assert s1["delta_error_rate"] == pytest.approx(0.1) and s1["delta_duration"] == pytest.approx(-0.2)
    assert s1["delta_pause_s"] == pytest.approx(-0.3) and s1["ratio_duration"] == pytest.approx(0.9)
    assert d[d.id == "s1__original"].iloc[0]["delta_error_rate"] == 0.0
    assert math.isnan(d[d.id == "s3__no_punct"].iloc[0]["delta_error_rate"])
    summary = variant_summary(d, n_boot=200)
    row = summary[(summary.variant == "no_punct") & (summary.metric == "delta_pause_s")].iloc[0]
    assert row["n"] == 2 and row["mean"] == pytest.approx(-0.35) and row["std"] == pytest.approx(0.0707, abs=1e-3)
    with pytest.raises(MetricsError, match="more than one"):
        variant_deltas(results + [results[0]])
