"""python -m gsv_core.tts: one utterance, a CSV batch with resume, malformed CSVs, errors as one line."""
from __future__ import annotations

import csv

import pytest
import soundfile as sf

import config
from config import load_settings
from gsv_core import tts


@pytest.fixture()
def cli(tmp_path, parity_dir, tiny_assets, monkeypatch):
    # the fixture folder is a weight folder here: the CLI applies the app's model-folder rule
    monkeypatch.setattr(config, "settings", load_settings(
        environ={"GSV_HOME": str(tmp_path), "GSV_GPT_WEIGHT_DIRS": str(parity_dir),
                 "GSV_SOVITS_WEIGHT_DIRS": str(parity_dir)}, my_config=tmp_path / "none.py"))
    common = ["--gpt", str(parity_dir / "s1_v2.ckpt"), "--sovits", str(parity_dir / "s2_v2.pth.xz"),
              "--ref", str(tiny_assets["ref"]), "--ref-text", "你早上好，这是参考声音。",
              "--bert", str(tiny_assets["bert"]), "--hubert", str(tiny_assets["hubert"]), "--sv", str(tiny_assets["sv"]),
              "--device", "cpu", "--precision", "fp32", "--seed", "3"]
    monkeypatch.setattr(tts, "base_request", _capped(tts.base_request))
    return common


def _capped(original):
    # random fixture weights rarely emit EOS: cap the tokens so a test sentence stays short
    return lambda args: original(args).replace(max_tokens=15)


def test_single_utterance(cli, tmp_path, capsys):
    out = tmp_path / "one.wav"
    assert tts.main([*cli, "--text", "今天天气很好。", "-o", str(out)]) == 0
    data, sr = sf.read(out)
    assert sr == 32000 and len(data) > 0
    printed = capsys.readouterr().out
    assert "seed 3" in printed and "RTF" in printed and (tmp_path / "logs" / "tts_log.csv").exists()


def test_batch_csv_and_resume(cli, tmp_path, capsys):
    lines = tmp_path / "lines.csv"
    lines.write_text("id,text,speed,noise_scale,split_method\na1,今天天气很好。,,0.2,cut0\na2,我们去公园散步吧！,1.2,,"
                     "\nbad,。。。,,,\nnone,,,,\n", encoding="utf-8")
    out = tmp_path / "batch"
    assert tts.main([*cli, "--csv", str(lines), "--out-dir", str(out)]) == 1  # rows that cannot be read aloud
    rows = {r["id"]: r for r in csv.DictReader(open(out / "results.csv", encoding="utf-8"))}
    assert rows["a1"]["status"] == "ok" and rows["a2"]["status"] == "ok" and rows["bad"]["status"] == "error"
    assert rows["bad"]["error"] and (out / "a1.wav").exists() and (out / "a2.wav").exists()
    # issue 12 item 9: an empty text is one failed row (with its line), not a refusal of the whole CSV
    assert rows["none"]["status"] == "error" and "line 5: the text is empty" in rows["none"]["error"]
    stamp = (out / "a1.wav").stat().st_mtime_ns
    assert "bad" in capsys.readouterr().err
    assert tts.main([*cli, "--csv", str(lines), "--out-dir", str(out)]) == 1
    assert (out / "a1.wav").stat().st_mtime_ns == stamp, "finished rows are not synthesised again"
    capsys.readouterr()
    bad = tmp_path / "badcol.csv"
    bad.write_text("id,text,nosie_scale\nx,你好。,0.2\n", encoding="utf-8")
    assert tts.main([*cli, "--csv", str(bad), "--out-dir", str(tmp_path / "o2")]) == 1
    assert "unknown column(s) nosie_scale" in capsys.readouterr().err



@pytest.mark.parametrize(
    "content,match",
    [("text\n你好。\n", "id and text"), ("id,text\nx,你好。\nx,再见。\n", "duplicate id"),
     ("id,text\n../up,你好。\n", "file name"), ("id,text\n", "no rows")],
)
def test_malformed_csv_lists_bad_rows(cli, tmp_path, capsys, content, match):
    lines = tmp_path / "bad.csv"
    lines.write_text(content, encoding="utf-8")
    assert tts.main([*cli, "--csv", str(lines), "--out-dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_errors_are_one_line(cli, tmp_path, capsys):
    args = [a if a != str(cli[1]) else str(tmp_path / "missing.ckpt") for a in cli]
    assert tts.main([*args, "--text", "你好。", "-o", str(tmp_path / "x.wav")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "missing.ckpt" in err[0]


def test_every_parameter_has_a_flag_and_bad_values_are_named(cli, tmp_path, capsys):
    from gsv_core.engine.request import PARAMETERS

    helptext = tts.build_parser().format_help()
    for flag in ("--noise-scale", "--max-tokens", "--batch-size", "--parallel", "--split", "--aux-ref"):
        assert flag in helptext
    assert {n for n in PARAMETERS if n not in ("text", "id")} <= set(vars(tts.build_parser().parse_args(
        ["--text", "x"])))
    assert tts.main([*cli, "--text", "你好。", "--top-k", "nan", "-o", str(tmp_path / "x.wav")]) == 1
    err = capsys.readouterr().err
    assert "top_k: expected a finite number" in err and "Traceback" not in err


def test_model_outside_the_model_folders_is_refused(cli, tmp_path, parity_dir, capsys):
    import shutil

    elsewhere = tmp_path / "elsewhere" / "voice.ckpt"
    elsewhere.parent.mkdir()
    shutil.copy(parity_dir / "s1_v2.ckpt", elsewhere)
    args = [str(elsewhere) if a == cli[1] else a for a in cli]
    assert tts.main([*args, "--text", "你好。", "-o", str(tmp_path / "x.wav")]) == 1
    assert "is not one of the listed models" in capsys.readouterr().err
