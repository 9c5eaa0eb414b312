"""Issue 17 acceptance: Japanese, Korean and Cantonese at every door. End-to-end synthesis in every new text mode on
the tiny fixture models (v2 and v2ProPlus), a finetune of espeak-ng Japanese and Cantonese clips (data → features
→ one SoVITS step and one GPT epoch) from a .list with upstream's upper-case codes, a RefAudio import of JA/KO/YUE
rows, a batch CSV and an eval test CSV in those languages, CER on a Japanese pair, and the clear errors (v1 and
Korean, symbols only). The front ends themselves are checked against upstream in tests/text/test_lang_parity.py."""
from __future__ import annotations

import dataclasses
import lzma
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

TEXTS = {
    "ja": "こんにちは、今日はいい天気ですね。",
    "all_ja": "明日は雨が降るそうです。",
    "ko": "안녕하세요, 오늘 날씨가 좋네요.",
    "all_ko": "내일은 비가 온대요.",
    "yue": "我哋今日去公園散步啦。",
    "all_yue": "你食咗飯未呀？",
    "auto": "今天天气很好。こんにちは。안녕하세요.",
    "auto_yue": "我哋去食飯啦。Hello world.",
}
REF_TEXT = "你早上好，这是参考声音。"


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_assets):
    from config import load_settings
    from gsv_core.api import Engine

    root = tmp_path_factory.mktemp("langs")
    settings = load_settings(environ={"GSV_HOME": str(root)}, my_config=root / "none.py")
    return Engine.open(settings, device="cpu", precision="fp32", bert_dir=tiny_assets["bert"],
                       hubert_dir=tiny_assets["hubert"], sv_path=tiny_assets["sv"], log_path=None)


@pytest.mark.parametrize("sovits", ["s2_v2.pth.xz", "s2_v2ProPlus.pth.xz"])
def test_every_new_text_mode_synthesises(engine, parity_dir, tiny_assets, sovits):
    from gsv_core.api import SynthesisRequest

    reqs = [SynthesisRequest(text=text, text_lang=mode, ref_audio=str(tiny_assets["ref"]), ref_text=REF_TEXT,
                             ref_lang="zh", gpt_path=str(parity_dir / "s1_v2.ckpt"),
                             sovits_path=str(parity_dir / sovits), seed=5, max_tokens=4)
            for mode, text in TEXTS.items()]
    # a Japanese reference text works as well
    reqs.append(reqs[0].replace(ref_text="おはようございます。", ref_lang="ja"))
    for req, res in zip(reqs, engine.synthesize_many(reqs)):
        assert res.audio.size > 0 and np.isfinite(res.audio).all(), req.text_lang


def test_clear_errors_for_v1_korean_and_symbols_only(engine, parity_dir, tiny_assets):
    from gsv_core.api import SynthesisRequest
    from gsv_core.errors import GSVError

    base = SynthesisRequest(text="안녕하세요.", text_lang="all_ko", ref_audio=str(tiny_assets["ref"]),
                            ref_text=REF_TEXT, ref_lang="zh", gpt_path=str(parity_dir / "s1_v1.ckpt"),
                            sovits_path=str(parity_dir / "s2_v1.pth.xz"), seed=5, max_tokens=4)
    with pytest.raises(GSVError, match="v1"):
        engine.synthesize(base)
    with pytest.raises(GSVError, match="nothing to read"):
        engine.synthesize(base.replace(text="……！！？", text_lang="all_ja"))


# -- finetune -----------------------------------------------------------------------------------------------------

JA = ["今日はいい天気ですね。", "明日は雨が降るそうです。", "駅まで歩いて十分です。", "この本はとても面白い。"]
YUE = ["我哋今日去公園散步。", "你食咗飯未呀？", "呢間餐廳好好食。", "聽日會落雨喎。"]


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (scripts/test.sh installs it)")
    return exe


def _speak(folder: Path, rows: list[tuple[str, str, str]]) -> list[str]:
    """(voice, .list code, text) → wavs and .list lines."""
    exe = _espeak()
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (voice, code, text) in enumerate(rows):
        path = folder / f"{voice}_{i:02d}.wav"
        subprocess.run([exe, "-v", voice, "-s", "140", "-w", str(path), text], check=True, capture_output=True,
                       timeout=60)
        lines.append(f"{path}|spk|{code}|{text}")
    return lines


def test_finetune_japanese_and_cantonese_clips(tmp_path, parity_dir, tiny_assets):
    from config import load_settings
    from gsv_core.finetune.pipeline import Experiment, FinetuneConfig

    lines = _speak(tmp_path / "wavs", [("ja", "JA", t) for t in JA] + [("yue", "YUE", t) for t in YUE])
    lst = tmp_path / "voice.list"
    lst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    pre = tmp_path / "pretrained"
    pre.mkdir()
    s2g = pre / "s2Gv2Pro.pth"
    s2g.write_bytes(lzma.decompress((parity_dir / "s2_v2Pro.pth.xz").read_bytes()))
    base = load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=tmp_path / "none.py")
    settings = dataclasses.replace(base, bert_dir=Path(tiny_assets["bert"]), hubert_dir=Path(tiny_assets["hubert"]),
                                   sv_path=Path(tiny_assets["sv"]), experiments_dir=tmp_path / "experiments",
                                   gpt_weight_dirs=(tmp_path / "w" / "gpt",), sovits_weight_dirs=(tmp_path / "w" / "s",),
                                   device="cpu", precision="fp32")
    cfg = FinetuneConfig(name="ja_yue", version="v2Pro", source=str(lst), pretrained_s1=str(parity_dir / "s1_v2.ckpt"),
                         pretrained_s2g=str(s2g), device="cpu", precision="fp32", split=dict(seed=1, val_fraction=0.0, test_fraction=0.0, val_min=0, test_min=0),
                         s2=dict(batch_size=4, epochs=1, save_every_epochs=1, segment_size=1280, max_steps=1),
                         s1=dict(batch_size=4, epochs=1, save_every_epochs=1))
    exp = Experiment(settings, cfg)
    exp.run(("data", "features", "s2", "s1"))
    lay = exp.layout
    kept = [ln for ln in lay.split_list("train").read_text(encoding="utf-8").splitlines() if ln.strip()]
    assert len(kept) == 8, kept  # every JA and YUE row is usable
    name2text = lay.name2text.read_text(encoding="utf-8").splitlines()
    phones = {row.split("\t")[0]: row.split("\t")[1].split() for row in name2text}
    ja_phones = [p for name, ph in phones.items() if name.startswith("ja_") for p in ph]
    yue_phones = [p for name, ph in phones.items() if name.startswith("yue_") for p in ph]
    assert ja_phones and yue_phones
    # Japanese phones are romaji with prosody marks; Cantonese phones are Jyutping initials/finals with tones
    assert {"k", "a"} & set(ja_phones) and any(p[-1].isdigit() for p in yue_phones)
    ex = exp.exports()
    assert len(ex["sovits"]) == 1 and len(ex["gpt"]) == 1


# -- RefAudio, batch CSV, eval -----------------------------------------------------------------------------------

def test_refaudio_imports_ja_ko_yue_rows(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "refaudio"))
    from ra_helpers import make_settings, make_wav
    from refaudio.service import RefAudioService

    rows = [("a.wav", "JA", "今日はいい天気ですね。"), ("b.wav", "KO", "안녕하세요, 반갑습니다."),
            ("c.wav", "YUE", "我哋今日去公園散步。"), ("d.wav", "jp", "明日は雨です。")]
    for k, (name, *_rest) in enumerate(rows):
        make_wav(tmp_path / name, 4 + k * 0.5, 200 + 30 * k, seed=k)
    lst = tmp_path / "voices.list"
    lst.write_text("".join(f"{n}|spk|{c}|{t}\n" for n, c, t in rows), encoding="utf-8")
    svc = RefAudioService(make_settings(tmp_path), engine=object(), auto_resume=False)
    try:
        role = svc.create_role("langs", "multi")
        report = svc.library.import_list(role, lst, "default")
        assert len(report.added) == 4 and not report.errors, report.summary()
        assert sorted(c["language"] for c in svc.list_clips(role)) == ["ja", "ja", "ko", "yue"]
    finally:
        svc.close()


def test_batch_and_eval_csvs_take_the_new_languages(tmp_path):
    from eval.metrics import score_utterance
    from eval.run import read_test_csv
    from gsv_core.batch import read_batch_csv, row_request
    from gsv_core.api import SynthesisRequest

    batch = tmp_path / "lines.csv"
    batch.write_text("id,text,lang\nj,こんにちは。,all_ja\nk,안녕하세요.,ko\ny,你食咗飯未呀？,yue\n", encoding="utf-8")
    base = SynthesisRequest(text="x", ref_audio="r.wav", ref_text="t", gpt_path="g", sovits_path="s")
    reqs = [row_request(base, row, line) for line, row in read_batch_csv(batch)]
    assert [r.text_lang for r in reqs] == ["all_ja", "ko", "yue"]
    test = tmp_path / "test.csv"
    test.write_text("id,text,lang\nj1,今日はいい天気です。,ja\nk1,안녕하세요.,ko\ny1,你食咗飯未呀？,yue\n", encoding="utf-8")
    assert [i.lang for i in read_test_csv(test)] == ["ja", "ko", "yue"]
    # CER on a Japanese pair: one kana of 9 differs (punctuation is not scored)
    counts = score_utterance("今日はいい天気です。", "今日はよい天気です", "ja")
    assert counts.ref_len == 9 and counts.substitutions + counts.deletions + counts.insertions == 1
    assert abs(counts.rate - 1 / 9) < 1e-9


def test_ui_dropdowns_name_every_mode_in_chinese_and_english():
    from gsv_core import languages

    choices = languages.choices()
    values = [v for _, v in choices]
    assert {"ja", "all_ja", "ko", "all_ko", "yue", "all_yue", "auto", "auto_yue"} <= set(values)
    labels = dict((v, label) for label, v in choices)
    assert "日文" in labels["all_ja"] and "Japanese" in labels["all_ja"]
    assert "粤语" in labels["all_yue"] and "Cantonese" in labels["all_yue"]
    assert "韩文" in labels["all_ko"] and "Korean" in labels["all_ko"]
