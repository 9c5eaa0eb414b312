"""Model files of the dataset flow: ``python -m gsv_core.download --asr/--separator/--list`` (faster-whisper's and
audio-separator's own downloaders; offline here, so the real download is replaced by a fake only where a file must
appear, and the offline refusal is real), the ASR tab's names for downloaded Whisper models, and a real UVR model
when its file is present (skipped only when it is absent: `python -m gsv_core.download --separator bs-roformer`)."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

from dataset.recordings import band_power_db, music_and_noise, speech_track

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def settings(tmp_path):
    from config import load_settings

    return load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=tmp_path / "none.py")


def _run(argv, settings):
    from gsv_core import download

    out, err = io.StringIO(), io.StringIO()
    rc = download.main(argv, settings=settings, out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def test_asr_download_lands_where_the_asr_tab_lists_it(settings, monkeypatch):
    from faster_whisper import utils

    from gsv_core.asr import ASRService

    calls = []

    def fake_download(size, output_dir=None, **kw):  # what faster-whisper's snapshot download leaves
        calls.append((size, output_dir))
        for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
            Path(output_dir, name).write_text("{}")
        return output_dir

    monkeypatch.setattr(utils, "download_model", fake_download)
    rc, out, err = _run(["--asr", "large-v3", "--asr", "tiny"], settings)
    assert rc == 0, err
    assert calls == [("large-v3", str(Path(settings.whisper_dir) / "large-v3")),
                     ("tiny", str(Path(settings.whisper_dir) / "tiny"))]
    assert ASRService.from_settings(settings).model_names() == ["large-v3", "tiny"]
    rc, out, err = _run(["--asr", "tiny"], settings)
    assert rc == 0 and "already present" in out and len(calls) == 2
    rc, out, _ = _run(["--list"], settings)
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  ") and len(ln.split()) > 1}
    assert "present" in lines["large-v3"] and "missing" in lines["medium"]
    assert "ASR models (faster-whisper" in out and "--asr large-v3" in out
    assert "Vocal separation models (audio-separator)" in out and "missing" in lines["bs-roformer"]


def test_downloads_offline_and_bad_names_are_readable(settings):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    rc, out, err = _run(["--asr", "base"], settings)
    assert rc == 1 and "offline mode" in err and "by hand" in err and "Traceback" not in err
    assert not (Path(settings.whisper_dir) / "base").exists(), "a failed download left an empty model folder"
    rc, out, err = _run(["--asr", "huge-v9"], settings)
    assert rc == 1 and "unknown Whisper model" in err
    rc, out, err = _run(["--separator", "hp2"], settings)
    assert rc == 1 and "offline mode" in err
    rc, out, err = _run(["--separator", "../../etc/passwd"], settings)
    assert rc == 1 and "not a path" in err


def test_stand_in_separator_is_listed_and_missing_ones_name_the_command(settings):
    from helpers.tiny_separator import FILENAME, build_tiny_separator

    from gsv_core.dataset import separation

    d = separation.model_dir(settings)
    assert separation.present_models(d) == []
    build_tiny_separator(d)
    assert separation.present_models(d) == [FILENAME]
    rc, out, _ = _run(["--list"], settings)
    assert any(ln.split()[:2] == [FILENAME, "present"] for ln in out.splitlines())
    with pytest.raises(separation.SeparationModelMissing, match="--separator mel-roformer"):
        separation.VocalSeparator(d, "mel-roformer", settings.output_dir / "work", shown_dir="pretrained_models/uvr")


def _real_model_dir() -> Path:
    raw = os.environ.get("GSV_SEPARATION_DIR")
    return Path(raw) if raw else ROOT / "pretrained_models" / "uvr"


@pytest.mark.skipif(not (_real_model_dir() / "model_bs_roformer_ep_317_sdr_12.9755.ckpt").is_file(),
                    reason="the real BS-Roformer model file is absent (python -m gsv_core.download --separator "
                           "bs-roformer; or GSV_SEPARATION_DIR)")
def test_real_bs_roformer_keeps_the_voice_and_removes_the_music(tmp_path):
    from gsv_core.dataset.separation import SEPARATION_SR, VocalSeparator

    sr = SEPARATION_SR
    speech, _ = speech_track(tmp_path / "espeak", ["The quick brown fox jumps over the lazy dog.",
                                                   "Please put the book on the table."], sr)
    n = speech.shape[0]
    mix = np.clip(speech + music_and_noise(n, sr, noise_rms=0.003), -1, 1).astype(np.float32)
    sep = VocalSeparator(_real_model_dir(), "bs-roformer", tmp_path / "work")
    voice, background = sep.separate_window(mix)
    assert voice.shape == mix.shape == background.shape
    assert band_power_db(mix, sr, 6500, 10000) - band_power_db(voice, sr, 6500, 10000) > 15  # the bells
    assert abs(band_power_db(speech, sr, 300, 3400) - band_power_db(voice, sr, 300, 3400)) < 3  # the voice
