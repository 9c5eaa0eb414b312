"""Key manifests of the full-size official s1 models (fixture README §5): build on the meta device, compare keys."""
from __future__ import annotations

import json

import torch

from gsv_core.models.s1 import Text2Semantic


def test_s1_manifests(parity_dir):
    manifests = json.loads((parity_dir / "manifests_official.json").read_text(encoding="utf-8"))["s1"]
    assert manifests, "no s1 entries in manifests_official.json"
    for name, entry in manifests.items():
        with torch.device("meta"):
            model = Text2Semantic.from_config(entry["model_config"])
        ours = {"model." + k: list(v.shape) for k, v in model.state_dict().items()}
        theirs = {k: list(v["shape"]) for k, v in entry["state_dict"].items()}
        missing = sorted(set(theirs) - set(ours))
        unexpected = sorted(set(ours) - set(theirs))
        assert not missing and not unexpected, f"{name}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        wrong = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]}
        assert not wrong, f"{name}: shapes differ {wrong}"
        if "num_elements" in entry:
            assert sum(p.numel() for p in model.parameters()) == entry["num_elements"], name
