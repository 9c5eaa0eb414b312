"""Key manifests of the full-size official s2 models: our meta-device models must have exactly upstream's keys.

Versions, configs and expected keys/shapes all come from ``manifests_official.json`` ("s2" section).
"""
from __future__ import annotations

import json
from pathlib import PurePosixPath

import pytest
import torch

from gsv_core.models.s2.configs import OFFICIAL_S2_CONFIGS, official_s2_config
from gsv_core.models.s2.discriminator import MultiPeriodDiscriminator
from gsv_core.models.s2.synthesizer import build_synthesizer


@pytest.fixture(scope="module")
def s2_manifest(parity_dir):
    section = json.loads((parity_dir / "manifests_official.json").read_text())["s2"]
    assert section, "empty s2 manifest"
    return section


def _listing(state_dict) -> list[tuple[str, list[int], str]]:
    return [(k, list(t.shape), str(t.dtype).removeprefix("torch.")) for k, t in state_dict.items()]


def test_official_configs_are_upstreams(s2_manifest):
    for version, entry in s2_manifest.items():
        name, _ = OFFICIAL_S2_CONFIGS[version]
        assert name == PurePosixPath(entry["config_file"]).name, version
        assert official_s2_config(version)["model"] == entry["model_config"], version


def test_generator_keys_and_shapes(s2_manifest):
    for version, entry in s2_manifest.items():
        with torch.device("meta"):
            model = build_synthesizer(official_s2_config(version), version)
        sd = model.state_dict()
        expected = [(k, v["shape"], v["dtype"]) for k, v in entry["generator_state_dict"].items()]
        # same keys, shapes and dtypes, in the same order (so saved files list tensors as upstream's do)
        assert _listing(sd) == expected, version

        dropped = {k for k, v in entry["generator_state_dict"].items() if not v["kept_by_process_ckpt_savee"]}
        ours = {k for k in sd if k.startswith("enc_q.")}
        assert ours and dropped == ours == set(entry["removed_on_export"]), version
        exported = sum(t.numel() for k, t in sd.items() if k not in ours)
        assert exported == entry["num_elements_exported"], version


def test_discriminator_keys_and_shapes(s2_manifest):
    for version, entry in s2_manifest.items():
        with torch.device("meta"):
            disc = MultiPeriodDiscriminator(version)
        expected = [(k, v["shape"], v["dtype"]) for k, v in entry["discriminator_state_dict"].items()]
        assert _listing(disc.state_dict()) == expected, version
