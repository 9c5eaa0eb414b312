"""seed-tts-eval compatible scoring (eval/seedtts.py) against a direct re-implementation of their procedure.

The reference implementation below follows seed-tts-eval's run_wer.py / average_wer.py step by step, written
independently of eval/seedtts.py: zhon's punctuation + string.punctuation deleted one by one (apostrophe kept),
one pass of double-space -> space, zh: characters joined by spaces, en: lower(); jiwer on the raw strings (its
default transforms do the word split); per-utterance WER; numpy mean of the WERs, printed as round(x * 100, 3).
"""
import math
import string

import numpy as np
import pytest

from eval.metrics import ErrorCounts, MetricsError, score_utterance, summarize_rates
from eval.seedtts import (SEED_HANZI_PUNCTUATION, SEED_PUNCTUATION, SEED_TTS_EVAL_ASR, SEED_TTS_EVAL_SIM, SeedScore,
                          seed_average, seed_language, seed_normalize, seed_tokens, score_utterance_seed)

zhon_hanzi = pytest.importorskip("zhon.hanzi")
jiwer = pytest.importorskip("jiwer")


# ------------------------------------------------------------------------------ the independent re-implementation

def reference_process_one(hypo: str, truth: str, lang: str):
    for ch in zhon_hanzi.punctuation + string.punctuation:
        if ch == "'":
            continue
        truth = truth.replace(ch, "")
        hypo = hypo.replace(ch, "")
    truth = truth.replace("  ", " ")
    hypo = hypo.replace("  ", " ")
    if lang == "zh":
        truth = " ".join(list(truth))
        hypo = " ".join(list(hypo))
    else:
        truth = truth.lower()
        hypo = hypo.lower()
    out = jiwer.process_words(truth, hypo)  # jiwer 4's compute_measures; default word split
    n = len(truth.split(" "))
    return out.wer, out.substitutions / n, out.deletions / n, out.insertions / n


def reference_average(wers):
    return round(np.mean(wers) * 100, 3), float(np.mean(wers))


# (lang, reference text, ASR hypothesis): hand-made, covering punctuation, spacing, case, mixed scripts
PAIRS = [
    ("zh", "今天天气很好。", "今天天气很好"),
    ("zh", "今天天气很好，我们去公园散步吧！", "今天天气很好我们去公园散步吧"),
    ("zh", "我爱北京天安门。", "我爱南京天安门"),
    ("zh", "他说：“你好！”", "他说你好你好"),
    ("zh", "《红楼梦》是一部小说。", "红楼梦是一部小说"),
    ("zh", "价格是3.5元，对吧？", "价格是35元对吧"),
    ("zh", "我用Python写代码。", "我用python写代码"),                 # zh keeps case: P vs p differs
    ("zh", "这是 GPT-SoVITS 的测试", "这是GPT SoVITS的测试"),
    ("zh", "一、二、三……", "一二三"),
    ("zh", "今天\u3000天气", "今天天气"),                               # ideographic space is deleted
    ("zh", "你好  世界", "你好世界"),                                   # double space, ratios see empty strings
    ("zh", "你好   世界", "你 好 世 界"),                                # three spaces stay two
    ("zh", "请问—你是谁？", "请问你是谁"),
    ("zh", "第1名和第2名", "第一名和第二名"),
    ("zh", "嗯，今天很好啊", "今天很好"),
    ("zh", "今天天气很好", "今天天天气很好很好"),
    ("zh", "他's 书", "他s书"),                                        # apostrophe kept by them
    ("zh", "Ｈｅｌｌｏ，世界", "hello世界"),                              # no full-width folding there
    ("zh", "长句子测试：我们一起去公园散步，然后去吃饭，再去看电影。", "长句子测试我们一起去公园散步然后去吃饭再去看电"),
    ("en", "Hello, world!", "hello world"),
    ("en", "The cat sat on the mat.", "the cat sat sat on mat"),
    ("en", "Don't stop now.", "dont stop now"),
    ("en", "Don't stop now.", "don't stop now"),
    ("en", "hello,world", "hello world"),                              # comma deleted: one word there
    ("en", "The U.S. army", "the US army"),
    ("en", "Send an e-mail.", "send an email"),
    ("en", "A well-known fact.", "a well known fact"),
    ("en", "It costs $3.50 (approx.)", "it costs 350 approx"),
    ("en", "hello big world", "hello 大 world"),
    ("en", "Hello  world", "hello world"),
    ("en", "“Quoted” text — with dashes…", "quoted text with dashes"),
    ("en", "I think so", "um I think uh so"),
    ("en", "One two three four five", "one two three"),
    ("en", "ÉCOLE française", "école francaise"),
    ("en", "Mixed 中文 words", "mixed 中文 words"),
    ("en", "Tabs\tand spaces", "tabs and spaces"),
]


def test_enough_pairs():
    assert len(PAIRS) >= 30 and {p[0] for p in PAIRS} == {"zh", "en"}


def test_punctuation_set_is_zhons():
    assert SEED_HANZI_PUNCTUATION == zhon_hanzi.punctuation
    assert SEED_PUNCTUATION == zhon_hanzi.punctuation + string.punctuation


@pytest.mark.parametrize("lang,ref,hyp", PAIRS)
def test_per_utterance_identical(lang, ref, hyp):
    ours = score_utterance_seed(ref, hyp, lang, simplify_hypothesis=False)
    wer, sub, dele, ins = reference_process_one(hyp, ref, lang)
    assert ours.wer == wer
    assert (ours.sub_rate, ours.del_rate, ours.ins_rate) == (sub, dele, ins)


def test_aggregate_identical():
    scores = [score_utterance_seed(ref, hyp, lang, simplify_hypothesis=False) for lang, ref, hyp in PAIRS]
    summary = seed_average(scores)
    wers = [reference_process_one(hyp, ref, lang)[0] for lang, ref, hyp in PAIRS]
    percent, mean = reference_average(wers)
    assert summary.wer_percent == percent and summary.wer == mean and summary.n == len(PAIRS)
    assert summary.n_above_half == sum(w > 0.5 for w in wers)
    below = [w for w in wers if w <= 0.5]
    assert summary.wer_below_half == pytest.approx(float(np.mean(below)), abs=0)
    # our own protocol on the same pairs: the seed mean equals summarize_rates' utterance mean of seed counts
    assert summarize_rates([s.counts for s in scores]).utterance_mean_rate == pytest.approx(mean, rel=1e-12)
    ours = summarize_rates([score_utterance(ref, hyp, lang) for lang, ref, hyp in PAIRS])
    assert ours.utterance_mean_rate < summary.wer       # our normalisation forgives more of these variants


def test_normalisation_details():
    assert seed_normalize("Hello, World!", "en") == "hello world"
    assert seed_normalize("hello,world", "en") == "helloworld"
    assert seed_normalize("你好，世界", "zh") == "你 好 世 界"
    assert seed_normalize("a   b", "en") == "a  b"                     # one pass: three spaces become two
    assert seed_tokens("a  b ") == ["a", "b"]
    assert seed_normalize("Don't", "en") == "don't"
    with pytest.raises(MetricsError, match="only zh or en"):
        seed_normalize("x", "ja")


def test_language_mapping_and_hypothesis_simplification():
    assert seed_language("auto", "你好") == "zh" and seed_language("auto", "hello") == "en"
    assert seed_language("mixed") == "zh" and seed_language("all_zh") == "zh" and seed_language("en") == "en"
    trad = score_utterance_seed("我们说话吧", "我們說話吧", "zh")
    assert trad.wer == 0.0                                                      # their ASR output is simplified
    assert score_utterance_seed("我们说话吧", "我們說話吧", "zh", simplify_hypothesis=False).wer == pytest.approx(0.6)


def test_empty_reference_is_left_out_of_the_mean():
    empty = score_utterance_seed("。", "你好", "zh")
    assert isinstance(empty, SeedScore) and empty.counts.ref_len == 0 and math.isinf(empty.wer)
    good = score_utterance_seed("你好", "你好", "zh")
    s = seed_average([good, empty])
    assert s.n == 1 and s.n_empty_references == 1 and s.wer == 0.0
    assert math.isnan(seed_average([]).wer)
    with pytest.raises(MetricsError):
        seed_average([ErrorCounts()])


def test_named_models():
    assert "Paraformer-zh" in SEED_TTS_EVAL_ASR["zh"] and "whisper-large-v3" in SEED_TTS_EVAL_ASR["en"].lower()
    assert "WavLM-large" in SEED_TTS_EVAL_SIM and "ECAPA-TDNN" in SEED_TTS_EVAL_SIM
