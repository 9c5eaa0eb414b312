"""End to end: a small dataset spoken by espeak-ng (Mandarin and English, 24 clips) → cleaning report → features
→ a few SoVITS and GPT steps on the CPU → official-format exports that the engine loads and synthesises with →
checkpoint selection through the eval loop; and a training process killed with SIGKILL resumes from its saved
step. The "pretrained" models are the tiny parity fixtures and tiny random BERT/HuBERT/SV/Whisper models."""
from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]

ZH = ["今天天气很好，我们去公园散步吧。", "这件衣服的颜色非常漂亮。", "请把窗户打开，让新鲜空气进来。",
      "他每天早上六点起床跑步。", "我们明天下午三点在图书馆见面。", "这个问题需要大家一起讨论。",
      "小猫在沙发上睡得很香。", "春天来了，花园里开满了鲜花。", "请问去火车站怎么走？", "她喜欢在周末做蛋糕。",
      "这本书的故事非常有意思。", "晚饭以后我们一起看电影吧。", "老师今天布置了很多作业。",
      "超市里的水果又新鲜又便宜。", "弟弟正在房间里弹钢琴。", "我们要保护环境，节约用水。"]
EN = ["The weather is lovely today.", "Please close the door when you leave.", "She reads a book every night.",
      "We will meet at the station at noon.", "The children are playing in the garden.",
      "He bought fresh bread this morning.", "Turn left at the second corner.", "Music makes the long drive shorter."]


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng; scripts/test.sh installs it)")
    return exe


def make_dataset(root: Path) -> Path:
    """24 espeak-ng clips (16 Mandarin, 8 English) + 2 clips each cleaning rule drops, in a GPT-SoVITS .list."""
    exe = _espeak()
    wavs = root / "wavs"
    wavs.mkdir(parents=True)
    lines = []
    for i, text in enumerate(ZH + EN):
        lang, voice = ("zh", "cmn") if i < len(ZH) else ("en", "en-us")
        path = wavs / f"utt{i:02d}.wav"
        subprocess.run([exe, "-v", voice, "-s", "150", "-w", str(path), text], check=True, capture_output=True,
                       timeout=60)
        lines.append(f"{path}|spk|{lang}|{text}")
    sr = 22050
    t = np.arange(int(0.5 * sr)) / sr
    sf.write(wavs / "short.wav", (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), sr)
    lines.append(f"{wavs / 'short.wav'}|spk|zh|太短了。")
    lines.append(f"{wavs / 'missing.wav'}|spk|zh|这个文件不存在。")
    lst = root / "voice.list"
    lst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lst


@pytest.fixture(scope="module")
def env(tmp_path_factory, parity_dir, tiny_assets):
    from config import load_settings

    root = tmp_path_factory.mktemp("ft_e2e")
    pre = root / "pretrained"
    pre.mkdir()
    s2g = pre / "s2Gv2Pro.pth"
    import lzma

    s2g.write_bytes(lzma.decompress((parity_dir / "s2_v2Pro.pth.xz").read_bytes()))
    s1 = pre / "s1.ckpt"
    shutil.copy(parity_dir / "s1_v2.ckpt", s1)
    base = load_settings(environ={"GSV_HOME": str(root)}, my_config=root / "no_my_config.py")
    settings = dataclasses.replace(
        base, bert_dir=Path(tiny_assets["bert"]), hubert_dir=Path(tiny_assets["hubert"]),
        sv_path=Path(tiny_assets["sv"]), gpt_weight_dirs=(root / "weights" / "gpt",),
        sovits_weight_dirs=(root / "weights" / "sovits",), experiments_dir=root / "experiments",
        whisper_dir=root / "whisper", device="cpu", precision="fp32")
    from helpers.tiny_whisper import build_tiny_whisper

    build_tiny_whisper(root / "whisper" / "tiny-random")
    return dict(root=root, settings=settings, list=make_dataset(root), s1=s1, s2g=s2g)


def _config(env, name: str, **over):
    from gsv_core.finetune.pipeline import FinetuneConfig

    cfg = FinetuneConfig(name=name, version="v2Pro", source=str(env["list"]), pretrained_s1=str(env["s1"]),
                         pretrained_s2g=str(env["s2g"]), device="cpu", precision="fp32",
                         split=dict(seed=3),
                         # a 4-frame decoder slice keeps the full-size discriminator affordable on 2 CPU cores;
                         # the set is not repeated to upstream's 100 items per epoch (4 steps instead of 26)
                         s2=dict(batch_size=8, epochs=2, save_every_epochs=1, segment_size=2560, min_items=1),
                         s1=dict(batch_size=8, epochs=2, save_every_epochs=1))
    for k, v in over.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture(scope="module")
def trained(env):
    from gsv_core.finetune.pipeline import Experiment

    exp = Experiment(env["settings"], _config(env, "e2e"))
    seen = []
    results = exp.run(progress=lambda f, m: seen.append((f, m)))
    return dict(exp=exp, results=results, progress=seen)


def test_cleaning_report_and_split(trained):
    exp = trained["exp"]
    lay = exp.layout
    assert lay.cleaning_report_json.is_file() and lay.cleaning_report_csv.is_file()
    with open(lay.cleaning_report_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    text = lay.cleaning_report_csv.read_text(encoding="utf-8")
    assert "short.wav" in text  # the too-short clip is in the report, not silently dropped
    assert len(rows) >= 25
    names = {}
    for split in ("train", "val", "test"):
        names[split] = {line.split("|")[0] for line in lay.split_list(split).read_text(encoding="utf-8").splitlines()
                        if line.strip()}
    assert names["train"] and names["test"]
    assert not (names["train"] & names["test"]) and not (names["train"] & names["val"])
    assert not any(n.endswith("short.wav") for s in names.values() for n in s)


def test_features_in_upstream_layout(trained):
    lay = trained["exp"].layout
    train = [Path(line.split("|")[0]).name for line in lay.split_list("train").read_text(encoding="utf-8").splitlines()
             if line.strip()]
    assert lay.name2text.is_file() and lay.name2semantic.is_file()
    assert lay.name2semantic.read_text(encoding="utf-8").splitlines()[0] == "item_name\tsemantic_audio"
    for name in train:
        assert (lay.hubert_dir / f"{name}.pt").is_file()
        assert (lay.wav32k_dir / name).is_file()
        assert (lay.sv_dir / f"{name}.pt").is_file()  # v2Pro needs speaker vectors


def test_training_logged_and_exported_and_usable(trained, env, tiny_assets):
    import torch

    from gsv_core.api import Engine, SynthesisRequest
    from gsv_core.loading import load_gpt, load_sovits

    exp = trained["exp"]
    ex = exp.exports()
    assert len(ex["sovits"]) == 2 and len(ex["gpt"]) == 2  # one export per epoch
    for folder in (exp.layout.s2_dir, exp.layout.s1_dir):
        rows = list(csv.DictReader(open(folder / "losses.csv", encoding="utf-8")))
        assert rows and all(np.isfinite(float(r[k])) for r in rows for k in r if k not in ("step", "epoch"))
        steps = [int(r["step"]) for r in rows]
        assert steps == sorted(set(steps))
    fr = [f for f, _ in trained["progress"]]
    assert fr == sorted(fr) or max(fr) > 0.9
    sovits, gpt = ex["sovits"][-1], ex["gpt"][-1]
    # the finetuned weights differ from the pretrained ones
    m_new, _ = load_sovits(sovits)
    m_old, _ = load_sovits(env["s2g"])
    diff = sum(float((a.float() - b.float()).abs().sum()) for a, b in
               zip(m_new.state_dict().values(), m_old.state_dict().values()))
    assert diff > 0
    load_gpt(gpt)
    engine = Engine.open(env["settings"], device="cpu", precision="fp32", bert_dir=tiny_assets["bert"],
                         hubert_dir=tiny_assets["hubert"], sv_path=tiny_assets["sv"], log_path=None)
    ref = exp.layout.split_list("train").read_text(encoding="utf-8").splitlines()[0].split("|")
    res = engine.synthesize(SynthesisRequest(text="今天天气很好。", ref_audio=ref[0], ref_text=ref[3], ref_lang="zh",
                                             gpt_path=gpt, sovits_path=sovits, seed=1, max_tokens=40))
    assert res.audio.size > 0 and np.isfinite(res.audio).all()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def test_checkpoint_selection_ranks_every_epoch(trained, env, tiny_assets):
    from gsv_core.asr import ASRService
    from eval.selection import select_for_experiment
    from gsv_core.api import Engine

    engine = Engine.open(env["settings"], device="cpu", precision="fp32", bert_dir=tiny_assets["bert"],
                         hubert_dir=tiny_assets["hubert"], sv_path=tiny_assets["sv"], log_path=None)
    # random tiny weights rarely emit EOS: without a count every sentence runs to the GPT's token cap (minutes of
    # audio per sentence); the ranking logic does not depend on the length
    engine.fix_token_counts(lambda _text: 25)
    asr = ASRService(env["settings"].whisper_dir)
    res = select_for_experiment(env["settings"], "e2e", max_sentences=3, engine=engine, asr=asr)
    finetuned = [r for r in res.ranking if not r["baseline"]]
    assert len(finetuned) == 4  # 2 GPT epochs x 2 SoVITS epochs
    assert sum(1 for r in res.ranking if r.get("best")) == 1 and res.ranking[0]["best"]
    assert any(r["baseline"] for r in res.ranking)
    assert (res.run_dir / "ranking.csv").is_file() and res.report_html.is_file()
    assert "weak" in res.warning  # 3 sentences are too few for a verdict


def test_killed_training_resumes_from_saved_step(env, trained):
    """SIGKILL a SoVITS training process after its first mid-epoch state save; the next run continues from that
    step (the loss log holds each step once)."""
    from gsv_core.finetune.common import load_state
    from gsv_core.finetune.pipeline import Experiment

    cfg = _config(env, "killed", s2=dict(batch_size=8, epochs=1, save_every_epochs=1, save_every_steps=2,
                                         max_steps=7, segment_size=2560))
    exp = Experiment(env["settings"], cfg)
    exp.save()
    # the features of the first experiment are reused (same data, same models): copy them instead of recomputing
    src = Experiment.open(env["settings"], "e2e").layout.root
    for sub in ("data", "3-bert", "4-cnhubert", "5-wav32k", "7-sv_cn", ".features"):
        if (src / sub).exists():
            shutil.copytree(src / sub, exp.layout.root / sub)
    for name in ("2-name2text.txt", "6-name2semantic.tsv", "features.json"):
        shutil.copy(src / name, exp.layout.root / name)
    env_vars = dict(os.environ, GSV_HOME=str(env["root"]), PYTHONPATH=str(REPO))
    script = (
        "import dataclasses, sys, pickle\n"
        "from gsv_core.finetune.pipeline import Experiment\n"
        f"settings = pickle.loads({__import__('pickle').dumps(env['settings'])!r})\n"
        "Experiment.open(settings, 'killed').run(['s2'])\n")
    state = exp.layout.s2_dir / "state_latest.pt"
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env_vars, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert state.exists(), proc.stdout.read().decode(errors="replace")[-3000:] if proc.poll() is not None else ""
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = load_state(state)
    saved_step = int(saved["global_step"])
    assert saved_step >= 2
    lines: list[str] = []
    result = Experiment.open(env["settings"], "killed").run(["s2"], log=lines.append)["s2"]
    rows = list(csv.DictReader(open(exp.layout.s2_dir / "losses.csv", encoding="utf-8")))
    steps = [int(r["step"]) for r in rows]
    assert steps == list(range(1, steps[-1] + 1)), "a step was lost or logged twice across the kill and resume"
    # continued from the saved step, not from the pretrained weights
    assert any("resumed" in line and f"step {saved_step}" in line for line in lines), lines
    assert result.step == steps[-1] > saved_step and not result.cancelled
    assert result.exports and Path(result.exports[-1]).is_file()
