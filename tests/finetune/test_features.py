"""Feature extraction for finetuning: upstream's file formats and numerics, caching, resume and failure handling,
on tiny BERT/HuBERT/SV models and the parity fixture SoVITS checkpoints."""
from __future__ import annotations

import errno
import json
import lzma
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from gsv_core.finetune import features as feat
from gsv_core.finetune.features import FeatureError, extract_features, sinc_resample
from gsv_core.finetune.layout import DiskFullError, ExperimentLayout

ZH_TEXTS = {"zh_a.wav": "今天天气很好。", "zh_b.wav": "我们去公园散步吧！", "zh_c.wav": "这是一个测试句子。"}
EN_TEXTS = {"en_a.wav": "Hello world, this is a test."}


@pytest.fixture(scope="module")
def sources(tmp_path_factory, parity_dir):
    """Short wavs (two ~1 s speech-like pieces, one quiet float file, one too loud, one corrupt) in one folder."""
    folder = tmp_path_factory.mktemp("feature_sources")
    inputs = np.load(parity_dir / "s2_inputs.npz")
    a, b = inputs["wav32"], inputs["wav32_b"]
    sf.write(folder / "zh_a.wav", a[:32000], 32000, subtype="PCM_16")
    sf.write(folder / "zh_b.wav", b[:40000], 32000, subtype="PCM_16")
    sf.write(folder / "zh_c.wav", a[40000:72000] * 1.4, 32000, subtype="FLOAT")  # peak above 1 (float source)
    sf.write(folder / "en_a.wav", np.resize(b, 48000)[::-1].copy(), 48000, subtype="PCM_16")  # resampled to 32 k
    sf.write(folder / "loud.wav", a[:32000] * 4.0, 32000, subtype="FLOAT")  # peak 2.4 > 2.2
    (folder / "bad.wav").write_bytes(b"RIFF\x00\x00not really a wave file")
    return folder


def _layout(tmp_path: Path, sources: Path) -> ExperimentLayout:
    layout = ExperimentLayout(tmp_path / "exp")
    layout.data_dir.mkdir(parents=True)
    train = [f"{sources / n}|spk|ZH|{t}" for n, t in ZH_TEXTS.items() if n != "zh_c.wav"]
    train += [f"{sources / n}|spk|EN|{t}" for n, t in EN_TEXTS.items()]
    train += [f"{sources / 'loud.wav'}|spk|ZH|今天天气很好。", f"{sources / 'bad.wav'}|spk|en|Hello there."]
    layout.split_list("train").write_text("\n".join(train) + "\n", encoding="utf-8")
    layout.split_list("val").write_text(f"{sources / 'zh_c.wav'}|spk|zh|{ZH_TEXTS['zh_c.wav']}\n", encoding="utf-8")
    return layout


GOOD = ["zh_a.wav", "zh_b.wav", "en_a.wav", "zh_c.wav"]


@pytest.fixture(scope="module", autouse=True)
def _sovits_loaded_once():
    """Every run loads its pretrained SoVITS file; tests share one copy per path to stay fast."""
    import gsv_core.loading as loading

    real, cache = loading.load_sovits, {}

    def cached(path, device="cpu", dtype=torch.float32):
        key = (str(path), str(device), dtype)
        if key not in cache:
            cache[key] = real(path, device, dtype)
        return cache[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loading, "load_sovits", cached)
        yield


@pytest.fixture(scope="module")
def v2_done(tmp_path_factory, sources, tiny_assets, parity_dir):
    """A finished v2 extraction; tests that change something work on a copy (mtimes preserved)."""
    layout = _layout(tmp_path_factory.mktemp("v2_done"), sources)
    result = _run(layout, tiny_assets, parity_dir / "s2_v2.pth.xz", version="v2")
    return layout, result


def _copy(done: ExperimentLayout, tmp_path: Path) -> ExperimentLayout:
    shutil.copytree(done.root, tmp_path / "exp", copy_function=shutil.copy2)
    return ExperimentLayout(tmp_path / "exp")


def _run(layout, tiny_assets, s2g, version="v2Pro", **kw):
    return extract_features(layout, version=version, bert_dir=tiny_assets["bert"], hubert_dir=tiny_assets["hubert"],
                            pretrained_s2g=s2g, sv_path=tiny_assets["sv"], device="cpu", precision="fp32",
                            use_g2pw=False, **kw)


class _Counter:
    """Counts calls of a method while delegating to it."""

    def __init__(self, monkeypatch, cls, name):
        self.calls = 0
        original = getattr(cls, name)

        def wrapper(obj, *args, **kwargs):
            self.calls += 1
            return original(obj, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)


def _upstream_mix(wav: np.ndarray, scale: float) -> np.ndarray:
    """2-get-hubert-wav32k.py's formula, written out independently (float32 arithmetic as numpy does it there)."""
    wav = wav.astype(np.float32)
    top = np.abs(wav).max()
    return (wav / top * (0.95 * 0.5 * scale)) + ((1 - 0.5) * scale) * wav


def test_formats_numerics_and_failures(tmp_path, sources, tiny_assets, parity_dir):
    from gsv_core.audio import load_audio, resample
    from gsv_core.loading import load_hubert, load_sovits

    layout = _layout(tmp_path, sources)
    seen = []
    result = _run(layout, tiny_assets, parity_dir / "s2_v2Pro.pth.xz", progress=lambda f, m: seen.append(f))
    assert not result.cancelled
    assert result.usable == GOOD
    failed = {f.name: f for f in result.failed}
    assert set(failed) == {"loud.wav", "bad.wav"}
    assert failed["loud.wav"].step == "audio" and "2.2" in failed["loud.wav"].reason
    assert failed["bad.wav"].step == "audio" and "bad.wav" in failed["bad.wav"].reason
    errors = json.loads((layout.root / "features_errors.json").read_text(encoding="utf-8"))
    assert {e["name"] for e in errors["failed"]} == {"loud.wav", "bad.wav"}
    assert seen == sorted(seen) and seen[-1] == 1.0

    # 2-name2text.txt: name, phones, word2ph repr (None for English), normalised text
    rows = [line.split("\t") for line in layout.name2text.read_text(encoding="utf-8").rstrip("\n").split("\n")]
    by_name = {r[0]: r for r in rows}
    assert set(by_name) == {"zh_a.wav", "zh_b.wav", "en_a.wav", "zh_c.wav", "loud.wav", "bad.wav"}
    assert all(len(r) == 4 for r in rows)
    name, phones, word2ph, norm = by_name["zh_a.wav"]
    w2p = json.loads(word2ph)
    assert word2ph == repr(w2p) and len(w2p) == len(norm) and sum(w2p) == len(phones.split(" "))
    assert by_name["en_a.wav"][2] == "None"

    # 3-bert: [1024, n_phones] for Chinese lines only
    for name in ("zh_a.wav", "zh_b.wav", "zh_c.wav"):
        bert = torch.load(layout.bert_dir / f"{name}.pt", weights_only=True)
        assert bert.shape == (1024, len(by_name[name][1].split(" "))) and bert.dtype == torch.float32
    assert not (layout.bert_dir / "en_a.wav.pt").exists()

    # 5-wav32k: upstream's int16 mix, computed here from the decoded source
    hubert = load_hubert(tiny_assets["hubert"])
    for name in GOOD:
        wav, _ = load_audio(sources / name, 32000)
        data, sr = sf.read(layout.wav32k_dir / name, dtype="int16")
        assert sr == 32000
        expected = np.clip(np.trunc(_upstream_mix(wav, 32768.0).astype(np.float64)), -32768, 32767).astype(np.int16)
        np.testing.assert_array_equal(data, expected)
        # 4-cnhubert: [1, 768, T] of the 1145.14 mix at 16 kHz
        ssl = torch.load(layout.hubert_dir / f"{name}.pt", weights_only=True)
        assert ssl.dim() == 3 and ssl.shape[:2] == (1, 768) and ssl.dtype == torch.float32
        wav16 = resample(_upstream_mix(wav, 1145.14), 32000, 16000)
        torch.testing.assert_close(ssl, hubert.raw_features(torch.from_numpy(wav16)), rtol=0, atol=0)
        # 7-sv_cn: [1, 20480]
        sv = torch.load(layout.sv_dir / f"{name}.pt", weights_only=True)
        assert sv.shape == (1, 20480)
    assert not (layout.wav32k_dir / "loud.wav").exists() and not (layout.hubert_dir / "loud.wav.pt").exists()

    # 6-name2semantic.tsv: header, then the pretrained quantizer's tokens of each stored HuBERT tensor
    lines = layout.name2semantic.read_text(encoding="utf-8").rstrip("\n").split("\n")
    assert lines[0] == "item_name\tsemantic_audio"
    tokens = dict(line.split("\t") for line in lines[1:])
    assert list(tokens) == GOOD
    sovits, _ = load_sovits(parity_dir / "s2_v2Pro.pth.xz")
    for name in GOOD:
        ssl = torch.load(layout.hubert_dir / f"{name}.pt", weights_only=True)
        with torch.inference_mode():
            codes = sovits.extract_latent(ssl)[0, 0].tolist()
        assert tokens[name] == " ".join(map(str, codes)) and len(codes) == ssl.shape[-1] // 2

    manifest = json.loads(layout.features_manifest.read_text(encoding="utf-8"))
    assert manifest["complete"] and manifest["version"] == "v2Pro"
    assert {"bert", "hubert", "pretrained_s2g", "sv"} <= set(manifest["models"])
    assert len(manifest["models"]["pretrained_s2g"]["sha256"]) == 64


def test_v2_writes_no_speaker_vectors_and_checks_the_pretrained_version(tmp_path, sources, tiny_assets, parity_dir,
                                                                         v2_done):
    layout, result = v2_done
    assert result.usable == GOOD
    assert not layout.sv_dir.exists() or not any(layout.sv_dir.iterdir())
    assert "sv" not in json.loads(layout.features_manifest.read_text(encoding="utf-8"))["models"]
    fresh = _layout(tmp_path, sources)
    with pytest.raises(FeatureError, match=r"v2Pro model, but the experiment is v2"):
        _run(fresh, tiny_assets, parity_dir / "s2_v2Pro.pth.xz", version="v2")
    assert not fresh.hubert_dir.exists()  # refused before any work


def test_cancel_then_resume_redoes_only_missing_items(tmp_path, sources, tiny_assets, parity_dir, monkeypatch):
    from gsv_core.features.bert import BertPhoneFeatures
    from gsv_core.features.hubert import HubertContent

    layout = _layout(tmp_path, sources)
    hub = _Counter(monkeypatch, HubertContent, "raw_features")
    bert = _Counter(monkeypatch, BertPhoneFeatures, "phone_features_batch")
    first = _run(layout, tiny_assets, parity_dir / "s2_v2.pth.xz", version="v2", batch_size=2,
                 cancel=lambda: hub.calls >= 2)
    assert first.cancelled and hub.calls == 2
    assert not layout.name2semantic.exists()  # tables only when a run finishes
    assert json.loads(layout.features_manifest.read_text(encoding="utf-8"))["complete"] is False
    done = sorted(p.name for p in layout.hubert_dir.iterdir() if p.suffix == ".pt")
    assert len(done) == 2
    mtimes = {p: p.stat().st_mtime_ns for p in layout.hubert_dir.iterdir()}
    bert_calls = bert.calls

    second = _run(layout, tiny_assets, parity_dir / "s2_v2.pth.xz", version="v2", batch_size=2)
    assert not second.cancelled and second.usable == GOOD
    assert hub.calls == 2 + (len(GOOD) - 2)  # only the two items not finished before
    assert bert.calls == bert_calls  # text and BERT were complete: nothing recomputed
    assert second.steps["text"].cached == 6 and second.steps["audio"].cached == 2
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())

    third = _run(layout, tiny_assets, parity_dir / "s2_v2.pth.xz", version="v2")
    assert hub.calls == len(GOOD) + 0 * third.items  # a complete run recomputes nothing
    assert third.steps["semantic"].cached == len(GOOD) and third.steps["semantic"].computed == 0


def test_changed_pretrained_model_invalidates_only_the_semantic_tokens(tmp_path, tiny_assets, parity_dir, v2_done):
    layout = _copy(v2_done[0], tmp_path)
    other = tmp_path / "s2G_other.pth"  # same model, other file content: treated as another model
    other.write_bytes(lzma.decompress((parity_dir / "s2_v2.pth.xz").read_bytes()))
    result = _run(layout, tiny_assets, other, version="v2")
    assert result.invalidated == ["semantic"]
    assert result.steps["semantic"].computed == len(GOOD)
    assert result.steps["audio"].cached == len(GOOD) and result.steps["audio"].computed == 0
    assert result.steps["text"].computed == 0


def test_changed_text_or_audio_redoes_that_item(tmp_path, tiny_assets, parity_dir, v2_done):
    layout = _copy(v2_done[0], tmp_path)
    text = layout.split_list("val").read_text(encoding="utf-8").replace("这是一个测试句子", "你早上吃了吗")
    layout.split_list("val").write_text(text, encoding="utf-8")
    result = _run(layout, tiny_assets, parity_dir / "s2_v2.pth.xz", version="v2")
    assert result.steps["text"].computed == 1 and result.steps["audio"].computed == 0
    assert result.steps["semantic"].computed == 0
    # new audio for zh_b (another file of the same name): its wav32k, HuBERT and tokens are redone
    other = tmp_path / "new" / "zh_b.wav"
    other.parent.mkdir()
    sf.write(other, np.resize(sf.read(v2_done[0].wav32k_dir / "zh_a.wav")[0], 36000), 32000)
    train = layout.split_list("train").read_text(encoding="utf-8")
    train = "\n".join(f"{other}|" + line.split("|", 1)[1] if line.split("|")[0].endswith("zh_b.wav") else line
                      for line in train.split("\n"))
    layout.split_list("train").write_text(train, encoding="utf-8")
    result = _run(layout, tiny_assets, parity_dir / "s2_v2.pth.xz", version="v2")
    assert result.steps["audio"].computed == 1 and result.steps["semantic"].computed == 1
    assert sf.info(layout.wav32k_dir / "zh_b.wav").frames == 36000
    row = [r for r in layout.name2text.read_text(encoding="utf-8").split("\n") if r.startswith("zh_c.wav\t")][0]
    assert row.endswith("\t你早上吃了吗.")


def test_missing_model_folder_names_it_and_the_download_command(tmp_path, sources, tiny_assets, parity_dir):
    layout = _layout(tmp_path, sources)
    with pytest.raises(FeatureError) as err:
        extract_features(layout, version="v2", bert_dir=tmp_path / "nope" / "chinese-roberta",
                         hubert_dir=tiny_assets["hubert"], pretrained_s2g=parity_dir / "s2_v2.pth.xz", device="cpu")
    assert "nope" in str(err.value) and "python -m gsv_core.download bert" in str(err.value)
    with pytest.raises(FeatureError, match=r"python -m gsv_core.download sv"):
        extract_features(layout, version="v2Pro", bert_dir=tiny_assets["bert"], hubert_dir=tiny_assets["hubert"],
                         pretrained_s2g=parity_dir / "s2_v2Pro.pth.xz", sv_path=tmp_path / "sv.ckpt", device="cpu")
    with pytest.raises(FeatureError, match=r"run the data stage first"):
        _run(ExperimentLayout(tmp_path / "empty"), tiny_assets, parity_dir / "s2_v2.pth.xz", version="v2")


def test_nothing_usable_fails_clearly(tmp_path, sources, tiny_assets, parity_dir):
    layout = ExperimentLayout(tmp_path / "exp")
    layout.data_dir.mkdir(parents=True)
    layout.split_list("train").write_text(f"{sources / 'bad.wav'}|spk|en|Hello there.\n", encoding="utf-8")
    with pytest.raises(FeatureError, match=r"no usable utterance.*bad.wav"):
        _run(layout, tiny_assets, parity_dir / "s2_v2.pth.xz", version="v2")
    assert (layout.root / "features_errors.json").is_file()


def test_disk_full_keeps_what_was_written(tmp_path, sources, tiny_assets, parity_dir, monkeypatch):
    layout = _layout(tmp_path, sources)
    real = feat._write_bytes_atomic
    writes = []

    def filling(data, path):
        if len(writes) >= 6:  # 4 BERT files, then zh_a's 32 kHz wav and HuBERT; zh_b's wav fails
            raise OSError(errno.ENOSPC, "No space left on device")
        real(data, path)
        writes.append(path)

    monkeypatch.setattr(feat, "_write_bytes_atomic", filling)
    with pytest.raises(DiskFullError, match="free some space"):
        _run(layout, tiny_assets, parity_dir / "s2_v2.pth.xz", version="v2")
    assert len(writes) == 6 and all(p.is_file() for p in writes)
    assert not [p for p in layout.root.rglob("*.tmp")]  # no partial file left
    kept = {p: p.stat().st_mtime_ns for p in writes}

    monkeypatch.setattr(feat, "_write_bytes_atomic", real)
    result = _run(layout, tiny_assets, parity_dir / "s2_v2.pth.xz", version="v2")
    assert result.usable == GOOD
    assert [p.name for p, t in kept.items() if p.stat().st_mtime_ns != t] == []  # reused, not rewritten


def test_sinc_resample_matches_the_windowed_sinc_formula():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(301).astype(np.float32)
    y = sinc_resample(torch.from_numpy(x), 32000, 16000).numpy()
    assert y.shape == (math.ceil(301 / 2),)
    # y[j] = sum_k x[k] h(k/2 - j), h(u) = sinc(pi c u) cos^2(pi c u / 12) c / 2, c = 0.99, |c u| <= 6
    c, zeros = 0.99, 6
    k = np.arange(len(x))
    ref = np.empty(len(y))
    for j in range(len(y)):
        u = np.clip((k / 2 - j) * c, -zeros, zeros)
        h = np.sinc(u) * np.cos(np.pi * u / (2 * zeros)) ** 2 * c / 2
        h[np.abs((k / 2 - j) * c) > zeros] = 0.0  # outside the window (cos^2 is ~0 there anyway)
        ref[j] = np.dot(x.astype(np.float64), h)
    np.testing.assert_allclose(y, ref, atol=2e-5)
    # a 1 kHz tone passes unchanged (within the band), so the length and phase are right
    t = np.arange(32000) / 32000
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    out = sinc_resample(torch.from_numpy(tone), 32000, 16000).numpy()
    expected = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    np.testing.assert_allclose(out[100:-100], expected[100:-100], atol=2e-3)


def test_hubert_is_not_batched_because_padding_changes_it(tiny_assets):
    """Justifies one-by-one HuBERT: with zero padding to a longer item the real frames change."""
    from gsv_core.loading import load_hubert

    hubert = load_hubert(tiny_assets["hubert"])
    rng = np.random.default_rng(1)
    short = torch.from_numpy(rng.standard_normal(8000).astype(np.float32))
    alone = hubert.raw_features(short)
    padded = hubert.raw_features(torch.cat([short, torch.zeros(8000)])[None])[..., : alone.shape[-1]]
    assert not torch.allclose(alone, padded, atol=1e-4)
