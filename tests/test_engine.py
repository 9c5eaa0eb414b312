"""End to end through the engine with the tiny fixture checkpoints and pipeline-shaped tiny BERT/HuBERT/SV models.

reference wav + texts -> wav with the right rate and a plausible length; deterministic with a seed; batch ==
sequential for greedy decoding; streaming == non-streaming; multi-request batches == one by one; bad input gives
clear GSVErrors.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from config import load_settings
from gsv_core.engine import Cancelled, ModelRegistry, RequestError, SynthesisRequest, TTSEngine
from gsv_core.errors import AudioError, GSVError, ModelMismatchError

TEXT = "今天天气很好。我们去公园散步吧！这是一个测试句子。"
REF_TEXT = "你早上好，这是参考声音。"
TOKENS = 20  # per fragment: random GPT weights rarely emit EOS, so every test caps the tokens


@pytest.fixture(scope="module")
def env(tmp_path_factory, parity_dir, tiny_assets):
    tmp = tmp_path_factory.mktemp("engine")
    for name in ("ref", "aux"):
        (tmp / f"{name}.wav").write_bytes(tiny_assets[name].read_bytes())
    settings = load_settings(environ={"GSV_HOME": str(tmp)}, my_config=tmp / "none.py")
    engine = TTSEngine(ModelRegistry(settings, device="cpu", precision="fp32"), bert_dir=tiny_assets["bert"],
                       hubert_dir=tiny_assets["hubert"], sv_path=tiny_assets["sv"], log_path=tmp / "tts_log.csv")
    return {"engine": engine, "tmp": tmp, "dir": parity_dir}


def _request(env, sovits="s2_v2.pth.xz", gpt="s1_v2.ckpt", **kw):
    base = dict(text=TEXT, ref_audio=str(env["tmp"] / "ref.wav"), ref_text=REF_TEXT, gpt_path=env["dir"] / gpt,
                sovits_path=env["dir"] / sovits, seed=1234, split_method="cut5", max_tokens=TOKENS)
    base.update(kw)
    return SynthesisRequest(**base)


def test_synthesis_shapes_and_log(env):
    result = env["engine"].synthesize(_request(env))
    assert result.sample_rate == 32000 and result.audio.dtype == np.float32
    assert len(result.fragments) == 3
    speech = sum(2 * f.tokens * 640 for f in result.fragments)
    pauses = sum(int(32000 * f.pause_after) for f in result.fragments)
    assert len(result.audio) == speech + pauses
    assert all(0 < f.tokens <= TOKENS for f in result.fragments)
    assert np.abs(result.audio).max() <= 1.0 and result.audio.std() > 0
    assert result.rtf > 0 and set(result.timings) == {"reference", "frontend", "bert", "s1", "s2", "post"}
    assert [f.norm_text for f in result.fragments][0].startswith("今天天气")
    log = (env["tmp"] / "tts_log.csv").read_text(encoding="utf-8").splitlines()
    assert log[0].startswith("timestamp,") and len(log) >= 2 and "s2_v2.pth" in log[-1]
    out = result.save(env["tmp"] / "out" / "a.wav")
    data, sr = sf.read(out, dtype="int16")
    assert sr == 32000 and len(data) == len(result.audio)


def test_seed_reproducible_and_different_seeds_differ(env):
    eng = env["engine"]
    a = eng.synthesize(_request(env, top_k=15))
    b = eng.synthesize(_request(env, top_k=15))
    c = eng.synthesize(_request(env, top_k=15, seed=99))
    assert a.seed == b.seed == 1234 and np.array_equal(a.audio, b.audio)
    assert not np.array_equal(a.audio, c.audio)
    random_seed = eng.synthesize(_request(env, seed=-1))
    assert 0 <= random_seed.seed < 2**32


@pytest.mark.parametrize("sovits", ["s2_v2.pth.xz", "s2_v2ProPlus.pth.xz"])
def test_batched_equals_sequential_for_greedy(env, sovits):
    eng = env["engine"]
    batched = eng.synthesize(_request(env, sovits=sovits, top_k=1, batch_size=8, parallel=True))
    seq = eng.synthesize(_request(env, sovits=sovits, top_k=1, parallel=False))
    assert [f.tokens for f in batched.fragments] == [f.tokens for f in seq.fragments]
    assert batched.audio.shape == seq.audio.shape
    np.testing.assert_allclose(batched.audio, seq.audio, atol=1e-4)


def test_streaming_yields_the_same_audio(env):
    eng = env["engine"]
    req = _request(env, top_k=5)
    chunks = list(eng.stream(req, mode="fragments"))  # the token-level mode: tests/test_streaming.py
    assert [c.index for c in chunks] == list(range(len(chunks))) and chunks[-1].last
    assert not any(c.last for c in chunks[:-1])
    full = eng.synthesize(req)
    np.testing.assert_array_equal(np.concatenate([c.audio for c in chunks]), full.audio)


def test_many_requests_equal_one_by_one(env):
    eng = env["engine"]
    reqs = [_request(env, text=t, seed=s, top_k=5) for t, s in (("今天天气很好。", 1), ("我们去公园散步吧！这是一个测试。", 2))]
    together = eng.synthesize_many(reqs)
    alone = [eng.synthesize(r) for r in reqs]
    for x, y in zip(together, alone):
        assert [f.tokens for f in x.fragments] == [f.tokens for f in y.fragments]
        np.testing.assert_allclose(x.audio, y.audio, atol=1e-4)


def test_pro_models_reference_free_aux_refs_and_speed(env):
    eng = env["engine"]
    pro = eng.synthesize(_request(env, sovits="s2_v2Pro.pth.xz", aux_refs=(str(env["tmp"] / "aux.wav"),)))
    assert pro.version == "v2Pro" and pro.duration > 0
    free = eng.synthesize(_request(env, ref_text=""))
    assert free.duration > 0
    fast = eng.synthesize(_request(env, speed=1.25, top_k=1))
    slow = eng.synthesize(_request(env, speed=1.0, top_k=1))
    assert [f.tokens for f in fast.fragments] == [f.tokens for f in slow.fragments]
    assert fast.speech_seconds < slow.speech_seconds


def test_pause_tags_become_silence(env):
    r = env["engine"].synthesize(_request(env, text="今天天气很好[pause=1.5]我们去公园散步吧。", pause=0.3))
    assert len(r.fragments) == 2 and r.fragments[0].pause_after == pytest.approx(1.5)
    start = int(r.fragments[0].seconds * 32000)
    assert np.all(r.audio[start : start + int(1.5 * 32000)] == 0)


def test_registry_switches_weights_and_evicts(env, parity_dir):
    settings = load_settings(environ={"GSV_HOME": str(env["tmp"])}, my_config=env["tmp"] / "none.py")
    reg = ModelRegistry(settings, device="cpu", precision="fp32", budget_gb=0.0)  # evict everything but the newest
    reg.gpt(parity_dir / "s1_v2.ckpt")
    reg.sovits(parity_dir / "s2_v2.pth.xz")
    assert [k for k, _, _ in reg.loaded()] == ["sovits"]
    reg = ModelRegistry(settings, device="cpu", precision="fp32", budget_gb=10.0)
    g1, _ = reg.gpt(parity_dir / "s1_v2.ckpt")
    s1, _ = reg.sovits(parity_dir / "s2_v2.pth.xz")
    s2, _ = reg.sovits(parity_dir / "s2_v2Pro.pth.xz")  # switching SoVITS keeps the GPT loaded
    assert reg.gpt(parity_dir / "s1_v2.ckpt")[0] is g1 and reg.loads == 3
    assert s1 is not s2 and reg.sovits(parity_dir / "s2_v2.pth.xz")[0] is s1 and reg.loads == 3


def test_concurrent_calls_from_two_threads(env):
    eng = env["engine"]
    reqs = [_request(env, seed=7, top_k=5), _request(env, sovits="s2_v2ProPlus.pth.xz", seed=8, top_k=5)]
    expected = [eng.synthesize(r).audio for r in reqs]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(i):
        try:
            for _ in range(2):
                results[i] = eng.synthesize(reqs[i]).audio
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    for i in range(2):
        np.testing.assert_array_equal(results[i], expected[i])


def test_reference_features_are_cached_by_content(env, tmp_path):
    eng = env["engine"]
    eng.synthesize(_request(env))
    before = eng.refs.computed
    copy = tmp_path / "same_audio_other_name.wav"
    copy.write_bytes((env["tmp"] / "ref.wav").read_bytes())
    eng.synthesize(_request(env, ref_audio=str(copy)))
    assert eng.refs.computed == before


def test_cancel(env):
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        env["engine"].synthesize(_request(env), cancel=stop)


def test_bad_inputs_give_clear_errors(env, tmp_path):
    eng = env["engine"]
    with pytest.raises(RequestError, match="text is empty"):
        eng.synthesize(_request(env, text="   "))
    with pytest.raises(GSVError, match="nothing|Nothing"):
        eng.synthesize(_request(env, text="。。。！！"))
    with pytest.raises(RequestError, match="top_k"):
        eng.synthesize(_request(env, top_k=0))
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(32000 * 4, dtype=np.float32), 32000)
    with pytest.raises(AudioError, match="silent"):
        eng.synthesize(_request(env, ref_audio=str(silent)))
    short = tmp_path / "short.wav"
    sf.write(short, np.load(env["dir"] / "s2_inputs.npz")["wav32"][:32000], 32000)
    with pytest.raises(AudioError, match="1.00 s"):
        eng.synthesize(_request(env, ref_audio=str(short)))
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(AudioError):
        eng.synthesize(_request(env, ref_audio=str(corrupt)))
    with pytest.raises(GSVError, match="not found|File not found"):
        eng.synthesize(_request(env, gpt="missing.ckpt"))
    with pytest.raises(ModelMismatchError, match="cannot drive"):
        eng.synthesize(_request(env, gpt="s1_v1.ckpt", sovits="s2_v2Pro.pth.xz"))
    with pytest.raises(RequestError, match="v1"):
        eng.synthesize(_request(env, gpt="s1_v1.ckpt", sovits="s2_v1.pth.xz", ref_text=""))
    missing = TTSEngine(eng.registry, bert_dir=tmp_path / "no_bert", hubert_dir=eng.hubert_dir, sv_path=eng.sv_path,
                        log_path=None)
    with pytest.raises(GSVError, match="gsv_core.download bert"):
        missing.synthesize(_request(env, text="完全不同的句子。"))


def test_bf16_engine_with_int8_gpt(tmp_path, parity_dir, tiny_assets):
    """The fast CPU profile (PRECISION=bf16, GPT_INT8) runs every model in bf16 and gives finite audio."""
    settings = load_settings(environ={"GSV_HOME": str(tmp_path), "GSV_GPT_INT8": "1"}, my_config=tmp_path / "n.py")
    engine = TTSEngine(ModelRegistry(settings, device="cpu", precision="bf16"), bert_dir=tiny_assets["bert"],
                       hubert_dir=tiny_assets["hubert"], sv_path=tiny_assets["sv"], log_path=None)
    req = SynthesisRequest(text=TEXT, ref_audio=str(tiny_assets["ref"]), ref_text=REF_TEXT,
                           gpt_path=parity_dir / "s1_v2.ckpt", sovits_path=parity_dir / "s2_v2ProPlus.pth.xz",
                           seed=5, split_method="cut5", max_tokens=TOKENS)
    result = engine.synthesize(req)
    assert engine.registry.dtype == torch.bfloat16
    assert result.audio.dtype == np.float32 and np.isfinite(result.audio).all() and result.audio.std() > 0
    assert len(result.audio) == sum(2 * f.tokens * 640 + int(32000 * f.pause_after) for f in result.fragments)


def test_token_cap_is_reported_per_fragment(env):
    """Issue 12 item 9: a fragment that ran into the token cap (instead of ending on EOS) is flagged in the
    result, so the TTS tab, the batch CSV and the CLI can warn about likely repetition/babble."""
    result = env["engine"].synthesize(_request(env))
    assert result.fragments
    for frag in result.fragments:
        assert frag.hit_limit == (frag.tokens == TOKENS)  # max_tokens=N stops a row at N tokens
    capped = [f for f in result.fragments if f.hit_limit]
    assert len(result.warnings) == len(capped)
    assert all("token cap" in w for w in result.warnings)
