"""Parity of gsv_core's s2 SoVITS synthesizer and spectrogram with upstream GPT-SoVITS (golden fixtures).

Everything is discovered from the fixture folder: the versions from ``s2_<version>_expected.npz``, the decode cases
from the ``decode_<case>_audio`` arrays, the number of references of a case from its ``ref_enc_out_ref<J>``
arrays, the speed from the case name, the STFT parameters from the checkpoint configs.
"""
from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from gsv_core.checkpoints import load_sovits_checkpoint
from gsv_core.errors import CheckpointError, GSVError, ModelMismatchError, UnsupportedVersionError
from gsv_core.features.spectrogram import hz_to_slaney_mel, linear_spectrogram, mel_filterbank, slaney_mel_to_hz, spec_to_mel
from gsv_core.models.s2.synthesizer import build_synthesizer

AUDIO_ATOL = 1e-4
INTER_ATOL, INTER_RTOL = 1e-4, 1e-4
SPEC_ATOL, SPEC_RTOL = 1e-3, 1e-4


def _versions(parity_dir: Path) -> list[str]:
    found = []
    for f in sorted(parity_dir.glob("s2_*_expected.npz")):
        version = f.name[len("s2_") : -len("_expected.npz")]
        for other in (f"s2_{version}.pth.xz", f"s2_{version}_meta.json"):
            assert (parity_dir / other).is_file(), f"{f.name} has no companion {other}"
        found.append(version)
    assert found, f"no s2_*_expected.npz in {parity_dir}"
    return found


def _ref_suffix(j: int) -> str:
    """Reference J's array suffix in the input files: '', '_b', '_c', ..."""
    return "" if j == 0 else "_" + chr(ord("a") + j)


@pytest.fixture(scope="module")
def s2(parity_dir):
    """version -> dict(ck, model, meta, expected, load_result); inputs under key None."""
    out = {None: {"inputs": np.load(parity_dir / "s2_inputs.npz"), "specs": np.load(parity_dir / "s2_refer_spec.npz")}}
    for version in _versions(parity_dir):
        ck = load_sovits_checkpoint(parity_dir / f"s2_{version}.pth.xz")
        model = build_synthesizer(ck.config, ck.model_version).eval()
        result = model.load_state_dict(ck.weight, strict=False)
        out[version] = {
            "ck": ck,
            "model": model,
            "load_result": result,
            "meta": json.loads((parity_dir / f"s2_{version}_meta.json").read_text()),
            "expected": np.load(parity_dir / f"s2_{version}_expected.npz"),
        }
    return out


def _items(s2):
    return [(v, d) for v, d in s2.items() if v is not None]


def _close(actual: torch.Tensor, expected: np.ndarray, what: str, atol=INTER_ATOL, rtol=INTER_RTOL):
    a = actual.detach().cpu().numpy()
    assert a.shape == expected.shape, f"{what}: shape {a.shape} != expected {expected.shape}"
    if np.issubdtype(expected.dtype, np.integer):
        np.testing.assert_array_equal(a, expected, err_msg=what)
    else:
        np.testing.assert_allclose(a, expected, atol=atol, rtol=rtol, err_msg=what)


# ----------------------------------------------------------------------------------------------------------------
# loading


def test_only_enc_q_is_missing(s2):
    for version, d in _items(s2):
        assert d["ck"].model_version == d["meta"]["version"]
        missing, unexpected = d["load_result"].missing_keys, d["load_result"].unexpected_keys
        assert missing, f"{version}: an exported file never holds enc_q, so enc_q keys must be reported missing"
        assert all(k.startswith("enc_q.") for k in missing), f"{version}: missing non-enc_q keys {missing}"
        assert sorted(missing) == sorted(d["meta"]["load_state_dict_missing_keys"]), version
        assert unexpected == [] == d["meta"]["load_state_dict_unexpected_keys"], f"{version}: unexpected {unexpected}"
        shapes = {k: list(t.shape) for k, t in d["model"].state_dict().items()}
        for key, shape in d["meta"]["weight_shapes"].items():
            assert shapes[key] == shape, f"{version}: {key} {shapes[key]} != {shape}"


def test_load_exported_weights_rejects_foreign_keys(s2):
    version, d = _items(s2)[0]
    model = build_synthesizer(d["ck"].config, d["ck"].model_version)
    model.load_exported_weights(d["ck"].weight)  # the genuine file loads
    weight = dict(d["ck"].weight)
    weight["not_a_module.weight"] = torch.zeros(1)
    with pytest.raises(ModelMismatchError):
        model.load_exported_weights(weight)
    weight = {k: v for k, v in d["ck"].weight.items() if not k.startswith("dec.")}
    with pytest.raises(ModelMismatchError):
        model.load_exported_weights(weight)


def test_builder_rejects_unknown_version_and_broken_config(s2):
    _, d = _items(s2)[0]
    with pytest.raises(UnsupportedVersionError):
        build_synthesizer(d["ck"].config, "v4")
    config = copy.deepcopy(d["ck"].config)
    del config["model"]["upsample_rates"]
    with pytest.raises(CheckpointError):
        build_synthesizer(config, d["ck"].model_version)
    config = copy.deepcopy(d["ck"].config)
    config["model"]["resblock"] = "2"
    with pytest.raises(CheckpointError):
        build_synthesizer(config, d["ck"].model_version)


# ----------------------------------------------------------------------------------------------------------------
# semantic tokens


def test_extract_latent(s2):
    ssl = torch.from_numpy(s2[None]["inputs"]["ssl"])
    for version, d in _items(s2):
        exp = d["expected"]
        with torch.no_grad():
            codes = d["model"].extract_latent(ssl)
            proj = d["model"].ssl_proj(ssl)
        _close(proj, exp["extract_latent_ssl_proj"], f"{version} ssl_proj")
        _close(codes, exp["extract_latent_codes"], f"{version} codes")


# ----------------------------------------------------------------------------------------------------------------
# reference spectrogram


def test_reference_spectrograms(s2):
    inputs, specs = s2[None]["inputs"], s2[None]["specs"]
    data = _items(s2)[0][1]["ck"].config["data"]
    assert specs.files
    for key in specs.files:
        wav = torch.from_numpy(inputs["wav32" + key[len("refer_spec") :]])[None]
        spec = linear_spectrogram(wav, n_fft=data["filter_length"], hop=data["hop_length"], win=data["win_length"])
        _close(spec, specs[key], key, atol=SPEC_ATOL, rtol=SPEC_RTOL)


def test_spectrogram_low_precision_input(s2):
    wav = torch.from_numpy(s2[None]["inputs"]["wav32"])[None]
    ref = linear_spectrogram(wav)
    for dtype in (torch.float16, torch.bfloat16):
        spec = linear_spectrogram(wav.to(dtype))
        assert spec.dtype == dtype and spec.shape == ref.shape
        # the input rounding dominates: ~2^-8 (bf16) of a signal whose spectrum peaks near 85
        np.testing.assert_allclose(spec.float().numpy(), ref.numpy(), atol=1.0, rtol=0.02)


# ----------------------------------------------------------------------------------------------------------------
# decode


def _cases(expected) -> list[str]:
    cases = sorted(k[len("decode_") : -len("_audio")] for k in expected.files if k.startswith("decode_") and k.endswith("_audio"))
    assert cases, "no decode_<case>_audio arrays"
    return cases


def _decode_case(s2, version: str, case: str, capture: dict | None = None, model=None):
    d = s2[version]
    inputs, specs, exp = s2[None]["inputs"], s2[None]["specs"], d["expected"]
    model = model or d["model"]
    m = re.search(r"speed([0-9.]+)$", case)
    assert m, f"cannot read the speed of case {case!r}"
    speed = float(m.group(1))
    prefix = f"decode_{case}_"
    n_refs = len([k for k in exp.files if k.startswith(prefix + "ref_enc_out_ref")])
    assert n_refs >= 1, f"{version} {case}: no ref_enc_out_ref<J> arrays"
    dtype = next(model.parameters()).dtype
    refer = [torch.from_numpy(specs["refer_spec" + _ref_suffix(j)]).to(dtype) for j in range(n_refs)]
    sv = [torch.from_numpy(inputs["sv_emb" + _ref_suffix(j)]).to(dtype) for j in range(n_refs)] if model.is_pro else None
    text = torch.from_numpy(inputs[f"text_{d['ck'].symbol_version}"])
    codes = torch.from_numpy(inputs["codes"])
    return model.decode(codes, text, refer, noise_scale=0.0, speed=speed, sv_emb=sv, capture=capture)


def test_decode_matches_upstream(s2):
    for version, d in _items(s2):
        exp = d["expected"]
        for case in _cases(exp):
            capture: dict = {}
            audio = _decode_case(s2, version, case, capture)
            prefix = f"decode_{case}_"
            _close(audio, exp[prefix + "audio"], f"{version} {case} audio", atol=AUDIO_ATOL, rtol=0)
            names = [k[len(prefix) :] for k in exp.files if k.startswith(prefix) and k != prefix + "audio"]
            assert names, f"{version} {case}: no intermediates"
            for name in names:
                assert name in capture, f"{version} {case}: decode did not capture {name!r}"
                _close(capture[name], exp[prefix + name], f"{version} {case} {name}")


def test_decode_requires_sv_embeddings_for_pro(s2):
    pro = [(v, d) for v, d in _items(s2) if d["model"].is_pro]
    if not pro:
        pytest.skip("no v2Pro/v2ProPlus fixture in this set")
    version, d = pro[0]
    inputs, specs = s2[None]["inputs"], s2[None]["specs"]
    args = (torch.from_numpy(inputs["codes"]), torch.from_numpy(inputs[f"text_{d['ck'].symbol_version}"]))
    refer = [torch.from_numpy(specs["refer_spec"])]
    with pytest.raises(GSVError):
        d["model"].decode(*args, refer, sv_emb=None)
    with pytest.raises(GSVError):
        d["model"].decode(*args, refer + refer, sv_emb=[torch.from_numpy(inputs["sv_emb"])])


def test_decode_noise_follows_generator(s2):
    version, d = _items(s2)[0]
    inputs, specs = s2[None]["inputs"], s2[None]["specs"]
    model = d["model"]
    sv = [torch.from_numpy(inputs["sv_emb"])] if model.is_pro else None
    args = (torch.from_numpy(inputs["codes"]), torch.from_numpy(inputs[f"text_{d['ck'].symbol_version}"]),
            [torch.from_numpy(specs["refer_spec"])])

    def run(seed, scale=0.5):
        return model.decode(*args, noise_scale=scale, sv_emb=sv, generator=torch.Generator().manual_seed(seed))

    a, b, c, quiet = run(7), run(7), run(8), run(7, 0.0)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-4)
    assert not torch.allclose(a, quiet, atol=1e-4)


def test_weight_norm_cache_follows_new_weights(s2):
    """Reloading different weights into a model that already decoded must change its output accordingly."""
    version, d = _items(s2)[0]
    case = _cases(d["expected"])[0]
    model = build_synthesizer(d["ck"].config, d["ck"].model_version).eval()
    model.load_state_dict(d["ck"].weight, strict=False)
    before = _decode_case(s2, version, case, model=model)
    changed = dict(d["ck"].weight)
    for key in [k for k in changed if k.startswith("dec.ups.") and k.endswith("weight_g")]:
        changed[key] = changed[key] * 2
    model.load_state_dict(changed, strict=False)
    after = _decode_case(s2, version, case, model=model)
    fresh = build_synthesizer(d["ck"].config, d["ck"].model_version).eval()
    fresh.load_state_dict(changed, strict=False)
    assert not torch.allclose(before, after, atol=1e-4)
    assert torch.equal(after, _decode_case(s2, version, case, model=fresh))


@pytest.mark.parametrize("dtype, atol", [(torch.float16, 1e-2), (torch.bfloat16, 5e-2)])
def test_decode_low_precision(s2, dtype, atol):
    # one model per kind (plain / Pro) keeps this light; the float32 test above covers every version exactly
    picked = {}
    for version, d in _items(s2):
        picked.setdefault(d["model"].is_pro, version)
    for version in picked.values():
        d = s2[version]
        model = build_synthesizer(d["ck"].config, d["ck"].model_version).eval()
        model.load_state_dict(d["ck"].weight, strict=False)
        model = model.to(dtype=dtype)
        case = _cases(d["expected"])[0]
        audio = _decode_case(s2, version, case, model=model)
        assert audio.dtype == dtype
        assert torch.isfinite(audio).all()
        _close(audio.float(), d["expected"][f"decode_{case}_audio"], f"{version} {case} {dtype}", atol=atol, rtol=0)


# ----------------------------------------------------------------------------------------------------------------
# mel filterbank (training loss; no fixture: checked against the Slaney formulas written out independently)


def _slaney_hz_to_mel(f: float) -> float:
    return f * 3 / 200 if f < 1000 else 15 + 27 * math.log(f / 1000) / math.log(6.4)


def _slaney_mel_to_hz(m: float) -> float:
    return m * 200 / 3 if m < 15 else 1000 * 6.4 ** ((m - 15) / 27)


def test_slaney_scale_anchors():
    np.testing.assert_allclose(hz_to_slaney_mel(np.array([0.0, 200 / 3, 1000.0, 6400.0])), [0, 1, 15, 42], atol=1e-12)
    hz = np.array([0.0, 50.0, 999.0, 1000.0, 1234.5, 16000.0])
    np.testing.assert_allclose(slaney_mel_to_hz(hz_to_slaney_mel(hz)), hz, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(hz_to_slaney_mel(hz), [_slaney_hz_to_mel(f) for f in hz], rtol=1e-12)


@pytest.mark.parametrize("sr, n_fft, n_mels, fmin, fmax", [(32000, 2048, 128, 0.0, None), (16000, 512, 40, 50.0, 7000.0)])
def test_mel_filterbank_matches_formula(sr, n_fft, n_mels, fmin, fmax):
    fb = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    assert fb.shape == (n_mels, n_fft // 2 + 1) and fb.dtype == np.float32
    top = sr / 2 if fmax is None else fmax
    lo_mel, hi_mel = _slaney_hz_to_mel(fmin), _slaney_hz_to_mel(top)
    edges = [_slaney_mel_to_hz(lo_mel + (hi_mel - lo_mel) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    ref = np.zeros_like(fb, dtype=np.float64)
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            ref[m, k] = max(0.0, min((f - lo) / (mid - lo), (hi - f) / (hi - mid))) * 2 / (hi - lo)
    np.testing.assert_allclose(fb, ref, rtol=1e-5, atol=1e-7 * ref.max())
    assert (fb.max(axis=1) > 0).all(), "every filter covers at least one bin"


def test_spec_to_mel_is_log_of_filterbank_product(s2):
    spec = torch.from_numpy(s2[None]["specs"]["refer_spec"])
    mel = spec_to_mel(spec, 2048, 128, 32000, 0.0, None)
    fb = torch.from_numpy(mel_filterbank(32000, 2048, 128))
    assert mel.shape == (1, 128, spec.shape[-1])
    torch.testing.assert_close(mel, torch.log(torch.clamp(fb @ spec, min=1e-5)))


# ----------------------------------------------------------------------------------------------------------------
# training directions (no fixture: the flow must invert exactly what it maps, the posterior must respect lengths)


def test_posterior_and_flow_round_trip(s2):
    version, d = _items(s2)[-1]
    model = d["model"]
    spec = torch.from_numpy(s2[None]["specs"]["refer_spec"])
    spec = torch.cat([spec, spec.flip(-1)])  # batch of 2 with different content
    lengths = torch.tensor([spec.size(-1), spec.size(-1) - 7])
    mask = (torch.arange(spec.size(-1))[None] < lengths[:, None]).to(spec.dtype)[:, None]
    sv = torch.from_numpy(s2[None]["inputs"]["sv_emb"]).expand(2, -1) if model.is_pro else None
    with torch.no_grad():
        ge = model.timbre(spec, mask=mask, sv_emb=sv)
        z, m_q, logs_q, z_mask = model.enc_q(spec, lengths, g=ge, generator=torch.Generator().manual_seed(0))
        z_p = model.flow(z, z_mask, g=ge)
        back = model.flow(z_p, z_mask, g=ge, reverse=True)
    assert torch.equal(z_mask, mask)
    assert (z[1, :, lengths[1]:] == 0).all() and (z_p[1, :, lengths[1]:] == 0).all()
    assert not torch.allclose(z_p, z, atol=1e-3), "the flow should not be the identity on trained weights"
    torch.testing.assert_close(back, z, atol=1e-5, rtol=1e-5)
