"""The loading facade: files -> ready models; GPT tokens flow into SoVITS; bad pairings and bad weights are named."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gsv_core.checkpoints import load_sovits_checkpoint, save_sovits_checkpoint
from gsv_core.errors import ModelMismatchError
from gsv_core.features.spectrogram import linear_spectrogram
from gsv_core.loading import check_pairing, load_gpt, load_sovits, load_speaker_encoder
from gsv_core.models.sampling import SamplingParams


def _pick(parity_dir, pattern):
    files = sorted(parity_dir.glob(pattern))
    assert files, pattern
    return files


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpt_tokens_drive_every_sovits_version(parity_dir, dtype):
    io = np.load(_pick(parity_dir, "s1_*_io.npz")[-1])
    gpt_path = parity_dir / _pick(parity_dir, "s1_*_io.npz")[-1].name.replace("_io.npz", ".ckpt")
    gpt, gpt_info = load_gpt(gpt_path, dtype=dtype)
    inputs = np.load(parity_dir / "s2_inputs.npz")
    gen = torch.Generator().manual_seed(7)
    tokens = gpt.generate([torch.from_numpy(io["in_phones"])], [torch.from_numpy(io["in_bert"]).to(dtype)],
                          torch.from_numpy(io["in_prompt"]), SamplingParams(top_k=5), early_stop_num=30, generator=gen)[0]
    assert tokens.dim() == 1 and 0 < tokens.numel() <= 31 and int(tokens.max()) < 1024
    spec = linear_spectrogram(torch.from_numpy(inputs["wav32"])[None])
    for path in _pick(parity_dir, "s2_*.pth.xz"):
        sovits, info = load_sovits(path, dtype=dtype)
        if gpt_info.symbol_version == "v1" and info.symbol_version != "v1":
            continue
        text = torch.from_numpy(inputs["text_v1" if info.symbol_version == "v1" else "text_v2"])
        sv = [torch.from_numpy(inputs["sv_emb"])] if info.version in ("v2Pro", "v2ProPlus") else None
        with torch.no_grad():
            audio = sovits.decode(tokens[None, None], text, [spec], noise_scale=0.5, sv_emb=sv,
                                  generator=torch.Generator().manual_seed(1))
        assert audio.shape == (1, 1, 2 * tokens.numel() * 640), info.version
        assert audio.dtype == dtype and torch.isfinite(audio.float()).all()
        assert float(audio.float().abs().max()) <= 1.0 and float(audio.float().std()) > 0


def test_pairing_rules(parity_dir):
    infos = {}
    for f in _pick(parity_dir, "s1_*.ckpt"):
        infos[f.name] = load_gpt(f)[1]
    sovits = {f.name: load_sovits(f)[1] for f in _pick(parity_dir, "s2_*.pth.xz")}
    for g in infos.values():
        for s in sovits.values():
            rows = g.config["model"]["phoneme_vocab_size"]
            if rows < (322 if s.symbol_version == "v1" else 732):
                with pytest.raises(ModelMismatchError, match="cannot drive"):
                    check_pairing(g, s)
            else:
                check_pairing(g, s)


def test_sovits_weights_with_wrong_shapes_are_named(parity_dir, tmp_path):
    f = _pick(parity_dir, "s2_*.pth.xz")[0]
    ck = load_sovits_checkpoint(f)
    weight = dict(ck.weight)
    weight["ref_enc.fc.fc.bias"] = torch.zeros(7, dtype=torch.float16)
    out = save_sovits_checkpoint(tmp_path / "bad.pth", weight, ck.config, ck.info, ck.model_version)
    with pytest.raises(ModelMismatchError, match="ref_enc.fc.fc.bias"):
        load_sovits(out)
    del weight["ref_enc.fc.fc.bias"]
    out = save_sovits_checkpoint(tmp_path / "short.pth", weight, ck.config, ck.info, ck.model_version)
    with pytest.raises(ModelMismatchError, match="missing"):
        load_sovits(out)


def test_speaker_encoder_loads_through_facade(parity_dir):
    enc = load_speaker_encoder(parity_dir / "sv_eres2netv2_tiny.ckpt")
    wav = torch.from_numpy(np.load(parity_dir / "sv_expected.npz")["in_wav16"])
    emb = enc(wav)
    assert emb.shape[0] == 1 and emb.shape[1] > 0 and torch.isfinite(emb).all()
