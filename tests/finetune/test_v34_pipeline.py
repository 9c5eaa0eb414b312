"""SoVITS v3/v4 finetuning through the experiment pipeline (what the Finetune tab and ``python -m gsv_core.finetune``
run) on the tiny v3/v4 fixture models: features (semantic tokens from the v3/v4 model's own quantizer), a few LoRA
steps, a resume that continues from the saved step, an export in the version's SoVITS weight folder that the
engine lists, loads onto its base model and synthesises with; a GPT step on the same features."""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers.v34 import build_v34_home

TEXTS = ["今天天气很好。", "我们去公园散步吧！", "这是一个测试句子。", "你早上好。"]


def _clips(folder: Path, parity_dir: Path) -> list[Path]:
    inputs = np.load(parity_dir / "s2_inputs.npz")
    a, b = inputs["wav32"], inputs["wav32_b"]
    pieces = [a[:48000], a[44000:], b[:40000], b[28000:]]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, wav in enumerate(pieces):
        path = folder / f"clip{i}.wav"
        sf.write(path, wav, 32000, subtype="PCM_16")
        out.append(path)
    return out


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_lora_finetune_resume_export_and_synthesis(tmp_path, parity_dir, tiny_assets, version):
    from config import load_settings
    from gsv_core.api import Engine
    from gsv_core.finetune.pipeline import Experiment, FinetuneConfig
    from gsv_core.loading import load_sovits
    from gsv_core.versions import finetune_versions

    assert version in finetune_versions()
    files = build_v34_home(tmp_path, parity_dir)
    base = load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=tmp_path / "none.py")
    settings = dataclasses.replace(base, bert_dir=Path(tiny_assets["bert"]), hubert_dir=Path(tiny_assets["hubert"]),
                                   device="cpu", precision="fp32", use_g2pw=False)
    clips = _clips(tmp_path / "wavs", parity_dir)
    source = tmp_path / "voice.list"
    source.write_text("".join(f"{p}|spk|zh|{t}\n" for p, t in zip(clips, TEXTS)), encoding="utf-8")
    cfg = FinetuneConfig(name=f"voice_{version}", version=version, source=str(source), device="cpu",
                         precision="fp32", s2={"batch_size": 2, "lora_rank": 4, "max_steps": 2},
                         s1={"batch_size": 2, "max_steps": 1})
    exp = Experiment(settings, cfg)
    exp.layout.data_dir.mkdir(parents=True)  # the split the data stage would write (its rules are tested elsewhere)
    exp.layout.split_list("train").write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    assert exp.pretrained()["s2g"] == files[version] and exp.pretrained()["s1"] == files["gpt"]

    results = exp.run(["features", "s2"])
    assert len(results["features"].usable) == 4
    # the semantic tokens come from this version's SoVITS quantizer
    model, _ = load_sovits(files[version])
    name = clips[0].name
    hub = torch.load(exp.layout.hubert_dir / f"{name}.pt")
    expected = model.extract_latent(hub)[0, 0].tolist()
    rows = dict(line.split("\t", 1) for line in exp.layout.name2semantic.read_text().splitlines()[1:])
    assert [int(t) for t in rows[name].split()] == expected

    first = results["s2"]
    assert first.step == 2 and len(first.exports) == 1
    exp.config.s2["max_steps"] = 4
    second = Experiment(settings, exp.config).run(["s2"])["s2"]  # continues from the saved state
    assert second.step == 4
    steps = [int(r["step"]) for r in csv.DictReader(open(second.loss_log, encoding="utf-8"))]
    assert steps == [1, 2, 3, 4]
    export = Path(second.exports[-1])
    assert export.parent == tmp_path / f"SoVITS_weights_{version}"  # upstream's folder of the version
    assert export.name.startswith(f"voice_{version}_e") and export.name.endswith("_s4_l4.pth")
    assert str(export) in exp.exports()["sovits"]
    assert Experiment.open(settings, cfg.name).stage_records()["s2"]["done"]

    s1 = exp.run(["s1"])["s1"]  # the GPT trains on the same features as for v2
    assert s1.steps == 1

    engine = Engine.open(settings, device="cpu", precision="fp32", log_path=None)
    assert str(export.resolve()) in [w.path for w in engine.list_weights("SoVITS")]
    info = engine.model_info(export)
    assert info.version == version and info.lora_rank == 4 and info.base == files[version].resolve()
    result = engine.synthesize({"text": "今天天气很好。", "ref_audio": str(tiny_assets["ref"]), "ref_text": "你早上好。",
                                "gpt_path": str(files["gpt"]), "sovits_path": str(export), "max_tokens": 8,
                                "sample_steps": 2, "seed": 1})
    assert result.sample_rate == (24000 if version == "v3" else 48000) and np.isfinite(result.audio).all()
    assert result.audio.std() > 0


def test_v34_options_are_checked(tmp_path, parity_dir):
    from config import load_settings
    from gsv_core.finetune.pipeline import Experiment, FinetuneConfig, FinetuneError

    build_v34_home(tmp_path, parity_dir)
    settings = load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=tmp_path / "none.py")
    exp = Experiment(settings, FinetuneConfig(name="x", version="v4", s2={"text_low_lr_rate": 0.4}))
    with pytest.raises(FinetuneError, match="text_low_lr_rate"):
        exp.run_s2()
    assert exp.gpt_export_dir.name == "GPT_weights_v4" and exp.sovits_export_dir.name == "SoVITS_weights_v4"
    v2 = Experiment(settings, FinetuneConfig(name="y", version="v2Pro"))
    assert v2.sovits_export_dir == Path(settings.sovits_weight_dirs[0])  # unchanged for the other versions
