"""Token-level streaming (gsv_core/engine/streaming.py, TTSEngine.stream(mode="tokens")).

The joined stream is compared with the whole-fragment decode of the same tokens and the same seed:

* length: exactly the same number of samples (the last piece decodes every remaining frame), at every speed;
* SNR of the stream against the whole decode >= 40 dB. Both use the same latent grid and the same prior noise
  (frame-major draw), so what differs is only the context the encoder and decoder saw when a piece was made; an
  off-by-one-frame join, a wrong noise slice or a missing crossfade gives about 0 dB. On these tiny random models the
  measured SNR is 60-98 dB; real models, whose attention reaches further, differ more near the joins, which is why
  the bound is not tighter (-40 dB is far below audibility for a difference confined to the joins);
* discontinuity: the sample-to-sample jump at every join is no larger than 1.5x the whole decode's jump at the same
  place or its 99th-percentile jump, whichever is larger (a click would be many times that).

Engine level: the first piece comes before the GPT has finished the fragment, pieces are more than fragments,
the total duration equals the non-streamed synthesis, cancel stops the worker in the middle, closing the iterator
stops it too, and v3/v4-style fragment mode is still available.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from config import load_settings
from gsv_core.engine import Cancelled, ModelRegistry, SynthesisRequest, TTSEngine
from gsv_core.engine.streaming import ChunkDecoder, StreamPlan, frame_noise, latent_frames
from gsv_core.loading import load_sovits

VERSIONS = ["v1", "v2", "v2Pro", "v2ProPlus"]
SNR_DB = 40.0


def _snr(ref: np.ndarray, test: np.ndarray) -> float:
    err = float(np.sum((test.astype(np.float64) - ref) ** 2))
    return 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / max(err, 1e-30))


def _stream(model, text, cond, tokens, speed, plan, seed=5, max_tokens=200):
    dec = ChunkDecoder(model, text, cond, noise_scale=0.5, speed=speed, generator=torch.Generator().manual_seed(seed),
                       max_tokens=max_tokens, plan=plan)
    pieces, joins = [], []
    n = int(tokens.numel())
    for k in range(1, n):
        if dec.due(k):
            p = dec.push(tokens[:k], final=False)
            if p.size:
                pieces.append(p)
                joins.append(sum(len(x) for x in pieces))
    pieces.append(dec.push(tokens, final=True))
    return np.concatenate(pieces), joins, len(pieces)


@pytest.fixture(scope="module")
def models(parity_dir):
    out = {}
    gen = torch.Generator().manual_seed(0)
    for ver in VERSIONS:
        model, _ = load_sovits(parity_dir / f"s2_{ver}.pth.xz", device="cpu", dtype=torch.float32)
        spec = torch.rand(1, 1025, 90, generator=gen)
        sv = [torch.randn(1, 20480, generator=gen)] if model.is_pro else None
        text = torch.randint(1, 300, (24,), generator=gen)
        out[ver] = (model, model.reference_condition([spec], sv), text)
    return out


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("n_tokens,speed,chunk", [(60, 1.0, 24), (60, 1.0, 4), (45, 1.3, 8), (50, 0.8, 12),
                                                  (7, 1.0, 24)])
def test_stream_matches_whole_decode(models, version, n_tokens, speed, chunk):
    model, cond, text = models[version]
    tokens = torch.randint(0, 1024, (n_tokens,), generator=torch.Generator().manual_seed(n_tokens))
    frames = latent_frames(n_tokens, speed)
    noise = frame_noise(torch.Generator().manual_seed(5), frames, model.enc_p.out_channels, "cpu", torch.float32)
    with torch.inference_mode():
        whole = model.decode(tokens.view(1, 1, -1), text.view(1, -1), condition=cond, noise_scale=0.5, speed=speed,
                             noise=noise)[0, 0].numpy()
        streamed, joins, count = _stream(model, text, cond, tokens, speed, StreamPlan.with_chunk(chunk))
    assert len(streamed) == len(whole) == frames * model.samples_per_frame
    if n_tokens < chunk // 2:
        assert count == 1  # shorter than the first piece: one piece, the whole decode
    else:
        assert count >= 2 and joins
    assert _snr(whole, streamed) >= SNR_DB
    jumps = np.abs(np.diff(whole))
    floor = float(np.quantile(jumps, 0.99))
    for j in joins:
        if 0 < j < len(streamed):
            assert abs(streamed[j] - streamed[j - 1]) <= max(1.5 * abs(whole[j] - whole[j - 1]), floor)


def test_noise_is_a_prefix_of_a_longer_draw():
    short = frame_noise(torch.Generator().manual_seed(3), 37, 11, "cpu", torch.float32)
    long = frame_noise(torch.Generator().manual_seed(3), 500, 11, "cpu", torch.float32)
    assert short.shape == (1, 11, 37) and torch.equal(short, long[:, :, :37])


def test_a_wrong_join_is_caught(models):
    """The bounds above fail for a stream whose pieces are shifted by one sample (the check can fail)."""
    model, cond, text = models["v2"]
    tokens = torch.randint(0, 1024, (40,), generator=torch.Generator().manual_seed(1))
    noise = frame_noise(torch.Generator().manual_seed(5), 80, model.enc_p.out_channels, "cpu", torch.float32)
    with torch.inference_mode():
        whole = model.decode(tokens.view(1, 1, -1), text.view(1, -1), condition=cond, noise_scale=0.5,
                             noise=noise)[0, 0].numpy()
        streamed, joins, _ = _stream(model, text, cond, tokens, 1.0, StreamPlan.with_chunk(8))
    shifted = np.concatenate([streamed[: joins[0]], streamed[joins[0] + 1:], streamed[-1:]])
    assert _snr(whole, shifted) < SNR_DB


# -- through the engine ----------------------------------------------------------------------------------------------
TEXT = "今天天气很好。我们去公园散步吧！"
TOKENS = 40


@pytest.fixture(scope="module")
def env(tmp_path_factory, parity_dir, tiny_assets):
    tmp = tmp_path_factory.mktemp("streaming")
    (tmp / "ref.wav").write_bytes(tiny_assets["ref"].read_bytes())
    settings = load_settings(environ={"GSV_HOME": str(tmp)}, my_config=tmp / "none.py")
    engine = TTSEngine(ModelRegistry(settings, device="cpu", precision="fp32"), bert_dir=tiny_assets["bert"],
                       hubert_dir=tiny_assets["hubert"], sv_path=tiny_assets["sv"], log_path=tmp / "tts_log.csv")
    return {"engine": engine, "tmp": tmp, "dir": parity_dir}


def _request(env, sovits="s2_v2.pth.xz", gpt="s1_v2.ckpt", **kw) -> SynthesisRequest:
    base = dict(text=TEXT, ref_audio=str(env["tmp"] / "ref.wav"), ref_text="你早上好，这是参考声音。",
                gpt_path=env["dir"] / gpt, sovits_path=env["dir"] / sovits, seed=77, split_method="cut5",
                max_tokens=TOKENS, top_k=5)
    base.update(kw)
    return SynthesisRequest(**base)


@pytest.mark.parametrize("sovits,gpt,speed", [("s2_v2ProPlus.pth.xz", "s1_v2.ckpt", 1.0),
                                              ("s2_v1.pth.xz", "s1_v1.ckpt", 1.25)])
def test_engine_token_stream_equals_synthesis(env, sovits, gpt, speed):
    eng = env["engine"]
    req = _request(env, sovits=sovits, gpt=gpt, speed=speed)
    tokens_seen: list[int] = []
    real_generate = None
    gpt_model, _ = eng.registry.gpt(req.gpt_path)
    real_generate = gpt_model.generate
    first_piece_tokens: list[int] = []

    def counting_generate(*args, token_hook=None, **kw):  # records how far the GPT was when a piece came out
        def hook(step, rows, chosen):
            tokens_seen.append(step)
            if token_hook is not None:
                token_hook(step, rows, chosen)
        return real_generate(*args, token_hook=hook, **kw)

    gpt_model.generate = counting_generate
    try:
        chunks = []
        for c in eng.stream(req, plan=StreamPlan.with_chunk(8)):
            if not chunks:
                first_piece_tokens.append(len(tokens_seen))
            chunks.append(c)
    finally:
        del gpt_model.generate
    whole = eng.synthesize(req)
    assert [c.index for c in chunks] == list(range(len(chunks))) and chunks[-1].last
    assert sum(c.last for c in chunks) == 1
    infos = [c.fragment for c in chunks if c.fragment is not None]
    assert len(infos) == len(whole.fragments) == 2 and len(chunks) > 2
    assert [i.tokens for i in infos] == [f.tokens for f in whole.fragments]
    assert first_piece_tokens[0] < whole.fragments[0].tokens  # audio before the GPT finished the first fragment
    streamed = np.concatenate([c.audio for c in chunks])
    assert len(streamed) == len(whole.audio)
    assert _snr(whole.audio, streamed) >= SNR_DB


def test_engine_fragment_mode_is_the_synthesis(env):
    eng = env["engine"]
    req = _request(env)
    chunks = list(eng.stream(req, mode="fragments"))
    assert len(chunks) == 2 and all(c.fragment is not None for c in chunks)
    np.testing.assert_array_equal(np.concatenate([c.audio for c in chunks]), eng.synthesize(req).audio)
    with pytest.raises(Exception, match="stream mode"):
        list(eng.stream(req, mode="bogus"))


def test_cancel_in_the_middle_of_a_stream(env):
    eng = env["engine"]
    stop = threading.Event()
    got = []
    with pytest.raises(Cancelled):
        for chunk in eng.stream(_request(env, max_tokens=200), cancel=stop, plan=StreamPlan.with_chunk(4)):
            got.append(chunk)
            stop.set()
    assert len(got) == 1
    assert not [t for t in threading.enumerate() if t.name == "gsv-stream"]


def test_closing_the_stream_stops_the_worker(env):
    eng = env["engine"]
    it = eng.stream(_request(env, max_tokens=200), plan=StreamPlan.with_chunk(4))
    first = next(it)
    assert first.audio.size > 0 and first.fragment is None
    t0 = time.perf_counter()
    it.close()
    assert time.perf_counter() - t0 < 30
    assert not [t for t in threading.enumerate() if t.name == "gsv-stream"]
    # the engine serves the next request normally
    assert eng.synthesize(_request(env, text="好。")).audio.size > 0


def test_no_inference_mode_leaks_to_the_consumer(env):
    for _ in env["engine"].stream(_request(env, text="好。")):
        assert not torch.is_inference_mode_enabled()
