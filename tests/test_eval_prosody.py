"""F0 / energy tracks and their comparison with a reference (eval/prosody.py) on synthetic signals."""
import math

import numpy as np
import pytest

from eval.prosody import (PROSODY_FIELDS, ProsodyComparison, analyze_prosody, compare_audio, compare_prosody,
                          dtw_path, figure_png, hz_to_semitones, pause_stats, plot_energy_distributions,
                          plot_f0_contours, plot_metric_by_system, prosody_summary)
from gsv_core.errors import AudioError

SR = 24000


def glide(f_start, f_end, seconds, amp=0.4, sr=SR):
    """A voiced-like glide (fundamental + 2nd harmonic), exponential in frequency."""
    t = np.arange(int(seconds * sr)) / sr
    f = f_start * (f_end / f_start) ** (t / seconds)
    phase = 2 * np.pi * np.cumsum(f) / sr
    return (amp * (np.sin(phase) + 0.3 * np.sin(2 * phase))).astype(np.float32)


def shift(f, semitones):
    return f * 2 ** (semitones / 12)


@pytest.fixture(scope="module")
def ref_glide():
    return analyze_prosody(glide(150, 260, 1.5), SR)


def test_track_of_a_glide(ref_glide):
    t = ref_glide
    assert t.times[1] - t.times[0] == pytest.approx(0.01)
    assert t.f0_hz.size == 1 + int(1.5 * 16000) // 160
    assert t.voiced.mean() > 0.95
    truth = 150 * (260 / 150) ** (t.times / 1.5)
    err = np.abs(hz_to_semitones(t.f0_hz) - hz_to_semitones(truth))[t.voiced]
    assert np.median(err) < 0.05 and np.percentile(err, 95) < 0.2   # refined, not quantised to the 0.25 grid


@pytest.mark.parametrize("offset", [2.0, -3.0])
def test_glide_with_known_offset(ref_glide, offset):
    sys = analyze_prosody(glide(shift(150, offset), shift(260, offset), 1.5), SR)
    c = compare_prosody(sys, ref_glide)
    assert isinstance(c, ProsodyComparison)
    assert c.f0_mean_diff_st == pytest.approx(offset, abs=0.1)
    assert c.f0_std_diff_st == pytest.approx(0.0, abs=0.1)
    assert c.f0_var_ratio == pytest.approx(1.0, abs=0.1)
    assert c.f0_contour_dtw_st < 0.15                  # same shape once the level is removed
    assert c.voicing_agreement > 0.95 and abs(c.voiced_ratio_diff) < 0.05


def test_steady_tone_offset_and_range():
    ref = analyze_prosody(glide(200, 200, 1.0), SR)
    sys = analyze_prosody(glide(shift(200, 2), shift(200, 2), 1.0), SR)
    assert compare_prosody(sys, ref).f0_mean_diff_st == pytest.approx(2.0, abs=0.1)
    # a flat reference against a glide of one octave: the system's pitch range is wider
    wide = compare_prosody(analyze_prosody(glide(150, 300, 1.0), SR), ref)
    assert wide.f0_std_diff_st == pytest.approx(12 / math.sqrt(12), abs=0.3)  # uniform over 12 semitones


def test_energy_distance_zero_for_identical_audio_and_gain_is_a_shift(ref_glide):
    same = compare_prosody(ref_glide, ref_glide)
    assert same.energy_w1_db == 0.0 and same.energy_w1_centered_db == 0.0 and same.energy_mean_diff_db == 0.0
    assert same.f0_mean_diff_st == 0.0 and same.f0_contour_dtw_st == 0.0 and same.voicing_agreement == 1.0
    quiet = compare_audio(glide(150, 260, 1.5, amp=0.2), SR, glide(150, 260, 1.5, amp=0.4), SR)
    assert quiet.energy_mean_diff_db == pytest.approx(-6.02, abs=0.1)
    assert quiet.energy_w1_db == pytest.approx(6.02, abs=0.15)
    assert quiet.energy_w1_centered_db < 0.2               # the same dynamics at another level
    assert quiet.f0_mean_diff_st == pytest.approx(0.0, abs=0.05)


def test_silence_and_noise():
    silent = analyze_prosody(np.zeros(SR, np.float32), SR)
    assert not silent.voiced.any()
    c = compare_prosody(silent, analyze_prosody(glide(150, 200, 1.0), SR))
    assert math.isnan(c.f0_mean_diff_st) and c.n_voiced == 0
    noise = analyze_prosody(np.random.default_rng(0).normal(0, 0.1, SR).astype(np.float32), SR)
    assert noise.voiced.mean() < 0.1
    tiny = analyze_prosody(glide(150, 150, 0.03), SR)      # shorter than one pYIN frame
    assert tiny.f0_hz.size == 1 + 480 // 160
    with pytest.raises(AudioError):
        analyze_prosody(np.zeros(0, np.float32), SR)
    with pytest.raises(AudioError, match="fmin"):
        analyze_prosody(np.zeros(100, np.float32), SR, fmin=300, fmax=100)


def test_long_audio_in_windows_matches_one_pass():
    x = np.concatenate([glide(120, 220, 1.2), np.zeros(SR // 4, np.float32), glide(220, 140, 1.3)])
    whole = analyze_prosody(x, SR)
    windowed = analyze_prosody(x, SR, window_s=0.7)
    assert windowed.f0_hz.size == whole.f0_hz.size
    assert np.mean(windowed.voiced == whole.voiced) > 0.97
    both = windowed.voiced & whole.voiced
    assert np.max(np.abs(windowed.semitones[both] - whole.semitones[both])) < 0.3
    np.testing.assert_allclose(windowed.rms_db, whole.rms_db, atol=1e-4)


def test_dtw_path_and_decimation():
    a = np.arange(10, dtype=float)[None, :]
    path = dtw_path(a, a)
    assert path.tolist() == [[i, i] for i in range(10)]
    long = np.sin(np.arange(4000) / 50.0)[None, :]
    p = dtw_path(long, long, max_frames=500)
    assert p[0].tolist() == [0, 0] and p[-1].tolist() == [3999, 3999] and len(p) <= 600
    assert dtw_path(np.zeros((1, 0)), a).shape == (0, 2)


def test_pause_stats():
    x = np.concatenate([np.zeros(SR // 5), glide(150, 150, 0.5), np.zeros(SR // 2), glide(150, 150, 0.5),
                        np.zeros(SR // 10), glide(150, 150, 0.3)]).astype(np.float32)
    p = pause_stats(x, SR, min_pause_s=0.15)
    assert p["n_pauses"] == 1 and p["pause_s"] == pytest.approx(0.5, abs=0.04)
    assert p["leading_silence_s"] == pytest.approx(0.2, abs=0.03)
    assert pause_stats(x, SR, min_pause_s=0.05)["n_pauses"] == 2
    assert pause_stats(np.zeros(SR, np.float32), SR)["n_pauses"] == 0


def test_summary_and_plots(ref_glide):
    up = analyze_prosody(glide(shift(150, 2), shift(260, 2), 1.5), SR)
    rows = [dict(system="A", id="1", text="你好", **compare_prosody(up, ref_glide).as_dict("vs_ref_")),
            dict(system="A", id="2", text="你好呀", **compare_prosody(ref_glide, ref_glide).as_dict("vs_ref_")),
            dict(system="B", id="1", text="你好", **compare_prosody(ref_glide, ref_glide).as_dict("vs_ref_"))]
    table = prosody_summary(rows, prefix="vs_ref_", n_boot=100)
    a = table[(table.system == "A") & (table.metric == "vs_ref_f0_mean_diff_st")].iloc[0]
    assert a["n"] == 2 and a["mean"] == pytest.approx(1.0, abs=0.05) and a["bucket"] == "all"
    assert set(table.metric) <= {"vs_ref_" + f for f in PROSODY_FIELDS}
    png = figure_png(plot_f0_contours({"ref": ref_glide, "sys": up}, title="F0", semitones=True))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure_png(plot_energy_distributions({"ref": ref_glide, "sys": up}))[:4] == b"\x89PNG"
    assert figure_png(plot_metric_by_system(rows, "vs_ref_f0_mean_diff_st"))[:4] == b"\x89PNG"
