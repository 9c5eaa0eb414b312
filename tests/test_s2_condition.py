"""The SoVITS reference condition (SynthesizerTrn.reference_condition): computed once per reference set, it gives
exactly the audio of the per-call path for every version, with one or several references, at any speed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gsv_core.errors import GSVError
from gsv_core.features.spectrogram import linear_spectrogram
from gsv_core.loading import load_sovits


@pytest.mark.parametrize("version", ["v1", "v2", "v2Pro", "v2ProPlus"])
def test_condition_gives_the_same_audio(parity_dir, version):
    model, _ = load_sovits(parity_dir / f"s2_{version}.pth.xz")
    s2 = np.load(parity_dir / "s2_inputs.npz")
    text = torch.from_numpy(s2["text_v1" if version == "v1" else "text_v2"])
    text = text if text.dim() == 2 else text[None]
    codes = torch.from_numpy(s2["codes"])
    codes = codes if codes.dim() == 3 else codes.view(1, 1, -1)
    specs = [linear_spectrogram(torch.from_numpy(s2[k])[None]) for k in ("wav32", "wav32_b")]
    pro = version in ("v2Pro", "v2ProPlus")
    svs = [torch.from_numpy(s2[k]) for k in ("sv_emb", "sv_emb_b")] if pro else None
    for refs, sv in ((specs[:1], svs[:1] if pro else None), (specs, svs)):
        cond = model.reference_condition(refs, sv_emb=sv)
        assert cond.references == len(refs) and cond.version == version
        assert sum(c is not None for c in cond.flow) == 4 and cond.dec is not None
        for speed in (1.0, 1.3):
            with torch.inference_mode():
                plain = model.decode(codes, text, refs, 0.5, speed, sv_emb=sv,
                                     generator=torch.Generator().manual_seed(5))
                fast = model.decode(codes, text, None, 0.5, speed, generator=torch.Generator().manual_seed(5),
                                    condition=cond)
            assert torch.equal(plain, fast)


def test_condition_of_another_version_is_refused(parity_dir):
    v2, _ = load_sovits(parity_dir / "s2_v2.pth.xz")
    pro, _ = load_sovits(parity_dir / "s2_v2Pro.pth.xz")
    s2 = np.load(parity_dir / "s2_inputs.npz")
    cond = v2.reference_condition([linear_spectrogram(torch.from_numpy(s2["wav32"])[None])])
    with pytest.raises(GSVError, match="cannot drive"):
        pro.decode(torch.zeros(1, 1, 10, dtype=torch.long), torch.zeros(1, 5, dtype=torch.long), None,
                   condition=cond)
    with pytest.raises(GSVError, match="speaker-verification"):
        pro.reference_condition([linear_spectrogram(torch.from_numpy(s2["wav32"])[None])])
