"""Key manifests of the official full-size v3/v4 models (``manifests_official_v34.json`` of the v3/v4 fixture set):
our meta-device models must have exactly upstream's keys and shapes, and our loaders must accept the official files'
layouts (s2 weights, a default-rank LoRA export, BigVGAN with weight norm, the v4 vocoder) with nothing missing or
unexpected."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from gsv_core.checkpoints import CFM_SOVITS_VERSIONS
from gsv_core.loading import LORA_PREFIX, LORA_TARGETS
from gsv_core.models.s2.configs import OFFICIAL_S2_CONFIGS, official_s2_config
from gsv_core.models.s2.synthesizer_v3 import build_synthesizer_v3
from gsv_core.models.vocoder import BigVGAN, HiFiGANVocoder, V4_VOCODER_CONFIG, fold_weight_norm



def v34_dir() -> Path:
    raw = os.environ.get("GSV_PARITY_V34_DIR")
    repo = Path(__file__).resolve().parents[2]
    return Path(raw).expanduser().resolve() if raw else (repo / ".." / "shared" / "fixtures" / "gsv_parity_v34").resolve()


@pytest.fixture(scope="module")
def manifest():
    path = v34_dir() / "manifests_official_v34.json"
    if not path.is_file():
        pytest.fail(f"{path} not found (set GSV_PARITY_V34_DIR)")
    return json.loads(path.read_text())


def _listing(sd) -> dict[str, list[int]]:
    return {k: list(t.shape) for k, t in sd.items()}


def _expected(section) -> dict[str, list[int]]:
    return {k: v["shape"] for k, v in section.items()}


def test_s2_keys_shapes_and_order(manifest):
    assert set(manifest["s2"]) == set(CFM_SOVITS_VERSIONS)
    for version, entry in manifest["s2"].items():
        assert OFFICIAL_S2_CONFIGS[version][0] == "s2.json"
        assert official_s2_config(version)["model"] == entry["model_config"], version
        with torch.device("meta"):
            model = build_synthesizer_v3(official_s2_config(version), version)
        sd = model.state_dict()
        assert list(_listing(sd).items()) == list(_expected(entry["state_dict"]).items()), version
        assert all(str(t.dtype) == "torch." + entry["state_dict"][k]["dtype"] for k, t in sd.items())
        assert sum(t.numel() for t in sd.values()) == entry["num_elements"], version


def test_s2_built_from_weights_has_official_widths(manifest):
    """Widths read from a checkpoint's tensors (as the loader does) reproduce the official architecture."""
    for version, entry in manifest["s2"].items():
        weight = {k: torch.empty(v["shape"], device="meta") for k, v in entry["state_dict"].items()}
        with torch.device("meta"):
            model = build_synthesizer_v3(official_s2_config(version), version, weight)
        assert _listing(model.state_dict()) == _expected(entry["state_dict"]), version


def test_default_rank_lora_file_fits(manifest):
    """Every tensor of a rank-32 webui LoRA export maps onto the model: plain tensors onto existing keys (same
    shape), lora_A/B onto the four attention projections of every DiT block, nothing left over."""
    for version, entry in manifest["s2"].items():
        base = _expected(entry["state_dict"])
        keys = _expected(entry["lora_rank32_file_keys"])
        lora = {k: s for k, s in keys.items() if ".lora_" in k}
        plain = {k: s for k, s in keys.items() if ".lora_" not in k}
        for key, shape in plain.items():
            name = "cfm." + key[len(LORA_PREFIX):] if key.startswith(LORA_PREFIX) else key
            assert base.get(name) == shape, (version, key)
        targets = set()
        for key, shape in lora.items():
            module, rest = ("cfm." + key[len(LORA_PREFIX):]).split(".lora_", 1)
            assert module.endswith(tuple("." + t for t in LORA_TARGETS)), key
            out_dim, in_dim = base[module + ".weight"]
            assert shape == ([32, in_dim] if rest.startswith("A") else [out_dim, 32]), key
            targets.add(module)
        depth = len({k.split(".")[3] for k in base if k.startswith("cfm.estimator.transformer_blocks.")})
        assert len(targets) == 4 * depth, version
        assert sum(torch.Size(s).numel() for s in keys.values()) == entry["lora_rank32_num_elements"]


def test_bigvgan_keys(manifest):
    entry = manifest["bigvgan_v2_24khz_100band_256x"]
    with torch.device("meta"):
        model = BigVGAN(entry["config"])
    ours = _listing(model.state_dict())
    assert ours == _expected(entry["after_remove_weight_norm"])
    shipped = {k: torch.empty(v["shape"], device="meta") for k, v in entry["bigvgan_generator_pt_state_dict"].items()}
    assert _listing(fold_weight_norm(shipped)) == ours  # the shipped weight-norm file loads with nothing left over
    assert sum(torch.Size(s).numel() for s in ours.values()) <= entry["num_elements"]


def test_v4_vocoder_keys(manifest):
    entry = manifest["v4_vocoder"]
    kwargs = {k: v for k, v in entry["constructor_kwargs"].items() if k in V4_VOCODER_CONFIG}
    assert {k: entry["constructor_kwargs"][k] for k in kwargs} == {k: V4_VOCODER_CONFIG[k] for k in kwargs}
    with torch.device("meta"):
        model = HiFiGANVocoder(**kwargs)
    assert _listing(model.state_dict()) == _expected(entry["vocoder_pth_state_dict"])
    assert sum(t.numel() for t in model.state_dict().values()) == entry["num_elements"]
