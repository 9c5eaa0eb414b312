"""The finetuning data stage: reading lists/CSVs, per-rule cleaning with its report, refpool, split, resume, errors."""
from __future__ import annotations

import csv
import errno
import json

import numpy as np
import pytest
import soundfile as sf

from gsv_core.audio import save_wav
from gsv_core.finetune import data as data_mod
from gsv_core.finetune.data import (CleaningConfig, DataCancelled, DatasetError, EmptyDatasetError, SplitConfig,
                                    character_error_rate, prepare_dataset, read_dataset, speech_units, split_items)
from gsv_core.finetune.layout import DiskFullError, ExperimentLayout

SR = 32000
ZH12 = "今天天气很好我们一起去公园"  # 13 CJK characters


def speech(seconds=3.0, f0=150.0, amp=0.3, lead=0.2, tail=0.2, seed=0, noise=1e-4):
    """A voiced, syllable-like signal (harmonics of f0 under a 4 Hz envelope) between two silences."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    env = 0.5 * (1 - np.cos(2 * np.pi * 4 * t))
    sig = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6)) * env * amp / 2
    out = np.concatenate([np.zeros(int(lead * SR)), sig, np.zeros(int(tail * SR))])
    return (out + rng.standard_normal(out.size) * noise).astype(np.float32)


def _write(folder, name, wav, sr=SR):
    path = folder / name
    if path.suffix == ".wav":
        save_wav(path, wav, sr)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), wav, sr)
    return path


def _write_list(path, lines, encoding="utf-8"):
    path.write_text("\n".join(lines) + "\n", encoding=encoding)
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """10 clean clips + one clip for each rule + invalid rows; prepared once."""
    root = tmp_path_factory.mktemp("ds")
    wavs = root / "wavs"
    lines, expect = [], {}
    for i in range(10):
        _write(wavs, f"clean{i}.wav", speech(3.5, f0=140 + 2 * i, amp=0.25 + 0.01 * i, seed=i))
        lines.append(f"wavs/clean{i}.wav|spk|ZH|{ZH12}")
    _write(wavs, "long_clean.wav", speech(6.0, seed=20))
    lines.append(f"wavs/long_clean.wav|spk|zh|{ZH12 * 2}")
    _write(wavs, "english.wav", speech(3.0, seed=21))
    lines.append("wavs/english.wav|spk|EN|Hello world, this is a little test.")
    bad = {
        "short": (speech(0.6, lead=0.05, tail=0.05), "你好"),
        "clipped": (np.clip(speech(3.0, amp=4.0), -1, 1), ZH12),
        "silent": (np.concatenate([speech(0.5, lead=0, tail=0), np.zeros(SR), speech(0.5, lead=0, tail=0),
                                   np.zeros(SR), speech(0.5, lead=0, tail=0)]).astype(np.float32), "你好吗好的"),
        "lead": (speech(3.0, lead=1.6), ZH12),
        "noisy": (speech(3.0) + np.random.default_rng(5).standard_normal(int(3.4 * SR)).astype(np.float32) * 0.1,
                  ZH12),
        "fast": (speech(3.0), ZH12 * 4),
        "empty": (speech(3.0), ""),
        "quiet": (speech(3.0, amp=0.01, noise=1e-6), ZH12),
        "high": (speech(3.0, f0=420.0), ZH12),
        "english_cjk": (speech(3.0), ZH12),
    }
    rule = {"short": "too_short", "clipped": "clipping", "silent": "too_much_silence",
            "lead": "long_lead_tail_silence", "noisy": "low_snr", "fast": "implausible_cps", "empty": "empty_text",
            "quiet": "energy_outlier", "high": "f0_outlier", "english_cjk": "text_mismatch"}
    for name, (wav, text) in bad.items():
        _write(wavs, f"{name}.wav", wav)
        lang = "en" if name == "english_cjk" else "zh"
        lines.append(f"wavs/{name}.wav|spk|{lang}|{text}")
        expect[name] = rule[name]
    lines.insert(3, "wavs/clean0.wav|spk|zh")                       # malformed: 3 fields (line 4)
    lines.append("wavs/missing.wav|spk|zh|不存在的文件")              # missing audio
    lines.append("wavs/clean1.wav|spk|FR|bonjour")                    # unsupported language
    lines.append("")                                                # blank lines are not rows
    src = _write_list(root / "input.list", lines)
    layout = ExperimentLayout(root / "exp")
    seen = []
    result = prepare_dataset(src, layout, progress=lambda f, m: seen.append(f))
    return dict(root=root, src=src, layout=layout, result=result, expect=expect, lines=lines, progress=seen)


def _report_rows(layout):
    with open(layout.cleaning_report_csv, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_each_rule_drops_its_clip(dataset):
    rows = {r["audio"].rsplit("/", 1)[-1]: r for r in _report_rows(dataset["layout"]) if r["decision"] != "invalid"}
    for name, rule in dataset["expect"].items():
        row = rows[f"{name}.wav"]
        assert row["decision"] == "dropped", (name, row["reasons"])
        assert rule in row["reasons"].split(";"), (name, row["reasons"], row["details"])
    for i in range(10):
        row = rows[f"clean{i}.wav"]
        assert row["decision"] == "kept", (i, row["details"])
    assert rows["english.wav"]["decision"] == "kept", rows["english.wav"]["details"]
    assert rows["long_clean.wav"]["decision"] == "kept"
    # ordinary 0.2 s lead/tail silences are not a problem; F0 is measured on voiced frames only
    assert float(rows["clean0.wav"]["f0_median_hz"]) == pytest.approx(140, rel=0.03)
    assert float(rows["clean0.wav"]["lead_silence_s"]) < 0.3


def test_invalid_rows_reported_with_line_numbers(dataset):
    summary = json.loads(dataset["layout"].cleaning_report_json.read_text(encoding="utf-8"))
    invalid = {r["line"]: r for r in summary["invalid_rows"]}
    assert invalid[4]["rule"] == "invalid_row" and "4 fields" in invalid[4]["reason"]
    missing = [r for r in invalid.values() if r["rule"] == "missing_audio"]
    assert len(missing) == 1 and "missing.wav" in missing[0]["reason"]
    ja = [r for r in invalid.values() if r["rule"] == "unsupported_language"]
    assert len(ja) == 1 and "unknown language code 'FR'" in ja[0]["reason"]
    assert summary["counts"]["invalid"] == 3


def test_report_counts_durations_and_lists(dataset):
    layout, result = dataset["layout"], dataset["result"]
    summary = json.loads(layout.cleaning_report_json.read_text(encoding="utf-8"))
    counts = summary["counts"]
    assert counts["kept"] == 12 and counts["dropped"] == len(dataset["expect"])
    assert counts["rows"] == counts["kept"] + counts["dropped"] + counts["invalid"] == len(_report_rows(layout))
    assert counts["train"] + counts["val"] + counts["test"] == counts["kept"]
    assert summary["seconds"]["kept"] == pytest.approx(10 * 3.9 + 6.4 + 3.4, abs=0.01)
    assert summary["seconds"]["kept"] + summary["seconds"]["dropped"] == pytest.approx(summary["seconds"]["analysed"])
    for name, rule in dataset["expect"].items():
        assert summary["rules"][rule]["failed"] >= 1
    assert summary["rules"]["too_short"]["failed_seconds"] == pytest.approx(0.7, abs=0.01)
    assert summary["outlier_thresholds"]["spk"]["judged"] is True
    assert result.counts == counts and dataset["progress"][-1] == 1.0
    lists = {s: layout.split_list(s).read_text(encoding="utf-8").splitlines() for s in ("train", "val", "test",
                                                                                        "refpool")}
    assert len(lists["train"]) == counts["train"] and len(lists["refpool"]) == counts["refpool"] > 0
    assert (len(lists["val"]), len(lists["test"])) == (2, 2)
    names = [ln.split("|")[0] for s in ("train", "val", "test") for ln in lists[s]]
    assert len(set(names)) == len(names) == 12
    for ln in lists["refpool"]:  # clean 3-5 s clips of the train split, which stay in training
        assert ln in lists["train"] and "clean" in ln and ln.split("|")[0].startswith("/")
    assert all(ln.count("|") == 3 for s in lists for ln in lists[s])


def test_split_reproducible_disjoint_and_sized():
    keys = [f"k{i}.wav" for i in range(100)]
    spk = ["a"] * 100
    a = split_items(keys, spk, SplitConfig(seed=1))
    assert a == split_items(keys, spk, SplitConfig(seed=1))
    assert a != split_items(keys, spk, SplitConfig(seed=2))
    assert sorted(a) == sorted(keys)
    assert sum(v == "val" for v in a.values()) == 5 and sum(v == "test" for v in a.values()) == 5
    big = split_items([f"k{i}" for i in range(3000)], ["a"] * 3000, SplitConfig())
    assert sum(v == "test" for v in big.values()) == 50
    assert set(split_items(["x"], ["a"], SplitConfig()).values()) == {"train"}
    small = split_items(["x", "y", "z"], ["a"] * 3, SplitConfig())
    assert sorted(small.values()) == ["test", "train", "train"]
    # stratified: every speaker keeps a train clip and both speakers are held out
    keys = [f"s{i}" for i in range(100)]
    speakers = ["a"] * 60 + ["b"] * 40
    strat = split_items(keys, speakers, SplitConfig(stratify_by_speaker=True))
    held = [speakers[i] for i, k in enumerate(keys) if strat[k] != "train"]
    assert sorted(held) == ["a"] * 6 + ["b"] * 4
    tiny = split_items(["p", "q", "r", "t"], ["a", "a", "a", "b"], SplitConfig(stratify_by_speaker=True))
    assert tiny["t"] == "train"
    assert any(strat[k] == "train" for i, k in enumerate(keys) if speakers[i] == "b")


def test_read_list_bom_relative_and_audio_dir(tmp_path):
    wav = _write(tmp_path / "audio", "x.wav", speech(2.0))
    src = tmp_path / "a.list"
    src.write_bytes("\ufeffaudio/x.wav|spk|ZH|你好\n".encode("utf-8"))
    rows = read_dataset(src)
    assert rows[0].audio == wav and rows[0].lang == "zh" and rows[0].speaker == "spk" and rows[0].line == 1
    src2 = _write_list(tmp_path / "b.list", [r"D:\data\x.wav|spk|en|hello there"])
    with pytest.raises(DatasetError, match="audio_dir"):
        read_dataset(src2)
    rows = read_dataset(src2, audio_dir=tmp_path / "audio")
    assert rows[0].audio == wav and rows[0].lang == "en"


def test_non_utf8_error_names_the_line(tmp_path):
    # GBK (what Chinese Windows tools save) is read as such; other bytes are refused naming the line
    _write(tmp_path, "b.wav", speech(2.0))
    gbk = tmp_path / "gbk.list"
    gbk.write_bytes("b.wav|s|zh|你好\n".encode("gbk"))
    assert [r.text for r in read_dataset(gbk)] == ["你好"]
    src = tmp_path / "bad.list"
    src.write_bytes("a.wav|s|zh|hello\n".encode() + b"b.wav|s|zh|\xff\xff\n")
    with pytest.raises(DatasetError, match=r"line 2 .*UTF-8"):
        read_dataset(src)


def test_malformed_rows_have_line_numbers(tmp_path):
    _write(tmp_path, "x.wav", speech(2.0))
    src = _write_list(tmp_path / "m.list", ["x.wav|s|zh|好", "x.wav|s|zh", "|s|zh|空", "y.wav|s|zh|a|b",
                                            "x.wav|s|xx|好", "x.wav|s|zh|重复"])
    rows = read_dataset(src)
    assert len(rows) == 1
    problems = {r.line: (r.rule, r.reason) for r in rows.invalid}
    assert problems[2][0] == "invalid_row" and "found 3" in problems[2][1]
    assert problems[3][0] == "invalid_row" and "empty" in problems[3][1]
    # '|' inside a text is read whole (the one .list rule): y.wav's text is "a|b"; the file itself is missing
    assert problems[4][0] == "missing_audio" and "y.wav" in problems[4][1]
    assert problems[5][0] == "unsupported_language" and "unknown language code" in problems[5][1]
    assert problems[6][0] == "duplicate" and "line 1" in problems[6][1]
    bad = _write_list(tmp_path / "bad.list", ["only|three|fields"])
    with pytest.raises(DatasetError, match="line 1"):
        read_dataset(bad)


def test_csv_detection_and_headers(tmp_path):
    _write(tmp_path / "w", "a.wav", speech(2.0))
    _write(tmp_path / "w", "b.wav", speech(2.0))
    src = tmp_path / "t.csv"
    src.write_text("\ufeff文件名,文本,Speaker\nw/a.wav,\"你好,世界\",amy\nw/b.wav,hello,\n", encoding="utf-8")
    rows = read_dataset(src, default_lang="en", default_speaker="bob")
    assert rows.format == "csv" and [r.text for r in rows] == ["你好,世界", "hello"]
    assert [r.speaker for r in rows] == ["amy", "bob"] and rows[0].lang == "en" and rows[1].line == 3
    src2 = tmp_path / "t2.data"
    src2.write_text("AUDIO_PATH;Transcript;LANG\nw/a.wav;hi;zh\n", encoding="utf-8")
    rows = read_dataset(src2)
    assert rows.format == "csv" and rows[0].lang == "zh"
    src3 = tmp_path / "t3.csv"
    src3.write_text("foo,bar\nw/a.wav,hi\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="no audio and no text column"):
        read_dataset(src3)


def test_basename_collisions_and_conversion(tmp_path):
    a1 = _write(tmp_path / "one", "same.wav", speech(3.0, seed=1))
    a2 = _write(tmp_path / "two", "same.wav", speech(3.0, seed=2))
    fl = _write(tmp_path / "one", "other.flac", speech(3.0, seed=3))
    fl2 = _write(tmp_path / "two", "same.flac", speech(3.0, seed=4))
    src = _write_list(tmp_path / "c.list", [f"{p}|s|zh|{ZH12}" for p in (a1, a2, fl, fl2)])
    layout = ExperimentLayout(tmp_path / "exp")
    res = prepare_dataset(src, layout, split=SplitConfig(val_min=0, test_min=0))
    lines = layout.split_list("train").read_text(encoding="utf-8").splitlines()
    paths = [ln.split("|")[0] for ln in lines]
    names = [p.rsplit("/", 1)[-1] for p in paths]
    assert len(paths) == 4 and len(set(names)) == 4 and res.counts["train"] == 4
    assert str(a1) in paths and "other.wav" in names
    for p in paths:
        data, rate = sf.read(p)
        assert rate == SR and data.shape[0] == int(3.4 * SR)
    assert res.summary["copied_to_clips"] == 3


def _small_set(tmp_path, n=5):
    lines = []
    for i in range(n):
        _write(tmp_path / "w", f"c{i}.wav", speech(3.0, seed=i))
        lines.append(f"w/c{i}.wav|s|zh|{ZH12}")
    return _write_list(tmp_path / "s.list", lines)


def test_resume_reuses_the_analysis_cache(tmp_path, monkeypatch):
    src = _small_set(tmp_path)
    layout = ExperimentLayout(tmp_path / "exp")
    polls = iter([False, False, True])
    with pytest.raises(DataCancelled):
        prepare_dataset(src, layout, cancel=lambda: next(polls, True))
    real, calls = data_mod.analyze_file, []
    monkeypatch.setattr(data_mod, "analyze_file", lambda p, c: calls.append(p) or real(p, c))
    res = prepare_dataset(src, layout)
    assert len(calls) == 3 and res.summary["analysis_reused"] == 2
    calls.clear()
    res = prepare_dataset(src, layout)
    assert calls == [] and res.summary["analysis_reused"] == 5
    # a changed analysis setting invalidates the cache
    prepare_dataset(src, layout, cleaning=CleaningConfig(silence_rel_db=35.0))
    assert len(calls) == 5


def test_empty_dataset_error_names_rules_and_writes_report(tmp_path):
    for i in range(3):
        _write(tmp_path / "w", f"s{i}.wav", speech(0.5, lead=0.05, tail=0.05, seed=i))
    src = _write_list(tmp_path / "e.list", [f"w/s{i}.wav|s|zh|好" for i in range(3)] + ["w/x.wav|s|zh|无"])
    layout = ExperimentLayout(tmp_path / "exp")
    with pytest.raises(EmptyDatasetError, match=r"missing_audio \(1\), too_short \(3\)"):
        prepare_dataset(src, layout)
    summary = json.loads(layout.cleaning_report_json.read_text(encoding="utf-8"))
    assert summary["counts"]["kept"] == 0 and summary["rules"]["too_short"]["failed"] == 3
    assert len(_report_rows(layout)) == 4 and not layout.split_list("train").exists()


def test_disk_full_keeps_earlier_files(tmp_path, monkeypatch):
    src = _small_set(tmp_path)
    layout = ExperimentLayout(tmp_path / "exp")
    prepare_dataset(src, layout)
    before = {p: p.read_bytes() for p in layout.data_dir.iterdir() if p.is_file()}

    def full(path, text):
        if str(path).endswith("train.list"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, text)

    real = data_mod.write_text_atomic
    monkeypatch.setattr(data_mod, "write_text_atomic", full)
    with pytest.raises(DiskFullError, match="disk full"):
        prepare_dataset(src, layout)
    for p, content in before.items():
        if p.name != "cleaning_report.json":
            assert p.read_bytes() == content, p.name
    assert not [p for p in layout.data_dir.iterdir() if p.name.endswith(".tmp")]


def test_asr_consistency(tmp_path):
    src = _small_set(tmp_path, n=3)
    layout = ExperimentLayout(tmp_path / "exp")
    heard = []

    def transcribe(path, lang):
        heard.append(path.name)
        return "完全不同的句子内容" if path.name == "c1.wav" else ZH12 + "。"

    res = prepare_dataset(src, layout, transcribe=transcribe, split=SplitConfig(val_min=0, test_min=0))
    rows = {r["audio"].rsplit("/", 1)[-1]: r for r in _report_rows(layout)}
    assert rows["c1.wav"]["reasons"] == "asr_mismatch" and float(rows["c1.wav"]["cer"]) > 0.5
    assert rows["c0.wav"]["decision"] == "kept" and float(rows["c0.wav"]["cer"]) == 0.0
    assert res.counts["kept"] == 2 and len(heard) == 3
    prepare_dataset(src, layout, transcribe=transcribe)
    assert len(heard) == 3  # cached


def test_text_measures():
    assert speech_units("今天 hello world") == 2 + 2 + 1
    assert speech_units("AI 2024") == 2 + 4
    assert speech_units("，。!") == 0
    assert character_error_rate("你好，世界", "你好世界!") == 0.0
    assert character_error_rate("abcd", "abxd") == pytest.approx(0.25)
    assert character_error_rate("...", "x") is None


def test_other_sample_rates_are_resampled_and_a_corrupt_file_is_reported(tmp_path):
    """8 kHz / 44.1 kHz / 48 kHz clips are analysed at 32 kHz with their duration kept; a file whose header is
    garbage is reported on its line as unreadable, and the other rows go on."""
    import soxr

    folder = tmp_path / "wavs"
    folder.mkdir()
    lines = []
    for i, sr in enumerate((8000, 44100, 48000, 32000, 22050, 16000, 24000, 32000, 44100, 48000)):
        wav = soxr.resample(speech(3.0, f0=140 + 3 * i, seed=i), SR, sr).astype(np.float32)
        path = folder / f"r{sr}_{i}.wav"
        sf.write(str(path), wav, sr)
        lines.append(f"{path}|spk|zh|{ZH12}")
    bad = folder / "corrupt.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40)
    lines.append(f"{bad}|spk|zh|{ZH12}")
    layout = ExperimentLayout(tmp_path / "exp")
    result = prepare_dataset(_write_list(tmp_path / "in.list", lines), layout)
    rows = {r["audio"].rsplit("/", 1)[-1]: r for r in csv.DictReader(open(layout.cleaning_report_csv, encoding="utf-8"))}
    for name, r in rows.items():
        if name.startswith("r"):
            assert abs(float(r["duration_s"]) - 3.4) < 0.02, (name, r["duration_s"])
            assert r["decision"] == "kept", (name, r["reasons"])
    assert rows["corrupt.wav"]["decision"] == "invalid" and "unreadable_audio" in rows["corrupt.wav"]["reasons"]
    assert result.counts["kept"] == 10 and result.counts["invalid"] == 1
