"""Length buckets with mean ± std and bootstrap CIs per system (eval/buckets.py), on a hand-computed case."""
import math

import numpy as np
import pytest

from eval.buckets import (DEFAULT_TOKEN_EDGES, LengthBuckets, assign_buckets, bucket_counts, bucket_pivot,
                          bucket_table, text_length)
from eval.metrics import MetricsError

SHORT = "你好世界"                                   # 4 tokens
MEDIUM = "今天天气很好我们一起去公园散步吧"            # 16 tokens
LONG_EN = " ".join(["word"] * 45)                    # 45 tokens


def row(system, sid, text, rate, sim, dur, errors=None, ref_len=None):
    errors = round(rate * ref_len) if errors is None and ref_len else errors
    return dict(system=system, id=sid, sample=0, text=text, error_rate=rate, similarity=sim, duration=dur,
                substitutions=errors, deletions=0, insertions=0,
                hits=(ref_len - errors) if ref_len is not None else None, ref_len=ref_len)


ROWS = [
    row("A", "s1", SHORT, 0.25, 0.80, 1.0, 1, 4),
    row("A", "s2", SHORT + "呀", 0.0, 0.70, 1.2, 0, 5),
    row("A", "s3", SHORT + "啊", 0.5, 0.90, 1.4, 2, 4),
    row("A", "m1", MEDIUM, 0.125, 0.60, 4.0, 2, 16),
    row("A", "l1", LONG_EN, None, 0.50, 14.0),           # ASR failed: no error rate, similarity still counted
    row("B", "s1", SHORT, 0.0, 0.85, 1.1, 0, 4),
    row("B", "m1", MEDIUM, 0.0625, 0.65, 3.6, 1, 16),
]


def test_text_length_units():
    assert text_length(SHORT) == 4 and text_length("我用Python写代码") == 6
    assert text_length("Hello, big world!") == 3
    assert text_length("Hello, big world!", "chars") == 13
    with pytest.raises(MetricsError):
        text_length("x", "syllables")


def test_bucket_edges_and_labels():
    b = LengthBuckets()
    assert b.edges == DEFAULT_TOKEN_EDGES == (15, 40)
    assert [b.label(v) for v in (1, 15, 16, 40, 41)] == ["short", "short", "medium", "medium", "long"]
    assert b.label(float("nan")) is None
    two = LengthBuckets("seconds", edges=(5,), labels=("short", "long"))
    assert two.describe() == {"short": "≤ 5 s", "long": "> 5 s"}
    assert LengthBuckets().describe()["medium"] == "15–40 tokens"
    with pytest.raises(MetricsError, match="make 3 buckets"):
        LengthBuckets(edges=(5, 10), labels=("a", "b"))
    with pytest.raises(MetricsError, match="increase"):
        LengthBuckets(edges=(10, 5))
    with pytest.raises(MetricsError, match="go by"):
        LengthBuckets("words")


def test_assign_by_tokens_and_by_mean_seconds():
    df = assign_buckets(ROWS)
    assert df.set_index(["system", "id"])["bucket"].to_dict()[("A", "l1")] == "long"
    assert list(df[df.system == "A"]["bucket"]) == ["short", "short", "short", "medium", "long"]
    # by seconds, the sentence's duration is averaged over systems: s1 = (1.0 + 1.1) / 2, m1 = (4.0 + 3.6) / 2
    sec = assign_buckets(ROWS, LengthBuckets("seconds", edges=(3.7, 10.0)))
    lengths = sec.drop_duplicates("id").set_index("id")["length"]
    assert lengths["s1"] == pytest.approx(1.05) and lengths["m1"] == pytest.approx(3.8)
    assert set(sec[sec.id == "m1"]["bucket"]) == {"medium"}     # both systems in the same bucket
    assert bucket_counts(ROWS) == {"short": 3, "medium": 1, "long": 1}


def test_bucket_table_hand_computed():
    t = bucket_table(ROWS, n_boot=500)
    get = lambda s, b, m: t[(t.system == s) & (t.bucket == b) & (t.metric == m)].iloc[0]
    short_a = get("A", "short", "error_rate")
    # rates 0.25, 0.0, 0.5: mean 0.25, sample std 0.25
    assert short_a["n"] == 3 and short_a["mean"] == pytest.approx(0.25) and short_a["std"] == pytest.approx(0.25)
    assert short_a["mean_std"] == "0.250 ± 0.250"
    assert short_a["ci_low"] >= 0.0 and short_a["ci_high"] <= 0.5 and short_a["ci_low"] <= 0.25 <= short_a["ci_high"]
    # corpus rate of the same bucket: (1 + 0 + 2) / (4 + 5 + 4)
    assert get("A", "short", "error_rate_corpus")["mean"] == pytest.approx(3 / 13)
    sim = get("A", "short", "similarity")
    assert sim["mean"] == pytest.approx(0.8) and sim["std"] == pytest.approx(0.1)
    # the long sentence has no error rate (ASR failed) but a similarity
    assert get("A", "long", "error_rate")["n"] == 0 and math.isnan(get("A", "long", "error_rate")["mean"])
    assert get("A", "long", "similarity")["n"] == 1 and get("A", "long", "similarity")["mean_std"] == "0.500 ± —"
    # the "all" bucket pools everything of a system
    all_a = get("A", "all", "error_rate")
    assert all_a["n"] == 4 and all_a["mean"] == pytest.approx(np.mean([0.25, 0.0, 0.5, 0.125]))
    assert get("A", "all", "error_rate_corpus")["mean"] == pytest.approx(5 / 29)
    assert get("B", "medium", "error_rate")["mean"] == pytest.approx(0.0625)
    assert list(t.bucket.cat.categories) == ["short", "medium", "long", "all"]
    wide = bucket_pivot(t)
    assert wide.loc["A", ("error_rate", "short")] == "0.250 ± 0.250"


def test_bucket_table_edge_cases():
    empty = bucket_table([])
    assert empty.empty and "mean_std" in empty.columns
    t = bucket_table(ROWS, metrics=("similarity",), include_all=False, corpus_rate=False, n_boot=50)
    assert set(t.metric) == {"similarity"} and "all" not in set(t.bucket.astype(str))
    with pytest.raises(MetricsError, match="needs a 'duration' column"):
        assign_buckets([dict(text="x")], LengthBuckets("seconds"))
