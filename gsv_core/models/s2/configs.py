"""The official s2 (SoVITS) training configurations, as data.

Values of upstream's ``GPT_SoVITS/configs/s2.json`` (v1, v2, and v3 / v4, whose SynthesizerTrnV3 reads only the
text-encoder sizes from it and hard-codes the rest), ``s2v2Pro.json`` and ``s2v2ProPlus.json``. The model built from
them is the one the pretrained ``s2G*.pth`` / ``s2D*.pth`` files fit; finetuning starts from a copy.
"""
from __future__ import annotations

import copy
from typing import Any

from ...errors import UnsupportedVersionError

S2_VERSIONS = ("v1", "v2", "v2Pro", "v2ProPlus")  # SynthesizerTrn (VITS decoder)
CFM_S2_VERSIONS = ("v3", "v4")  # SynthesizerTrnV3 (CFM + vocoder)

_TRAIN = {
    "log_interval": 100,
    "eval_interval": 500,
    "seed": 1234,
    "epochs": 100,
    "learning_rate": 0.0001,
    "betas": [0.8, 0.99],
    "eps": 1e-09,
    "batch_size": 32,
    "fp16_run": True,
    "lr_decay": 0.999875,
    "segment_size": 20480,
    "init_lr_ratio": 1,
    "warmup_epochs": 0,
    "c_mel": 45,
    "c_kl": 1.0,
    "text_low_lr_rate": 0.4,
    "grad_ckpt": False,
}

_DATA = {
    "max_wav_value": 32768.0,
    "sampling_rate": 32000,
    "filter_length": 2048,
    "hop_length": 640,
    "win_length": 2048,
    "n_mel_channels": 128,
    "mel_fmin": 0.0,
    "mel_fmax": None,
    "add_blank": True,
    "n_speakers": 300,
    "cleaned_text": True,
}

_MODEL = {  # s2.json
    "inter_channels": 192,
    "hidden_channels": 192,
    "filter_channels": 768,
    "n_heads": 2,
    "n_layers": 6,
    "kernel_size": 3,
    "p_dropout": 0.1,
    "resblock": "1",
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "upsample_rates": [10, 8, 2, 2, 2],
    "upsample_initial_channel": 512,
    "upsample_kernel_sizes": [16, 16, 8, 2, 2],
    "n_layers_q": 3,
    "use_spectral_norm": False,
    "gin_channels": 512,
    "semantic_frame_rate": "25hz",
    "freeze_quantizer": True,
}

_PRO_MODEL = {**_MODEL, "p_dropout": 0.0, "gin_channels": 1024}  # s2v2Pro.json
_PRO_PLUS_MODEL = {**_PRO_MODEL, "upsample_initial_channel": 768, "upsample_kernel_sizes": [20, 16, 8, 2, 2]}


def _file(model: dict) -> dict:
    return {
        "train": dict(_TRAIN),
        "data": dict(_DATA),
        "model": dict(model),
        "s2_ckpt_dir": "logs/s2/big2k1",
        "content_module": "cnhubert",
    }


#: version -> (upstream config file name, its contents)
OFFICIAL_S2_CONFIGS: dict[str, tuple[str, dict]] = {
    "v1": ("s2.json", _file(_MODEL)),
    "v2": ("s2.json", _file(_MODEL)),
    "v2Pro": ("s2v2Pro.json", _file(_PRO_MODEL)),
    "v2ProPlus": ("s2v2ProPlus.json", _file(_PRO_PLUS_MODEL)),
    "v3": ("s2.json", _file(_MODEL)),
    "v4": ("s2.json", _file(_MODEL)),
}


def official_s2_config(version: str) -> dict[str, Any]:
    """A fresh deep copy of the official config for ``version``, with ``model.version`` set as the WebUI does."""
    if version not in OFFICIAL_S2_CONFIGS:
        raise UnsupportedVersionError(
            f"No s2 config for SoVITS version {version!r}; supported: {', '.join(OFFICIAL_S2_CONFIGS)}"
        )
    cfg = copy.deepcopy(OFFICIAL_S2_CONFIGS[version][1])
    cfg["model"]["version"] = version
    return cfg
