"""Engine controls of the TTS tab (issue 19): "freeze" re-synthesises the semantic tokens of a take without the GPT
(same tokens, another speed or SoVITS model), the v2Pro/v2ProPlus speaker reference apart from the prompt
reference, split buckets, and the live text preview (pieces, language per segment, phones, pinyin)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from config import load_settings
from gsv_core.engine import ModelRegistry, RequestError, SynthesisRequest, TTSEngine
from gsv_core.engine.request import PARAMETERS

TEXT = "今天天气很好。我们去公园散步吧！这是一个测试句子。"
REF_TEXT = "你早上好，这是参考声音。"
TOKENS = 20


@pytest.fixture(scope="module")
def env(tmp_path_factory, parity_dir, tiny_assets):
    tmp = tmp_path_factory.mktemp("freeze")
    for name in ("ref", "aux"):
        (tmp / f"{name}.wav").write_bytes(tiny_assets[name].read_bytes())
    settings = load_settings(environ={"GSV_HOME": str(tmp)}, my_config=tmp / "none.py")
    engine = TTSEngine(ModelRegistry(settings, device="cpu", precision="fp32"), bert_dir=tiny_assets["bert"],
                       hubert_dir=tiny_assets["hubert"], sv_path=tiny_assets["sv"], log_path=None)
    return {"engine": engine, "tmp": tmp, "dir": parity_dir}


def _request(env, sovits="s2_v2.pth.xz", **kw):
    base = dict(text=TEXT, ref_audio=str(env["tmp"] / "ref.wav"), ref_text=REF_TEXT, gpt_path=env["dir"] / "s1_v2.ckpt",
                sovits_path=env["dir"] / sovits, seed=1234, split_method="cut5", max_tokens=TOKENS)
    base.update(kw)
    return SynthesisRequest(**base)


@pytest.fixture
def gpt_calls(env, monkeypatch):
    """Counts the GPT's generate calls; ``calls.forbid()`` makes any further call fail the test."""
    gpt = env["engine"].registry.gpt(env["dir"] / "s1_v2.ckpt")[0]
    original = type(gpt).generate

    class Calls(list):
        forbidden = False

        def forbid(self):
            self.forbidden = True

    calls = Calls()

    def counting(self, phones, *args, **kwargs):
        if calls.forbidden:
            raise AssertionError("the GPT ran for a frozen request")
        calls.append([len(p) for p in phones])
        return original(self, phones, *args, **kwargs)

    monkeypatch.setattr(type(gpt), "generate", counting)
    return calls


def test_freeze_reuses_exactly_the_tokens_without_the_gpt(env, gpt_calls):
    eng = env["engine"]
    first = eng.synthesize(_request(env))
    assert gpt_calls and len(first.semantic_tokens) == 3 and all(first.semantic_tokens)
    assert [len(t) for t in first.semantic_tokens] == [f.tokens for f in first.fragments]
    gpt_calls.forbid()
    # the same request with its tokens frozen: the same tokens and (same seed, same noise) the same audio
    again = eng.synthesize(_request(env, semantic_tokens=first.semantic_tokens))
    assert again.semantic_tokens == first.semantic_tokens
    np.testing.assert_allclose(again.audio, first.audio, atol=1e-5)
    # another speed: the same tokens, a longer take
    slow = eng.synthesize(_request(env, semantic_tokens=first.semantic_tokens, speed=0.5))
    assert slow.semantic_tokens == first.semantic_tokens
    assert slow.speech_seconds > 1.8 * first.speech_seconds
    # another SoVITS model (and another reference's timbre): the same tokens decoded by it
    other = eng.synthesize(_request(env, sovits="s2_v2ProPlus.pth.xz", aux_refs=(str(env["tmp"] / "aux.wav"),),
                                    semantic_tokens=first.semantic_tokens))
    assert other.version == "v2ProPlus" and other.semantic_tokens == first.semantic_tokens
    assert other.speech_seconds == pytest.approx(first.speech_seconds, abs=1e-3)
    assert not np.array_equal(other.audio[: len(first.audio)], first.audio[: len(other.audio)])


def test_freeze_through_many_and_stream(env, gpt_calls):
    eng = env["engine"]
    first = eng.synthesize(_request(env, seed=7))
    gpt_calls.forbid()
    frozen = _request(env, seed=7, semantic_tokens=first.semantic_tokens)
    a, b = eng.synthesize_many([frozen, frozen.replace(speed=1.5)])
    assert a.semantic_tokens == b.semantic_tokens == first.semantic_tokens
    assert b.speech_seconds < a.speech_seconds
    chunks = list(eng.stream(frozen, mode="tokens"))  # no GPT to stream from: fragment by fragment
    assert [list(c.fragment.semantic) for c in chunks if c.fragment is not None] == first.semantic_tokens
    np.testing.assert_allclose(np.concatenate([c.audio for c in chunks]), first.audio, atol=1e-5)


def test_freeze_needs_as_many_fragments_and_valid_tokens(env):
    eng = env["engine"]
    with pytest.raises(RequestError, match="frozen semantic tokens are for 2 fragment"):
        eng.synthesize(_request(env, semantic_tokens=((1, 2, 3), (4, 5))))
    for bad, named in ((((1, 2, 5000),), "0..1023"), (((),), "non-empty"), ("[[1, 2", "JSON")):
        with pytest.raises(RequestError, match=named):
            SynthesisRequest.from_mapping({"semantic_tokens": bad}).replace(text="x", ref_audio="r.wav").validate()
    parsed = SynthesisRequest.from_mapping({"semantic_tokens": "[[1, 2], [3]]"})
    assert parsed.semantic_tokens == ((1, 2), (3,))
    assert SynthesisRequest.from_mapping(parsed.to_mapping(), skip_empty=False) == parsed


def test_speaker_reference_apart_from_the_prompt(env):
    eng = env["engine"]
    ref, aux = str(env["tmp"] / "ref.wav"), str(env["tmp"] / "aux.wav")
    base = eng.synthesize(_request(env, sovits="s2_v2ProPlus.pth.xz", top_k=1))
    same = eng.synthesize(_request(env, sovits="s2_v2ProPlus.pth.xz", top_k=1, sv_ref=ref))
    other = eng.synthesize(_request(env, sovits="s2_v2ProPlus.pth.xz", top_k=1, sv_ref=aux))
    np.testing.assert_allclose(same.audio, base.audio, atol=1e-5)  # the prompt's own clip: the same voice
    assert other.semantic_tokens == base.semantic_tokens  # the GPT's prompt is unchanged
    assert other.audio.shape == base.audio.shape and not np.allclose(other.audio, base.audio, atol=1e-4)
    # a version without speaker embeddings ignores it (as super_sampling is ignored outside v3)
    plain = eng.synthesize(_request(env, top_k=1))
    plain_sv = eng.synthesize(_request(env, top_k=1, sv_ref=aux))
    np.testing.assert_array_equal(plain.audio, plain_sv.audio)


def test_split_bucket_batches_similar_lengths_and_keeps_the_tokens(env, gpt_calls):
    eng = env["engine"]
    text = "你好。今天天气真的非常非常好呀。我们走吧。这是一个比较长一点点的测试句子啊。"
    kw = dict(text=text, top_k=1, batch_size=2, parallel=True)
    plain = eng.synthesize(_request(env, **kw))
    plain_batches = list(gpt_calls)
    gpt_calls.clear()
    bucket = eng.synthesize(_request(env, split_bucket=True, **kw))
    bucket_batches = list(gpt_calls)
    lengths = sorted(n for batch in plain_batches for n in batch)
    assert [sorted(b) for b in bucket_batches] == [lengths[:2], lengths[2:]]  # similar lengths together
    assert bucket_batches != plain_batches
    assert bucket.semantic_tokens == plain.semantic_tokens  # in text order, the same tokens
    assert [f.text for f in bucket.fragments] == [f.text for f in plain.fragments]


def test_every_parameter_is_a_tts_tab_input():
    from pages.tts import FORM_FIELDS

    wired = {f for _, f in FORM_FIELDS if f is not None}
    assert set(PARAMETERS) <= wired, f"not in the TTS tab: {sorted(set(PARAMETERS) - wired)}"


# -- the text preview ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def services(tmp_path_factory, parity_dir, tiny_assets):
    from pages.services import Services
    from test_app import app_settings

    return Services(app_settings(tmp_path_factory.mktemp("preview"), parity_dir, tiny_assets))


MIXED = "今天天气很好，我们去公园散步吧。Hello world. 重[chong2]新开始！第二句话在这里。"


@pytest.mark.parametrize("method", ["cut0", "cut1", "cut2", "cut3", "cut4", "cut5"])
def test_preview_pieces_languages_phones_pinyin(services, method):
    out = services.text_preview(MIXED, "zh", method)
    assert out.problem is None and out.message == ""
    p = out.preview
    pieces = [piece.text for piece in p.pieces]
    def letters(text):  # the splitter may turn "." into "。" between pieces
        return re.sub(r"[\W_]", "", text)

    assert letters("".join(pieces)) == letters(MIXED) and any("重[chong2]新" in x for x in pieces)
    if method == "cut5":  # at every punctuation mark
        assert len(pieces) >= 5 and pieces[0] == "今天天气很好，"
    elif method == "cut3":  # at 。 only
        assert pieces[0] == "今天天气很好，我们去公园散步吧。"
    elif method == "cut0":
        assert len(pieces) == 1
    segs = [s for piece in p.pieces for s in piece.segments]
    assert {s.lang for s in segs} == {"zh", "en"}
    zh = next(s for s in segs if s.lang == "zh")
    assert zh.pinyin[:4] == ("jin1", "tian1", "tian1", "qi4") and zh.phones[:2] == ("j", "in1")
    en = next(s for s in segs if s.lang == "en")
    assert en.pinyin == () and "HH" in en.phones
    # the forced reading shows in the pinyin
    assert any("chong2" in s.pinyin for s in segs)
    assert p.phones == sum(len(s.phones) for s in segs) and all(piece.pause_after == 0.3 for piece in p.pieces)


def test_preview_pause_tags_and_readable_problems(services):
    out = services.text_preview("你好。[pause=0.8]再见。", "zh", "cut5")
    assert [piece.pause_after for piece in out.preview.pieces] == [0.8, 0.3]
    for bad, said in (("你好[pause=abc]", "pause"), ("こんにちは", "Japanese"), ("。。。！", "nothing to read")):
        out = services.text_preview(bad, "zh", "cut1")
        assert out.preview is None and said in out.message, out.message
        assert "Traceback" not in out.message
    assert services.text_preview("", "zh", "cut1").preview is None
    assert services.text_preview("hello", "klingon", "cut1").problem is not None
    from pages.tts import preview_markdown

    md = preview_markdown(services.text_preview("今天天气很好。Hello.", "zh", "cut1"))
    assert "jin1 tian1" in md and "| en |" in md and "HH" in md
    assert preview_markdown(services.text_preview("こんにちは", "zh", "cut1")).startswith("⚠ ")


def test_form_freeze_takes_the_session_tokens():
    from gsv_core.errors import GSVError
    from pages.tts import FORM_FIELDS, form_values

    keys = [k for k, _ in FORM_FIELDS]
    base = dict.fromkeys(keys)
    base.update(text="你好。", frozen_tokens=[[1, 2], [3]], freeze=False)
    fields, _ = form_values([base[k] for k in keys])
    assert fields["semantic_tokens"] is None  # unticked: the tokens stay out of the request
    base["freeze"] = True
    fields, _ = form_values([base[k] for k in keys])
    assert SynthesisRequest.from_mapping(fields).semantic_tokens == ((1, 2), (3,))
    base["frozen_tokens"] = None
    with pytest.raises(GSVError, match="no semantic tokens to reuse"):
        form_values([base[k] for k in keys])


def test_cli_tokens_out_and_in(tmp_path, parity_dir, tiny_assets, monkeypatch):
    import json

    import soundfile as sf

    import config
    from gsv_core import tts

    monkeypatch.setattr(config, "settings", load_settings(
        environ={"GSV_HOME": str(tmp_path), "GSV_GPT_WEIGHT_DIRS": str(parity_dir),
                 "GSV_SOVITS_WEIGHT_DIRS": str(parity_dir)}, my_config=tmp_path / "none.py"))
    common = ["--gpt", str(parity_dir / "s1_v2.ckpt"), "--sovits", str(parity_dir / "s2_v2.pth.xz"),
              "--ref", str(tiny_assets["ref"]), "--ref-text", REF_TEXT, "--bert", str(tiny_assets["bert"]),
              "--hubert", str(tiny_assets["hubert"]), "--sv", str(tiny_assets["sv"]), "--device", "cpu",
              "--precision", "fp32", "--seed", "3", "--max-tokens", "12", "--text", "今天天气很好。我们走吧。",
              "--split", "cut5"]
    tokens = tmp_path / "tokens.json"
    assert tts.main([*common, "-o", str(tmp_path / "a.wav"), "--tokens-out", str(tokens)]) == 0
    frozen = json.loads(tokens.read_text())
    assert len(frozen) == 2 and all(frozen)
    assert tts.main([*common, "-o", str(tmp_path / "b.wav"), "--tokens-in", str(tokens), "--speed", "0.5"]) == 0
    a, b = sf.read(tmp_path / "a.wav")[0], sf.read(tmp_path / "b.wav")[0]
    assert len(b) > 1.5 * len(a)
    assert tts.main([*common, "-o", str(tmp_path / "c.wav"), "--tokens-in", str(tmp_path / "missing.json")]) == 1


def test_tts_tab_freeze_and_preview_through_the_api(tmp_path, parity_dir, tiny_assets):
    """The TTS tab's endpoints: Freeze re-synthesises the session's last tokens (no GPT) at another speed and
    names the take; the text preview answers as the text changes."""
    import os

    import soundfile as sf
    from gradio_client import Client

    from test_app import _params, app_settings, serve_app

    os.environ.setdefault("GRADIO_TEMP_DIR", str(tmp_path / "gradio_tmp"))
    app = serve_app(app_settings(tmp_path, parity_dir, tiny_assets))
    try:
        client = Client(app.local_url, verbose=False)
        served = {"services": app.gsv_services}
        newer = dict(sample_steps=0, super_sampling=False, split_bucket=True, take_id="")
        with pytest.raises(Exception, match="no semantic tokens to reuse"):
            client.predict(*_params(served, tiny_assets, **newer, freeze=True), api_name="/tts")
        first, info, *_ = client.predict(*_params(served, tiny_assets, **newer, freeze=False), api_name="/tts")
        assert "frozen" not in info
        slow, info2, *_ = client.predict(*_params(served, tiny_assets, **{**newer, "take_id": "slow take"},
                                                  speed=0.6, freeze=True), api_name="/tts")
        assert "frozen tokens (no GPT run)" in info2
        assert len(sf.read(slow)[0]) > 1.3 * len(sf.read(first)[0])
        entry = app.gsv_services.history.entries()[0]
        assert entry.id.endswith("slow_take") and entry.params["semantic_tokens"]
        md = client.predict("你好。Hello!", "zh", "cut5", None, 0.3, api_name="/tts_preview")
        assert "ni2 hao3" in md and "| en |" in md  # the pinyin as read: third-tone sandhi included
    finally:
        app.close()
