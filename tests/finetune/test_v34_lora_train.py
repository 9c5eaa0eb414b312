"""SoVITS v3/v4 LoRA finetuning on the tiny fixture models: a few steps, exact resume, and an export in upstream's
LoRA format that our loader merges onto the base model."""
from __future__ import annotations

import csv
import json
import lzma
import os
from pathlib import Path

import pytest
import torch

from gsv_core.checkpoints import load_sovits_checkpoint
from gsv_core.finetune.common import load_state
from gsv_core.finetune.s2_lora_train import LoRATrainConfig, LoRATrainer, collate_cfm, CFMDataset, train_s2_lora
from gsv_core.loading import load_sovits
from gsv_core.models.lora import merge_cfm_lora_modules

from .s2_synth import build_experiment

REPO = Path(__file__).resolve().parents[2]


def _fx() -> Path:
    raw = os.environ.get("GSV_PARITY_V34_DIR")
    return Path(raw).expanduser().resolve() if raw else (REPO / ".." / "shared" / "fixtures" / "gsv_parity_v34").resolve()


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    fx = _fx()
    if not (fx / "weights_index.json").is_file():
        pytest.fail(f"v3/v4 parity fixture folder not found: {fx} (set GSV_PARITY_V34_DIR)")
    index = json.loads((fx / "weights_index.json").read_text())
    out = tmp_path_factory.mktemp("v34_bases")
    paths = {}
    for v in ("v3", "v4"):
        p = out / f"s2G{v}.pth"
        p.write_bytes(lzma.decompress((fx / index[f"{v}_base"]["file"]).read_bytes()))
        paths[v] = p
        paths[f"{v}_lora"] = fx / index[f"{v}_lora"]["file"]
    return paths


def _cfg(version, base, tmp_path, **kw):
    defaults = dict(lora_rank=4, batch_size=2, epochs=1, precision="fp32", device="cpu", max_steps=2,
                    export_dir=tmp_path / "weights")
    defaults.update(kw)
    return LoRATrainConfig(version=version, pretrained_s2g=base, **defaults)


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_train_export_reload(bases, tmp_path, version):
    layout = build_experiment(tmp_path / "exp", "v2")
    result = train_s2_lora(layout, _cfg(version, bases[version], tmp_path))
    assert result.step == 2 and len(result.exports) == 1
    export = result.exports[0]
    assert export.name.endswith("_e1_s2_l4.pth") and export.read_bytes()[:2] == (b"03" if version == "v3" else b"04")
    ck = load_sovits_checkpoint(export)
    assert ck.is_lora and ck.lora_rank == 4 and ck.model_version == version
    assert ck.config["train"]["lora_rank"] == "4" and ck.info == "1epoch_2iteration"
    # same keys, shapes and order as the LoRA file upstream wrote for the same tiny base at rank 4
    upstream = load_sovits_checkpoint(bases[f"{version}_lora"])
    assert [(k, tuple(t.shape)) for k, t in ck.weight.items()] == [(k, tuple(t.shape)) for k, t in upstream.weight.items()]
    assert all(t.dtype == torch.float16 for t in ck.weight.values())
    # the export merges onto the base like the trained model merges its own adapters
    merged, info = load_sovits(export, base_path=bases[version])
    assert info.lora_rank == 4
    trained = merge_cfm_lora_modules(LoRATrainer(layout, _cfg(version, bases[version], tmp_path)).model).state_dict()
    ours = merged.state_dict()
    assert set(ours) == set(trained)
    for key in ours:
        torch.testing.assert_close(ours[key], trained[key].to(ours[key].dtype), atol=2e-3, rtol=2e-3, msg=key)
    moved = [k for k in ours if ".attn.to_" in k and k.endswith("weight")]
    base = load_sovits(bases[version])[0].state_dict()
    assert any(not torch.equal(ours[k], base[k]) for k in moved), "LoRA training did not change the attention"
    assert not torch.equal(ours["wns1.proj.weight"], base["wns1.proj.weight"])
    assert torch.equal(ours["enc_p.proj.weight"], base["enc_p.proj.weight"])  # frozen


def test_resume_is_exact(bases, tmp_path):
    straight = build_experiment(tmp_path / "a", "v2")
    res_a = train_s2_lora(straight, _cfg("v3", bases["v3"], tmp_path / "wa", max_steps=4, export_dir=tmp_path / "wa"))
    halves = build_experiment(tmp_path / "b", "v2")
    train_s2_lora(halves, _cfg("v3", bases["v3"], tmp_path / "wb", max_steps=2, export_dir=tmp_path / "wb"))
    res_b = train_s2_lora(halves, _cfg("v3", bases["v3"], tmp_path / "wb", max_steps=4, export_dir=tmp_path / "wb"))
    assert res_a.step == res_b.step == 4
    sa, sb = load_state(res_a.state_path), load_state(res_b.state_path)
    for key, value in sa["model"].items():
        assert torch.equal(value, sb["model"][key]), key
    rows = lambda p: [(r["step"], r["cfm"]) for r in csv.DictReader(open(p))]  # noqa: E731
    assert rows(res_a.loss_log) == rows(res_b.loss_log)


def test_target_mels_and_collate(tmp_path):
    layout = build_experiment(tmp_path / "exp", "v2")
    for version, hop_rate in (("v3", 24000 / 256), ("v4", 100.0)):
        ds = CFMDataset(layout, version, "train")
        items = [ds[i] for i in range(2)]
        for ssl, spec, wav, ids, _, mel in items:
            assert mel.shape[0] == 100 and abs(mel.shape[1] - wav.shape[1] / 32000 * hop_rate) <= 2
            assert mel.min() >= -1.0 - 1e-6 - 0.5  # normalised range around [-1, 1]
        s2, mel, lengths = collate_cfm(items, version)
        assert mel.shape[0] == 2 and int(lengths.max()) <= mel.shape[2]
        assert torch.equal(lengths, torch.tensor(sorted((m.shape[1] for *_, m in items), reverse=True)))
