"""Parity of the Kaldi fbank and the ERes2NetV2 speaker model with upstream's golden outputs (fixture README §3).

Waves are discovered from the ``in_<w>`` arrays of sv_expected.npz; every one must come with ``fbank_<w>``,
``forward3_<w>`` and ``forward_<w>``.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gsv_core.checkpoints import load_sv_state_dict
from gsv_core.errors import AudioError, GSVError
from gsv_core.features.fbank import kaldi_fbank
from gsv_core.features.speaker import SpeakerEncoder, cosine_similarity
from gsv_core.models.sv import ERes2NetV2, config_from_state_dict

FBANK_ATOL = 5e-3
EMB_ATOL, EMB_RTOL = 1e-4, 1e-3
# Kaldi/torchaudio option names in the fixture meta -> ours.
KALDI_NAMES = {"frame_length": "frame_length_ms", "frame_shift": "frame_shift_ms"}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def sv(parity_dir):
    expected = dict(np.load(parity_dir / "sv_expected.npz"))
    meta = json.loads((parity_dir / "sv_meta.json").read_text(encoding="utf-8"))
    waves = sorted(k[len("in_"):] for k in expected if k.startswith("in_"))
    assert waves, "sv_expected.npz holds no in_<w> input"
    for w in waves:
        for kind in ("fbank", "forward3", "forward"):
            assert f"{kind}_{w}" in expected, f"sv_expected.npz lacks {kind}_{w}"
    state_dict = load_sv_state_dict(parity_dir / "sv_eres2netv2_tiny.ckpt")
    fbank_kwargs = {KALDI_NAMES.get(k, k): v for k, v in meta["fbank_kwargs"].items()}
    return dict(expected=expected, meta=meta, waves=waves, sd=state_dict, fbank_kwargs=fbank_kwargs)


def _close(actual: torch.Tensor, expected: np.ndarray, atol: float, rtol: float = 0.0, what: str = "") -> None:
    actual = actual.detach().float().cpu().numpy()
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol, err_msg=what)


def _encoder(sv, how: str, device: str) -> SpeakerEncoder:
    arch = sv["meta"]["tiny_config"] if how == "meta_config" else {}
    return SpeakerEncoder.from_state_dict(sv["sd"], **arch).to(device)


def test_fbank(sv):
    for w in sv["waves"]:
        wave = torch.from_numpy(sv["expected"][f"in_{w}"])
        _close(kaldi_fbank(wave, **sv["fbank_kwargs"])[None], sv["expected"][f"fbank_{w}"], FBANK_ATOL, what=w)
        # [1, T] input (what upstream passes) gives the same frames.
        _close(kaldi_fbank(wave[None], **sv["fbank_kwargs"])[None], sv["expected"][f"fbank_{w}"], FBANK_ATOL, what=w)


def test_fbank_too_short_is_a_user_error(sv):
    wave = torch.from_numpy(sv["expected"][f"in_{sv['waves'][0]}"])[:100]
    with pytest.raises(AudioError):
        kaldi_fbank(wave, **sv["fbank_kwargs"])


def test_inferred_config_matches_meta(sv):
    tiny = sv["meta"]["tiny_config"]
    inferred = config_from_state_dict(sv["sd"], feat_dim=tiny["feat_dim"])
    assert {**inferred, "num_blocks": list(inferred["num_blocks"])} == {**tiny, "num_blocks": list(tiny["num_blocks"])}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("how", ["meta_config", "inferred"])
def test_embeddings_from_fixture_fbank(sv, how, device):
    enc = _encoder(sv, how, device)
    for w in sv["waves"]:
        feats = torch.from_numpy(sv["expected"][f"fbank_{w}"]).to(device)
        with torch.no_grad():
            _close(enc.model.forward3(feats), sv["expected"][f"forward3_{w}"], EMB_ATOL, EMB_RTOL, f"forward3 {w}")
            _close(enc.model(feats), sv["expected"][f"forward_{w}"], EMB_ATOL, EMB_RTOL, f"forward {w}")


@pytest.mark.parametrize("device", DEVICES)
def test_speaker_encoder_end_to_end(sv, device):
    enc = _encoder(sv, "inferred", device)
    for w in sv["waves"]:
        wave = torch.from_numpy(sv["expected"][f"in_{w}"]).to(device)
        _close(enc(wave), sv["expected"][f"forward3_{w}"], EMB_ATOL, EMB_RTOL, f"forward3 {w}")
        _close(enc.segment_embedding(wave), sv["expected"][f"forward_{w}"], EMB_ATOL, EMB_RTOL, f"forward {w}")


def test_batch_and_low_precision(sv):
    enc = _encoder(sv, "inferred", "cpu")
    w = sv["waves"][0]
    wave = torch.from_numpy(sv["expected"][f"in_{w}"])
    ref = torch.from_numpy(sv["expected"][f"forward3_{w}"])
    _close(enc(torch.stack([wave, wave])), np.concatenate([ref.numpy()] * 2), EMB_ATOL, EMB_RTOL, "batch of 2")
    for dtype in (torch.bfloat16, torch.float16):
        low = enc.to(dtype)(wave)
        assert low.dtype == dtype and torch.isfinite(low).all()
        assert cosine_similarity(low, ref).item() > 0.999
        enc = enc.float()


def test_user_errors(sv):
    with pytest.raises(GSVError):
        SpeakerEncoder.from_state_dict({k: v for k, v in sv["sd"].items() if not k.startswith("layer2.")})
    wrong = dict(sv["meta"]["tiny_config"], embedding_size=sv["meta"]["tiny_config"]["embedding_size"] + 1)
    with pytest.raises(GSVError):
        SpeakerEncoder.from_state_dict(sv["sd"], **wrong)
    with pytest.raises(GSVError):
        cosine_similarity(torch.ones(4), torch.ones(5))


def test_cosine_similarity(sv):
    w = sv["waves"][0]
    a = torch.from_numpy(sv["expected"][f"forward_{w}"])
    assert cosine_similarity(a, a).item() == pytest.approx(1.0, abs=1e-6)
    assert cosine_similarity(a, -a).item() == pytest.approx(-1.0, abs=1e-6)
    assert cosine_similarity(a, 3.0 * a).item() == pytest.approx(1.0, abs=1e-6)
    others = [torch.from_numpy(sv["expected"][f"forward_{v}"]) for v in sv["waves"]]
    expected = [float(torch.dot(a[0], o[0]) / (a.norm() * o.norm())) for o in others]
    got = cosine_similarity(a.expand(len(others), -1), torch.cat(others))
    assert got.tolist() == pytest.approx(expected, abs=1e-5)


def test_meta_device_construction(sv):
    with torch.device("meta"):
        model = ERes2NetV2(**sv["meta"]["tiny_config"])
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in sv["sd"].items()}
    w = sv["waves"][0]
    frames = sv["expected"][f"fbank_{w}"].shape[1:]
    out = model.forward3(torch.empty((1, *frames), device="meta"))
    assert tuple(out.shape) == sv["expected"][f"forward3_{w}"].shape
