"""Synthesis and training in one process (issue 12, item 1): caches filled while synthesising under
``torch.inference_mode`` (STFT windows, mel filterbanks, Kaldi mel banks) must not hand inference tensors to a
training step that follows, and training must not break a synthesis that follows it. Every case starts from cold
constant caches, as a freshly started app does."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from config import load_settings
from gsv_core.constants import clear_constant_caches
from gsv_core.api import Engine, SynthesisRequest
from gsv_core.finetune.s1_train import S1TrainConfig, train_s1
from gsv_core.finetune.s2_train import S2TrainConfig, train_s2

from finetune.s1_synth import make_experiment as make_s1_experiment
from finetune.s2_synth import build_experiment as make_s2_experiment

REF_TEXT = "你早上好，这是参考声音。"


@pytest.fixture()
def engine(tmp_path, tiny_assets):
    settings = load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=tmp_path / "none.py")
    return Engine.open(settings, device="cpu", precision="fp32", bert_dir=tiny_assets["bert"],
                       hubert_dir=tiny_assets["hubert"], sv_path=tiny_assets["sv"], log_path=tmp_path / "log.csv")


def _synthesise(engine, parity_dir, tiny_assets, version="v2Pro"):
    req = SynthesisRequest(text="今天天气很好。", ref_audio=str(tiny_assets["ref"]), ref_text=REF_TEXT,
                           gpt_path=parity_dir / "s1_v2.ckpt", sovits_path=parity_dir / f"s2_{version}.pth.xz",
                           seed=3, max_tokens=8, split_method="cut0")
    result = engine.synthesize(req)
    assert result.audio.size > 0


def _train_s2_step(tmp: Path, parity_dir, version="v2Pro"):
    lay = make_s2_experiment(tmp / "s2exp", version)
    cfg = S2TrainConfig(version=version, pretrained_s2g=parity_dir / f"s2_{version}.pth.xz", batch_size=1,
                        segment_size=2 * 640, num_workers=0, device="cpu", precision="fp32", max_steps=1,
                        export_dir=tmp / "s2w")
    result = train_s2(lay, cfg)
    assert result.step == 1 and not result.cancelled


def _train_s1_step(tmp: Path, parity_dir):
    lay = make_s1_experiment(tmp / "s1exp")
    cfg = S1TrainConfig(pretrained_s1=str(parity_dir / "s1_v2.ckpt"), batch_size=8, epochs=1, save_every_epochs=1,
                        device="cpu", precision="fp32", export_dir=str(tmp / "s1w"), export_name="voice")
    result = train_s1(lay, cfg)
    assert result.exports


def test_synthesis_then_training_then_synthesis(tmp_path, engine, parity_dir, tiny_assets):
    clear_constant_caches()
    _synthesise(engine, parity_dir, tiny_assets)
    _train_s2_step(tmp_path, parity_dir)
    _train_s1_step(tmp_path, parity_dir)
    _synthesise(engine, parity_dir, tiny_assets)


def test_training_then_synthesis_then_training(tmp_path, engine, parity_dir, tiny_assets):
    clear_constant_caches()
    _train_s2_step(tmp_path / "a", parity_dir, "v2")
    _train_s1_step(tmp_path / "a", parity_dir)
    _synthesise(engine, parity_dir, tiny_assets, "v2")
    _train_s2_step(tmp_path / "b", parity_dir, "v2")


def test_spectrogram_caches_hold_no_inference_tensors():
    from gsv_core.features.fbank import mel_banks
    from gsv_core.features.spectrogram import mel_spectrogram

    clear_constant_caches()
    with torch.inference_mode():
        mel_spectrogram(torch.randn(1, 4000))
        mel_banks(80, 512, 16000.0)
    wav = torch.randn(1, 4000, requires_grad=True)
    mel_spectrogram(wav).sum().backward()  # raised "Inference tensors cannot be saved for backward" before
    assert wav.grad is not None and torch.isfinite(wav.grad).all()
    assert not mel_banks(80, 512, 16000.0).is_inference()
