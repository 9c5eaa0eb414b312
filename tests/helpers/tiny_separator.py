"""A tiny stand-in for a UVR separation model, in the layout audio-separator downloads (no network).

It is a real BS-Roformer of audio-separator's own class (dim 16, one layer, 4 frequency bands; 59 k parameters),
saved as a checkpoint with its YAML configuration, plus the ``download_checks.json`` model list the library reads
(listing only this model), so ``Separator.load_model`` and ``separate`` run their whole path offline: STFT, band
split, transformers, mask estimation, overlap-add, stem writing. Its weights are random except the last layer of
the mask estimator, which is set so that the mask is a fixed band-pass: 1 between ``low_hz`` and ``high_hz`` and 0
elsewhere. The "vocals" stem is therefore the mixture with everything below ``low_hz`` and above ``high_hz``
removed, and "other" the rest: a predictable separation a test can measure (a real model is exercised by
tests/dataset/test_separation.py when its file is present).
"""
from __future__ import annotations

import json
from pathlib import Path

FILENAME = "tiny_bs_roformer_standin.ckpt"
SR = 44100
N_FFT = 512
HOP = 441


def build_tiny_separator(model_dir: Path, low_hz: float = 180.0, high_hz: float = 5500.0) -> Path:
    import torch
    import yaml

    from audio_separator.separator.uvr_lib_v5.roformer.bs_roformer import BSRoformer

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    bins = N_FFT // 2 + 1
    bin_hz = SR / N_FFT
    lo_bin = int(round(low_hz / bin_hz))
    hi_bin = int(round(high_hz / bin_hz))
    bands = (lo_bin, hi_bin - lo_bin, bins - hi_bin - 40, 40)  # [stop, pass, stop, stop]
    passing = (False, True, False, False)
    model_cfg = dict(dim=16, depth=1, stereo=True, num_stems=1, time_transformer_depth=1, freq_transformer_depth=1,
                     linear_transformer_depth=0, freqs_per_bands=bands, dim_head=8, heads=2, attn_dropout=0.0,
                     ff_dropout=0.0, flash_attn=False, stft_n_fft=N_FFT, stft_hop_length=HOP, stft_win_length=N_FFT)
    torch.manual_seed(0)
    model = BSRoformer(**model_cfg).eval()
    with torch.no_grad():
        for mlp, band, on in zip(model.mask_estimators[0].to_freqs, bands, passing):
            last = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)][-1]
            dim_in = band * 2 * 2  # frequencies x stereo x (real, imaginary)
            last.weight.zero_()
            value = torch.zeros(dim_in)
            if on:
                value[0::2] = 1.0  # real part 1, imaginary 0: pass unchanged
            last.bias.copy_(torch.cat([value, torch.full((dim_in,), 30.0)]))  # GLU gate open
    torch.save(model.state_dict(), model_dir / FILENAME)
    yaml_name = FILENAME.replace(".ckpt", ".yaml")
    chunk = HOP * 600  # 6 s windows inside the library
    config = {
        "audio": {"chunk_size": chunk, "dim_f": 256, "dim_t": chunk // HOP + 1, "hop_length": HOP, "n_fft": N_FFT,
                  "num_channels": 2, "sample_rate": SR, "min_mean_abs": 0.0},
        "model": {**model_cfg, "dim_freqs_in": bins, "mask_estimator_depth": 2,
                  "multi_stft_resolution_loss_weight": 1.0, "multi_stft_resolutions_window_sizes": (512, 256),
                  "multi_stft_hop_size": 147, "multi_stft_normalized": False},
        "training": {"instruments": ["vocals", "other"], "target_instrument": "vocals"},
        "inference": {"batch_size": 1, "dim_t": chunk // HOP + 1, "num_overlap": 2},
    }
    (model_dir / yaml_name).write_text(yaml.dump(config), encoding="utf-8")  # tuples as !!python/tuple, as UVR's
    lists = {k: {} for k in ("vr_download_list", "mdx_download_list", "mdx_download_vip_list", "demucs_download_list",
                             "mdx23c_download_list", "mdx23c_download_vip_list", "roformer_download_list")}
    lists["roformer_download_list"]["Tiny band-pass stand-in"] = {FILENAME: yaml_name}
    (model_dir / "download_checks.json").write_text(json.dumps(lists), encoding="utf-8")
    return model_dir / FILENAME
