"""SoVITS v3/v4 end to end through gsv_core.api.Engine on the tiny fixture models (gsv_parity_v34) laid out as the
pretrained folder: rates and lengths, seeds, CFM batching across fragments, streaming, speed, LoRA files, several
requests at once, super-sampling, sample-step defaults, and the clear errors (reference-free, missing vocoder,
LoRA without its base model, super-sampling without its weights)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from config import load_settings
from gsv_core.api import Engine
from gsv_core.errors import CheckpointError, GSVError
from gsv_core.engine import RequestError
from helpers.v34 import build_v34_home

TEXT = "今天天气很好。我们去公园散步吧！"
REF_TEXT = "你早上好，这是参考声音。"
TOKENS = 10  # per fragment (random GPT weights rarely emit EOS)
STEPS = 2
UPSAMPLE = {"v3": 256, "v4": 480}
RATE = {"v3": 24000, "v4": 48000}


def speech_samples(version: str, tokens: int, speed: float = 1.0) -> int:
    """Vocoder samples of a fragment: 2N frames at 50 Hz (int(2N / speed) + 1 when speed != 1), nearest-upsampled
    by 1.875 (v3) or 2 (v4), times the vocoder's hop."""
    frames = 2 * tokens if speed == 1 else int(2 * tokens / speed) + 1
    scale = 1.875 if version == "v3" else 2
    return int(frames * scale) * UPSAMPLE[version]


@pytest.fixture(scope="module")
def home(tmp_path_factory, parity_dir, tiny_assets):
    root = tmp_path_factory.mktemp("v34_engine")
    files = build_v34_home(root, parity_dir)
    settings = load_settings(environ={"GSV_HOME": str(root)}, my_config=root / "none.py")
    engine = Engine.open(settings, device="cpu", precision="fp32", bert_dir=tiny_assets["bert"],
                         hubert_dir=tiny_assets["hubert"], sv_path=tiny_assets["sv"], log_path=root / "tts_log.csv")
    return {**files, "settings": settings, "engine": engine, "ref": str(tiny_assets["ref"]), "aux": str(tiny_assets["aux"])}


def _req(home, version="v3", sovits=None, **kw):
    values = dict(text=TEXT, ref_audio=home["ref"], ref_text=REF_TEXT, gpt_path=str(home["gpt"]),
                  sovits_path=str(sovits or home[version]), seed=1234, split_method="cut5", max_tokens=TOKENS,
                  sample_steps=STEPS)
    values.update(kw)
    return home["engine"].request(values)


@pytest.fixture(scope="module")
def v3_result(home):
    return home["engine"].synthesize(_req(home, "v3"))


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_rate_length_pauses_and_log(home, v3_result, version):
    result = v3_result if version == "v3" else home["engine"].synthesize(_req(home, "v4"))
    rate = RATE[version]
    assert result.version == version and result.sample_rate == rate and result.audio.dtype == np.float32
    assert len(result.fragments) == 2 and all(0 < f.tokens <= TOKENS for f in result.fragments)
    speech = [speech_samples(version, f.tokens) for f in result.fragments]
    pauses = [int(rate * f.pause_after) for f in result.fragments]  # sized at the output rate
    assert len(result.audio) == sum(speech) + sum(pauses)
    assert result.fragments[0].seconds == pytest.approx(speech[0] / rate)
    assert np.all(result.audio[speech[0]: speech[0] + pauses[0]] == 0)
    assert np.isfinite(result.audio).all() and result.audio.std() > 0 and np.abs(result.audio).max() <= 1.0
    assert set(result.timings) == {"reference", "frontend", "bert", "s1", "s2", "post"}
    log = (home["root"] / "tts_log.csv").read_text(encoding="utf-8")
    assert Path(home[version]).name in log


def test_seeded_and_batch_independent(home, v3_result):
    """The same seed gives the same audio; CFM batches of 1 and of 8 fragments give the same audio (each
    fragment draws its own noise; greedy GPT so the tokens agree)."""
    eng = home["engine"]
    again = eng.synthesize(_req(home, "v3"))
    np.testing.assert_array_equal(again.audio, v3_result.audio)
    greedy = dict(top_k=1)
    together = eng.synthesize(_req(home, "v3", batch_size=8, **greedy))
    alone = eng.synthesize(_req(home, "v3", batch_size=1, **greedy))
    assert [f.tokens for f in together.fragments] == [f.tokens for f in alone.fragments]
    np.testing.assert_allclose(together.audio, alone.audio, atol=2e-4)


def test_stream_equals_whole(home, v3_result):
    chunks = list(home["engine"].stream(_req(home, "v3")))
    assert [c.index for c in chunks] == [0, 1] and chunks[-1].last and all(c.sample_rate == 24000 for c in chunks)
    np.testing.assert_allclose(np.concatenate([c.audio for c in chunks]), v3_result.audio, atol=2e-4)


def test_speed_shortens_the_speech(home):
    eng = home["engine"]
    fast = eng.synthesize(_req(home, "v4", text="今天天气很好。", speed=1.25, top_k=1))
    slow = eng.synthesize(_req(home, "v4", text="今天天气很好。", speed=1.0, top_k=1))
    assert [f.tokens for f in fast.fragments] == [f.tokens for f in slow.fragments]
    n = fast.fragments[0].tokens
    assert fast.fragments[0].seconds * 48000 == pytest.approx(speech_samples("v4", n, 1.25))
    assert fast.speech_seconds < slow.speech_seconds


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_lora_files_load_on_their_base(home, version):
    """Upstream's LoRA exports in SoVITS_weights_v3/_v4 find their base model in the pretrained folder."""
    eng = home["engine"]
    info = eng.model_info(home[f"{version}_lora"], "SoVITS")
    assert info.version == version and info.lora_rank == 4 and info.base == home[version].resolve()
    req = _req(home, sovits=home[f"{version}_lora"], text="今天天气很好。", top_k=1)
    lora = eng.synthesize(req)
    base = eng.synthesize(req.replace(sovits_path=str(home[version])))
    assert lora.sample_rate == RATE[version] and lora.audio.shape == base.audio.shape
    assert not np.allclose(lora.audio, base.audio, atol=1e-4)


def test_many_requests_of_several_versions(home, v3_result):
    eng = home["engine"]
    v3, v4 = eng.synthesize_many([_req(home, "v3"), _req(home, "v4", text="今天天气很好。")])
    assert (v3.sample_rate, v4.sample_rate) == (24000, 48000)
    np.testing.assert_allclose(v3.audio, v3_result.audio, atol=2e-4)


def test_sample_steps_default_per_version(home, monkeypatch):
    """None (0 in a form) means the version's default: 32 for v3, 8 for v4 (upstream's webui); aux references are
    ignored by v3/v4 (as upstream)."""
    from gsv_core.engine import pipeline

    seen = []

    def fake(model, vocoder, ref, frags, steps, speed, noises, max_batch):
        seen.append(steps)
        return [torch.zeros(100) for _ in frags]

    monkeypatch.setattr(pipeline.cfm_decode, "decode_fragments", fake)
    eng = home["engine"]
    eng.synthesize(_req(home, "v3", sample_steps=None, aux_refs=(home["aux"],)))
    eng.synthesize(_req(home, "v4", sample_steps=0))
    eng.synthesize(_req(home, "v4", sample_steps="16"))
    assert seen == [32, 8, 16]
    with pytest.raises(RequestError, match="sample_steps"):
        eng.synthesize(_req(home, "v3", sample_steps=500))


def test_reference_free_is_refused(home):
    with pytest.raises(RequestError, match="reference text"):
        home["engine"].synthesize(_req(home, "v4", ref_text=""))


def test_super_sampling(home, tmp_path):
    eng = home["engine"]
    folder = Path(home["settings"].pretrained_dir) / "AP_BWE_main" / "24kto48k"
    assert not eng.sovits_options(home["v3"])["super_sampling"]
    with pytest.raises(CheckpointError, match="g_24kto48k.zip") as err:
        eng.synthesize(_req(home, "v3", super_sampling=True))
    assert "config.json" in str(err.value) and str(folder) in str(err.value)
    # v4 ignores the option (as upstream): no error, 48 kHz anyway
    assert eng.synthesize(_req(home, "v4", text="今天天气很好。", super_sampling=True)).sample_rate == 48000
    from gsv_core.models import ap_bwe

    config = {"ConvNeXt_channels": 16, "ConvNeXt_layers": 1, "n_fft": 64, "hop_size": 8, "win_size": 32,
              "hr_sampling_rate": 48000, "lr_sampling_rate": 24000}
    torch.manual_seed(0)
    folder.mkdir(parents=True)
    torch.save({"generator": ap_bwe.APNetBWE(config).state_dict()}, folder / "g_24kto48k.zip")
    (folder / "config.json").write_text(json.dumps(config))
    options = eng.sovits_options(home["v3"])
    assert options == {"version": "v3", "cfm": True, "sample_steps": (4, 8, 16, 32, 64, 128),
                       "default_sample_steps": 32, "super_sampling": True}
    assert not eng.sovits_options(home["v4"])["super_sampling"]
    plain = eng.synthesize(_req(home, "v3", text="今天天气很好。"))
    wide = eng.synthesize(_req(home, "v3", text="今天天气很好。", super_sampling=True))
    assert wide.sample_rate == 48000 and abs(len(wide.audio) - 2 * len(plain.audio)) <= 16
    assert np.abs(wide.audio).max() <= 1.0 and wide.fragments[0].seconds == plain.fragments[0].seconds
    chunks = list(eng.stream(_req(home, "v3", text="今天天气很好。", super_sampling=True)))
    assert chunks[0].sample_rate == 48000


def test_missing_vocoder_and_missing_lora_base(home, tmp_path, parity_dir, tiny_assets):
    root = tmp_path / "bare"
    files = build_v34_home(root, parity_dir, vocoders=False)
    settings = load_settings(environ={"GSV_HOME": str(root)}, my_config=root / "none.py")
    eng = Engine.open(settings, device="cpu", precision="fp32", bert_dir=tiny_assets["bert"],
                      hubert_dir=tiny_assets["hubert"], log_path=None)
    base = dict(text=TEXT, ref_audio=home["ref"], ref_text=REF_TEXT, gpt_path=str(files["gpt"]), max_tokens=TOKENS)
    with pytest.raises(CheckpointError, match="bigvgan_v2_24khz_100band_256x") as err:
        eng.synthesize({**base, "sovits_path": str(files["v3"])})
    assert "bigvgan_generator.pt" in str(err.value) and "gsv_core.download --version v3" in str(err.value)
    with pytest.raises(CheckpointError, match="vocoder.pth"):
        eng.synthesize({**base, "sovits_path": str(files["v4"])})
    files["v3"].unlink()
    with pytest.raises(GSVError, match="s2Gv3.pth") as err:
        eng.synthesize({**base, "sovits_path": str(files["v3_lora"])})
    assert "LoRA" in str(err.value) and "not found" in str(err.value)
    assert "gsv_core.download --version v3" in str(err.value)


def test_sovits_options_of_other_versions(home, parity_dir):
    settings = dataclasses.replace(home["settings"], sovits_weight_dirs=(parity_dir,))
    eng = Engine.open(settings, device="cpu", log_path=None)
    assert eng.sovits_options(parity_dir / "s2_v2.pth.xz") == {
        "version": "v2", "cfm": False, "sample_steps": (), "default_sample_steps": 0, "super_sampling": False}
    with pytest.raises(GSVError, match="not one of the listed models"):
        home["engine"].sovits_options(parity_dir / "s2_v2.pth.xz")
