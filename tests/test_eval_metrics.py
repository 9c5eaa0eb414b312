"""Scoring (CER/WER with S/D/I apart), signal metrics, speaker similarity and bootstrap statistics of eval/."""
import math

import numpy as np
import pytest

from eval.audio_metrics import (CLIP_LEVEL, analyze, embedding_similarity, f0_contour, speaker_embedding,
                                speaker_similarity)
from eval.metrics import (ERROR_LABELS, ErrorCounts, MetricsError, align, canonical_language, convert_numerals,
                          corpus_score, metric_name, normalize_text, score_utterance, score_with_protocol,
                          summarize_rates, tokenize, utterance_rates)
from eval.stats import (CI, MeanStd, StatsError, bootstrap_ci, bootstrap_corpus_rate, bootstrap_utterance_mean_rate,
                        mean_std, paired_bootstrap_corpus_diff, paired_bootstrap_diff,
                        paired_bootstrap_utterance_mean_diff, rate_cis)
from gsv_core.errors import AudioError, GSVError

SR = 32000


def counts(c: ErrorCounts):
    return (c.substitutions, c.deletions, c.insertions, c.hits, c.ref_len)


# ------------------------------------------------------------------------------------------------- normalisation

def test_normalisation_fullwidth_traditional_case_and_punctuation():
    assert normalize_text("你好，世界！「說話」…") == "你好世界说话"
    assert normalize_text("ＨＥＬＬＯ，  Ｗｏｒｌｄ！") == "hello world"
    assert normalize_text("Don't stop—now.") == "dont stop now"
    assert normalize_text("我用 Python 3.5 写代码。") == "我用python 35写代码"
    assert normalize_text(None) == ""


def test_tokenisation_by_language():
    assert tokenize("今天，天气", "zh") == ["今", "天", "天", "气"]
    assert tokenize("The cat, the HAT.", "en") == ["the", "cat", "the", "hat"]
    assert tokenize("我用Python写代码", "mixed") == ["我", "用", "python", "写", "代", "码"]
    assert canonical_language("auto", "我用Python写代码") == "mixed"
    assert canonical_language("auto", "今天") == "zh"
    assert canonical_language(None, "hello there") == "en"
    assert metric_name("zh") == "CER" and metric_name("zh-en") == "CER" and metric_name("en") == "WER"
    with pytest.raises(MetricsError, match="unknown scoring language") as err:
        tokenize("x", "klingon")
    assert isinstance(err.value, GSVError)


# The cases of issue #20 (each with the behaviour decided in eval/metrics.py's docstring and docs/eval-metrics.md)

def test_cjk_inside_english_hypothesis_is_one_word_not_glue():
    # was: "hello大world" as one word -> 1 substitution + 2 deletions, WER 100 %
    c = score_utterance("hello big world", "hello 大 world", "en")
    assert counts(c) == (1, 0, 0, 2, 3) and c.rate == pytest.approx(1 / 3)
    assert tokenize("hello 大 world", "en") == ["hello", "大", "world"]
    c = score_utterance("hello world", "hello 大家 world", "en")       # two CJK characters: two inserted words
    assert counts(c) == (0, 0, 2, 2, 2)
    assert score_utterance("hello big world", "hello 大 world", "mixed").rate == pytest.approx(1 / 3)


def test_symbols_are_removed_before_nfkc():
    assert normalize_text("Apple™ Watch") == "apple watch"            # not "apple tm watch"
    assert score_utterance("Apple™ Watch", "apple watch", "en").rate == 0
    assert normalize_text("25℃，5㎏") == "25 5"                        # unit symbols vanish like %, never "°c"/"kg"
    assert normalize_text("©2024 ®") == "2024"


def test_vulgar_fraction_is_one_number():
    assert normalize_text("½ cup") == "12 cup"                         # was "1 2 cup"
    assert normalize_text("1/2 cup") == "12 cup" and normalize_text("1⁄2") == "12"
    assert score_utterance("½ cup", "1/2 cup", "en").rate == 0
    assert tokenize("m² and H₂O", "en") == ["m2", "and", "h2o"]        # other number forms keep their digit


def test_apostrophe_after_digit_joins():
    assert normalize_text("the 90's") == "the 90s"                     # was "the 90 s"
    assert score_utterance("the 90's", "the 90s", "en").rate == 0
    assert normalize_text("donʼt rock’n’roll") == "dont rocknroll"     # modifier apostrophe and curly ones too


def test_initialism_dots_join():
    assert normalize_text("The U.S. army") == "the us army"
    assert normalize_text("U.S.A., e.g. 3 p.m.") == "usa eg 3 pm"
    assert score_utterance("in the U.S. today", "in the US today", "en").rate == 0
    assert normalize_text("example.com") == "example com"              # not an initialism: a word break


def test_hyphen_after_one_letter_prefix_joins():
    assert normalize_text("send an e-mail") == "send an email"
    assert normalize_text("x-ray T-shirt") == "xray tshirt"
    assert score_utterance("send an e-mail", "send an email", "en").rate == 0


def test_hyphenated_compound_splits():
    assert normalize_text("a well-known fact") == "a well known fact"
    assert score_utterance("a well-known fact", "a well known fact", "en").rate == 0
    assert normalize_text("COVID-19") == "covid 19"


def test_comma_between_letters_is_a_word_break():
    assert normalize_text("hello,world") == "hello world"
    assert counts(score_utterance("hello,world", "hello world", "en")) == (0, 0, 0, 2, 2)
    assert normalize_text("1,000") == "1000"                           # between digits it joins


def test_cjk_extension_b_and_beyond_count_as_cjk():
    assert canonical_language("auto", "𠀀𠀁") == "zh"                  # U+20000 (Extension B); was "en"
    assert canonical_language("auto", "𪚥 hello") == "mixed"
    assert tokenize("𠀀𠀁", "auto") == ["𠀀", "𠀁"]
    assert score_utterance("𠀀𠀁𠀂", "𠀀𠀁", "auto").rate == pytest.approx(1 / 3)
    assert tokenize("二〇二四年", "mixed") == ["二", "〇", "二", "四", "年"]  # 〇 is a character, not a word


def test_numeral_conversion_option():
    pytest.importorskip("cn2an")
    assert convert_numerals("25.5度", "zh") == "二十五点五度"
    assert convert_numerals("二十五点五度", "digits") == "25.5度"
    assert convert_numerals("1,000元", "zh") == "一千元"
    assert score_utterance("我有25个苹果", "我有二十五个苹果", "zh").rate > 0
    assert score_utterance("我有25个苹果", "我有二十五个苹果", "zh", numerals="zh").rate == 0
    assert score_utterance("我有25个苹果", "我有二十五个苹果", "zh", numerals="digits").rate == 0
    with pytest.raises(MetricsError, match="numerals"):
        normalize_text("1", numerals="roman")


def test_score_with_protocol():
    assert score_with_protocol("Hello, World", "hello world", "en") == score_utterance("Hello, World",
                                                                                        "hello world", "en")
    # seed-tts-eval deletes the comma instead of breaking: helloworld is one word
    seed = score_with_protocol("hello,world", "hello world", "en", protocol="seed-tts-eval")
    assert counts(seed) == (1, 0, 1, 0, 1)
    with pytest.raises(MetricsError, match="protocol"):
        score_with_protocol("a", "a", "en", protocol="nist")
    with pytest.raises(MetricsError, match="no interjection"):
        score_with_protocol("a", "a", "en", protocol="seed-tts-eval", drop_interjections=True)


# -------------------------------------------------------------------------------------------------------- scoring

def test_insertion_and_deletion_counted_apart_zh():
    # 今天天气很好 -> 今天天天气很: one extra 天 (repetition), 好 swallowed
    c = score_utterance("今天天气很好", "今天天天气很", "zh")
    assert counts(c) == (0, 1, 1, 5, 6)
    assert c.rate == pytest.approx(2 / 6)
    assert c.insertion_rate == pytest.approx(1 / 6) and c.deletion_rate == pytest.approx(1 / 6)
    assert c.repetition == 1 and c.swallowed_words == 1 and c.substitution_rate == 0
    ops = [(a.op, a.ref, a.hyp) for a in align("今天天气很好", "今天天天气很", "zh") if a.op != "equal"]
    assert ops == [("insert", (), ("天",)), ("delete", ("好",), ())]


def test_substitution_zh_and_english_words():
    assert counts(score_utterance("我爱北京", "我爱南京", "zh")) == (1, 0, 0, 3, 4)
    c = score_utterance("The cat sat on the mat.", "the cat sat sat on mat", "en")
    assert counts(c) == (0, 1, 1, 5, 6)
    c = score_utterance("the cat sat", "a dog sat", "en")
    assert counts(c) == (2, 0, 0, 1, 3) and c.rate == pytest.approx(2 / 3)


def test_fullwidth_punctuation_and_traditional_characters_score_zero():
    assert score_utterance("你好，世界！", "你好世界", "zh").rate == 0
    assert score_utterance("ＨＥＬＬＯ，ｗｏｒｌｄ！", "hello world", "en").rate == 0
    c = score_utterance("我們說話吧。", "我们说话吧", "zh")
    assert counts(c) == (0, 0, 0, 5, 5)


def test_mixed_zh_en():
    assert score_utterance("我用Python写代码", "我用 python 写代码。", "mixed").rate == 0
    # python (one word) heard as 派森 (two characters): one substitution + one insertion over 6 tokens
    c = score_utterance("我用Python写代码", "我用派森写代码", "auto")
    assert (c.substitutions + c.insertions, c.deletions, c.hits, c.ref_len) == (2, 0, 5, 6)
    assert c.insertions == 1
    assert c.rate == pytest.approx(2 / 6)


def test_empty_hypothesis_and_reference():
    c = score_utterance("你好", "", "zh")
    assert counts(c) == (0, 2, 0, 0, 2) and c.rate == 1.0
    c = score_utterance("", "你好", "zh")
    assert counts(c) == (0, 0, 2, 0, 0) and c.rate == math.inf
    c = score_utterance("。", None, "zh")
    assert counts(c) == (0, 0, 0, 0, 0) and c.rate == 0.0


def test_interjections_kept_unless_dropped():
    assert counts(score_utterance("嗯，今天很好啊", "今天很好", "zh")) == (0, 2, 0, 4, 6)
    assert score_utterance("嗯，今天很好啊", "今天很好", "zh", drop_interjections=True).rate == 0
    assert score_utterance("今天很好", "哈哈今天很好", "zh", drop_interjections=True).rate == 0
    assert counts(score_utterance("I think so", "um I think uh so", "en")) == (0, 0, 2, 3, 3)
    assert score_utterance("I think so", "um I think uh so", "en", drop_interjections=True).rate == 0


def test_corpus_score_sums_counts_not_rates():
    a = score_utterance("你好", "你", "zh")            # 1 / 2
    b = score_utterance("今天天气很好呀真", "今天天气很好呀真", "zh")  # 0 / 8
    total = corpus_score([a, b])
    assert counts(total) == (0, 1, 0, 9, 10)
    assert total.rate == pytest.approx(0.1)           # the mean of the rates would be 0.25
    assert corpus_score([]).rate == 0.0
    row = total.as_dict("cer_")
    assert row["cer_deletions"] == 1 and row["cer_rate"] == pytest.approx(0.1)
    assert ERROR_LABELS["insertions"] == "repetition" and ERROR_LABELS["deletions"] == "swallowed words"
    with pytest.raises(MetricsError):
        corpus_score([a, 0.5])
    with pytest.raises(MetricsError, match="inconsistent"):
        ErrorCounts(substitutions=1, deletions=0, insertions=0, hits=0, ref_len=3)


def test_summarize_rates_names_both_aggregations():
    a = ErrorCounts(0, 1, 0, 1, 2)        # 1 / 2 = 0.5
    b = ErrorCounts(1, 0, 1, 7, 8)        # 2 / 8 = 0.25
    empty = ErrorCounts(0, 0, 2, 0, 0)    # nothing to say, two words said: left out of the utterance mean
    s = summarize_rates([a, b, empty])
    assert s.n_utterances == 3 and s.n_rated == 2 and s.n_empty_references == 1
    assert s.corpus_rate == pytest.approx(5 / 10)          # (1 + 2 + 2) / (2 + 8 + 0)
    assert s.utterance_mean_rate == pytest.approx(0.375)   # (0.5 + 0.25) / 2
    assert s.utterance_std_rate == pytest.approx(np.std([0.5, 0.25], ddof=1))
    assert s.utterance_median_rate == pytest.approx(0.375)
    assert s.corpus_insertion_rate == pytest.approx(3 / 10)
    assert s.utterance_mean_insertion_rate == pytest.approx((0 + 1 / 8) / 2)
    assert s.utterance_mean_deletion_rate == pytest.approx((0.5 + 0) / 2)
    assert s.n_above_half == 0
    row = s.as_dict("cer_")
    assert row["cer_corpus_rate"] == pytest.approx(0.5) and row["cer_corpus_ref_len"] == 10
    assert row["cer_utterance_mean_rate"] == pytest.approx(0.375)
    # results.jsonl rows work as well
    rows = [dict(substitutions=0, deletions=1, insertions=0, hits=1, ref_len=2)]
    assert summarize_rates(rows).utterance_mean_rate == pytest.approx(0.5)
    assert utterance_rates([a, b, empty]) == [0.5, 0.25]
    none = summarize_rates([])
    assert none.n_utterances == 0 and math.isnan(none.corpus_rate) and math.isnan(none.utterance_mean_rate)
    with pytest.raises(MetricsError, match="item 0"):
        summarize_rates([dict(hits=1)])


def test_rate_cis_and_utterance_mean_bootstrap():
    a = [ErrorCounts(0, 1, 0, 1, 2), ErrorCounts(0, 0, 0, 8, 8), (3, 0)]  # the (3, 0) empty reference is dropped
    cis = rate_cis(a, n=200)
    assert cis["corpus"].mean == pytest.approx(4 / 10)
    assert cis["utterance_mean"].mean == pytest.approx(0.25)
    assert bootstrap_utterance_mean_rate(a, n=200) == cis["utterance_mean"]
    d = paired_bootstrap_utterance_mean_diff([(1, 2), (0, 8)], [(0, 2), (0, 8)], n=200)
    assert d.mean == pytest.approx(0.25)
    with pytest.raises(StatsError, match="same sentences"):
        paired_bootstrap_utterance_mean_diff([(1, 2)], [(0, 2), (0, 8)])


def test_mean_std_hand_computed():
    ms = mean_std([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0, float("nan")])
    assert isinstance(ms, MeanStd) and ms.n == 8
    assert ms.mean == pytest.approx(5.0)
    assert ms.std == pytest.approx(math.sqrt(32 / 7))          # sample std (ddof=1)
    assert ms.format(2) == "5.00 ± 2.14"
    assert mean_std([0.125]).format(1, scale=100) == "12.5 ± —"
    assert mean_std([]).format() == "—"


# -------------------------------------------------------------------------------------------------- audio metrics

def tone(freq, seconds, amp=0.5, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("freq", [80.0, 110.0, 220.0, 440.0])
def test_f0_of_synthetic_tones(freq):
    times, f0 = f0_contour(tone(freq, 1.0), SR)
    voiced = f0[np.isfinite(f0)]
    assert voiced.size >= 0.9 * f0.size
    assert np.median(voiced) == pytest.approx(freq, rel=0.01)
    assert np.all(np.abs(voiced - freq) < 0.02 * freq)
    assert times[1] - times[0] == pytest.approx(0.01)


def test_noise_and_silence_are_unvoiced():
    _, f0 = f0_contour(np.random.default_rng(0).normal(0, 0.1, SR).astype(np.float32), SR)
    assert np.isfinite(f0).mean() < 0.05
    _, f0 = f0_contour(np.zeros(SR, np.float32), SR)
    assert not np.isfinite(f0).any()


def test_analyze_tone_with_silence_and_clipping():
    # 0.5 s silence, 2 s of 200 Hz at amplitude 0.5, 0.5 s silence
    wav = np.concatenate([np.zeros(SR // 2), tone(200, 2.0), np.zeros(SR // 2)]).astype(np.float32)
    m = analyze(wav, SR, "今天天气很好，我们去公园。", asr_text="今天天气很好我们去公园")
    assert m.duration == pytest.approx(3.0)
    assert m.active_duration == pytest.approx(2.0, abs=0.05)
    assert m.speaking_rate == pytest.approx(11 / m.active_duration)
    assert m.f0_mean == pytest.approx(200, rel=0.01) and m.f0_std < 2.0
    assert m.energy_db_mean == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.3)
    assert m.energy_db_std < 1.0  # only the frames straddling the tone edges differ
    assert m.silence_ratio == pytest.approx(1 / 3, abs=0.02)
    assert m.clipping_ratio == 0.0
    assert m.asr_length_ratio == 1.0
    assert not m.likely_repetition and not m.likely_truncation
    clipped = np.clip(tone(200, 1.0, amp=2.0), -1, 1)
    ratio = analyze(clipped, SR, "你好").clipping_ratio
    assert ratio == pytest.approx(np.mean(np.abs(clipped) >= CLIP_LEVEL)) and 0.5 < ratio < 1


def test_repetition_and_truncation_flags():
    # two characters spoken for 8 s: far longer than the text predicts
    assert analyze(tone(150, 8.0), SR, "你好").likely_repetition
    # a 20-character sentence in 0.4 s is cut short
    short = analyze(tone(150, 0.4), SR, "今天天气很好我们一起去公园散步吧你说好不好")
    assert short.likely_truncation and not short.likely_repetition
    # ASR length ratio alone
    plausible = tone(150, 1.5)
    assert analyze(plausible, SR, "今天天气很好", asr_text="今天天气很好今天天气很好").likely_repetition
    assert analyze(plausible, SR, "今天天气很好", asr_text="今天").likely_truncation
    assert analyze(np.zeros(SR, np.float32), SR, "你好").likely_truncation
    with pytest.raises(AudioError):
        analyze(np.zeros(0, np.float32), SR, "你好")


def test_speaker_similarity_identical_vs_different(tiny_assets):
    from gsv_core.audio import load_audio
    from gsv_core.loading import load_speaker_encoder

    encoder = load_speaker_encoder(tiny_assets["sv"])
    ref, sr = load_audio(tiny_assets["ref"])
    aux, sr_aux = load_audio(tiny_assets["aux"])
    same = speaker_similarity(encoder, ref, sr, ref.copy(), sr)
    assert same == pytest.approx(1.0, abs=1e-4)
    # the same signal at another sample rate is nearly identical
    from gsv_core.audio import resample
    assert speaker_similarity(encoder, ref, sr, resample(ref, sr, 16000), 16000) > 0.98
    noise = np.random.default_rng(1).normal(0, 0.1, sr * 2).astype(np.float32)
    different = speaker_similarity(encoder, ref, sr, noise, sr)
    assert different < 0.97  # ~0.90 with the seeded tiny model
    emb = speaker_embedding(encoder, ref, sr)
    assert emb.dim() == 1 and embedding_similarity(emb, speaker_embedding(encoder, aux, sr_aux)) < 0.97
    with pytest.raises(AudioError, match="at least 0.1 s"):
        speaker_similarity(encoder, ref, sr, ref[:100], sr)


# ----------------------------------------------------------------------------------------------------- statistics

def test_bootstrap_ci_on_a_known_normal_distribution():
    values = np.random.default_rng(42).normal(3.0, 1.0, 400)
    ci = bootstrap_ci(values)
    assert isinstance(ci, CI) and ci.mean == pytest.approx(values.mean())
    assert ci.lo < 3.0 < ci.hi
    # the percentile interval of a mean is about mean +- 1.96 sd / sqrt(n)
    half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    assert ci.hi - ci.lo == pytest.approx(2 * half, rel=0.15)
    assert ci.lo == pytest.approx(values.mean() - half, abs=0.03)
    assert bootstrap_ci(values) == ci                     # deterministic with the seed
    assert bootstrap_ci(values, seed=1) != ci
    narrow = bootstrap_ci(values, confidence=0.5)
    assert ci.lo < narrow.lo < narrow.hi < ci.hi
    assert bootstrap_ci([2.0]) == (2.0, 2.0, 2.0)


def test_paired_bootstrap_diff_detects_a_shift():
    rng = np.random.default_rng(7)
    base = rng.uniform(0, 1, 200)
    a = base + 0.5 + rng.normal(0, 0.05, 200)
    mean, lo, hi = paired_bootstrap_diff(a, base, n=1000)
    assert mean == pytest.approx(0.5, abs=0.02) and 0.0 < lo < 0.5 < hi
    # no systematic difference (differences symmetric around 0, mean exactly 0): the interval covers 0
    d = rng.normal(0, 0.05, 100)
    null = paired_bootstrap_diff(base + np.concatenate([d, -d]), base)
    assert null.mean == pytest.approx(0.0, abs=1e-12) and null.lo < 0.0 < null.hi
    with pytest.raises(StatsError, match="one value per sentence"):
        paired_bootstrap_diff([1, 2], [1])


def test_corpus_rate_and_paired_corpus_difference():
    a = [ErrorCounts(0, 1, 0, 1, 2), ErrorCounts(0, 0, 2, 8, 8)]    # 3 errors / 10
    b = [(0, 2), (1, 8)]                                             # 1 error / 10
    assert bootstrap_corpus_rate(a).mean == pytest.approx(0.3)
    ci = paired_bootstrap_corpus_diff(a, b, n=500)
    assert ci.mean == pytest.approx(0.2) and ci.lo <= ci.hi
    many_a = [ErrorCounts(1, 0, 0, 9, 10)] * 100                    # 10 % CER everywhere
    many_b = [ErrorCounts(0, 0, 0, 10, 10)] * 100                   # 0 %
    assert paired_bootstrap_corpus_diff(many_a, many_b) == (pytest.approx(0.1), pytest.approx(0.1),
                                                            pytest.approx(0.1))


def test_stats_refuse_bad_input():
    with pytest.raises(StatsError, match="no values"):
        bootstrap_ci([])
    with pytest.raises(StatsError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(StatsError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=95)
    with pytest.raises(StatsError, match="every reference is empty"):
        bootstrap_corpus_rate([(1, 0)])


def test_score_and_aggregate_fields_for_run_and_report():
    from eval.metrics import aggregate_fields, score_fields

    f = score_fields("Hello, world!", "hello word", "en", seed_compatible=True)
    assert (f["error_rate"], f["substitutions"], f["ref_len"], f["metric"], f["scoring_lang"]) == (0.5, 1, 2, "WER",
                                                                                                  "en")
    assert f["ref_norm"] == "hello world" and f["seed_wer"] == 0.5 and f["seed_lang"] == "en"
    empty = score_fields("。", "你好", "zh")
    assert empty["error_rate"] is None and empty["insertions"] == 2 and "seed_wer" not in empty
    rows = [f, score_fields("你好", "你好", "zh", seed_compatible=True), {"error_rate": None, "asr_error": "x"}]
    agg = aggregate_fields(rows)
    assert agg["error_rate_corpus"] == pytest.approx(1 / 4) and agg["error_rate_utt_mean"] == pytest.approx(0.25)
    assert agg["error_rate_n_rated"] == 2 and agg["seed_wer"] == pytest.approx(0.25) and agg["seed_wer_percent"] == 25.0
    assert aggregate_fields([])["error_rate_corpus"] is None
