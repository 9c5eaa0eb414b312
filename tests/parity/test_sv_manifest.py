"""The full-size ERes2NetV2 that sv.py builds has exactly the official checkpoint's keys, shapes and dtypes
(manifests_official.json "sv_eres2netv2"), and its forward3 width is what SoVITS' sv_emb expects."""
from __future__ import annotations

import json

import pytest
import torch

from gsv_core.models.sv import ERes2NetV2, config_from_state_dict


@pytest.fixture(scope="module")
def manifest(parity_dir):
    return json.loads((parity_dir / "manifests_official.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def official_args(parity_dir):
    return json.loads((parity_dir / "sv_meta.json").read_text(encoding="utf-8"))["official_config_in_sv_py"]


def _meta_model(args) -> ERes2NetV2:
    with torch.device("meta"):
        return ERes2NetV2(**args)


def test_official_keys_and_shapes(manifest, official_args):
    expected = manifest["sv_eres2netv2"]["state_dict"]
    ours = _meta_model(official_args).state_dict()
    assert list(ours) == list(expected), (
        f"missing {sorted(set(expected) - set(ours))[:10]}, unexpected {sorted(set(ours) - set(expected))[:10]}"
    )
    for key, spec in expected.items():
        assert list(ours[key].shape) == spec["shape"], key
        assert str(ours[key].dtype).removeprefix("torch.") == spec["dtype"], key


def test_shape_inference_on_official_manifest(manifest, official_args):
    expected = manifest["sv_eres2netv2"]["state_dict"]
    meta_sd = {k: torch.empty(v["shape"], device="meta") for k, v in expected.items()}
    inferred = config_from_state_dict(meta_sd)
    for name, value in official_args.items():
        assert inferred[name] == value, name
    rebuilt = {k: list(v.shape) for k, v in _meta_model(inferred).state_dict().items()}
    assert rebuilt == {k: v["shape"] for k, v in expected.items()}


def test_forward3_width_feeds_sovits_sv_emb(manifest, official_args):
    widths = {
        spec["shape"][1]
        for version in manifest["s2"].values()
        for key, spec in version["generator_state_dict"].items()
        if key == "sv_emb.weight"
    }
    assert len(widths) == 1, f"sv_emb input widths in the s2 manifests: {widths}"
    model = _meta_model(official_args)
    out = model.forward3(torch.empty(1, 123, model.feat_dim, device="meta"))
    assert out.shape == (1, widths.pop())
