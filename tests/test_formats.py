"""One home per file format and file-safety concern (issue 13): the ``.list`` reader/writer, the CSV reader, safe
zip extraction and atomic writes."""
from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gsv_core.fileio import atomic_path, write_text_atomic
from gsv_core.formats import csvtable, listfile, safezip


# -- .list -----------------------------------------------------------------------------------------------------------
def test_list_bar_in_text_missing_fields_and_codes(tmp_path):
    p = tmp_path / "a.list"
    p.write_text("a.wav|spk|ZH|左|右都有\n\nb.wav|spk|EN\nc.wav|spk|JP|こんにちは\nd.wav|spk|Yue|你好\n"
                 "e.wav|spk|XX|text\n|spk|ZH|no path\nf.wav|spk|all_zh|全中文\n", encoding="utf-8")
    parsed = listfile.read_list(p, strict=False)
    rows = {r.line: r for r in parsed.rows}
    assert rows[1].text == "左|右都有" and rows[1].lang == "zh"  # '|' inside the text is kept, whole
    assert rows[4].lang == "ja" and rows[5].lang == "yue" and rows[8].lang == "all_zh"
    problems = {p.line: p.reason for p in parsed.problems}
    assert "expected 4 fields" in problems[3] and "found 3" in problems[3]
    assert "unknown language code 'XX'" in problems[6] and rows[6].lang is None
    assert "audio path is empty" in problems[7]
    with pytest.raises(listfile.ListFormatError) as err:
        listfile.read_list(p)
    assert "3 bad line(s)" in str(err.value) and "line 3:" in str(err.value)


def test_list_bom_and_gbk(tmp_path):
    bom = tmp_path / "bom.list"
    bom.write_bytes(b"\xef\xbb\xbf" + "a.wav|s|ZH|你好。\n".encode("utf-8"))
    assert listfile.read_list(bom).rows[0].audio == "a.wav"
    gbk = tmp_path / "gbk.list"
    gbk.write_bytes("a.wav|说话人|ZH|今天天气很好。\n".encode("gbk"))
    parsed = listfile.read_list(gbk)
    assert parsed.encoding == "gb18030" and parsed.rows[0].text == "今天天气很好。" and parsed.rows[0].speaker == "说话人"
    bad = tmp_path / "bad.list"
    bad.write_bytes(b"a.wav|s|ZH|ok\n" + b"b.wav|s|ZH|\xff\xfe\xfa\n")
    with pytest.raises(listfile.ListFormatError, match="line 2"):
        listfile.read_list(bad)


def test_list_writer_never_breaks_the_format(tmp_path):
    path = listfile.write_list(tmp_path / "out.list", [("x|y.wav", "spk|a", "all_zh", "一|二\n三"),
                                                       ("z.wav", "", "ja", "テスト")])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == ["x_y.wav|spk_a|ZH|一 二 三", "z.wav|speaker|JA|テスト"]
    assert all(line.count("|") == 3 for line in lines)  # upstream's split("|") reads them
    assert [r.text for r in listfile.read_list(path).rows] == ["一 二 三", "テスト"]


# -- CSV -------------------------------------------------------------------------------------------------------------
def test_csv_unterminated_quote_is_an_error_not_merged_rows(tmp_path):
    p = tmp_path / "lines.csv"
    p.write_text('id,text\na,"first line\nb,second\nc,third\n', encoding="utf-8")
    with pytest.raises(csvtable.CSVError, match="line 2"):
        csvtable.read_csv_rows(p)
    ok = tmp_path / "ok.csv"
    ok.write_text('id,text\na,"a quoted,\nmulti-line text"\nb,x\n', encoding="utf-8")
    header, rows = csvtable.read_csv_rows(ok)
    assert header == ["id", "text"] and [r[0] for r in rows] == [2, 4] and rows[0][1]["text"].startswith("a quoted,")
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("id,text\nx,你好\n".encode("gbk"))
    assert csvtable.read_csv_rows(gbk)[1][0][1]["text"] == "你好"
    wide = tmp_path / "wide.csv"
    wide.write_text("id,text\nx,a,b\n", encoding="utf-8")
    with pytest.raises(csvtable.CSVError, match="line 2 has 3 cells"):
        csvtable.read_csv_rows(wide)


# -- zip -------------------------------------------------------------------------------------------------------------
def _zip(path: Path, entries: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize("name, why", [("../../escape.txt", "'..' part"), ("/abs/evil.txt", "absolute path"),
                                       ("C:\\win.txt", "Windows path"), ("a/../../b.txt", "'..' part")])
def test_zip_slip_and_absolute_names_refuse_the_whole_file(tmp_path, name, why):
    z = _zip(tmp_path / "evil.zip", {"ok.txt": b"fine", name: b"bad"})
    with pytest.raises(safezip.ZipError) as err:
        safezip.extract(z, tmp_path / "out")
    assert "unsafe entry" in str(err.value) and why in str(err.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    assert not (tmp_path.parent / "escape.txt").exists()


def test_zip_symlink_refused(tmp_path):
    z = _zip(tmp_path / "link.zip", {"ok.txt": b"fine"}, symlink="link")
    with pytest.raises(safezip.ZipError, match="symbolic link"):
        safezip.extract(z, tmp_path / "out")


def test_zip_bomb_declared_and_lying_headers(tmp_path):
    # a member that declares 1 GiB: refused from the headers alone, nothing is inflated
    big = tmp_path / "declared.zip"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("zeros.bin", "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            for _ in range(1024):
                f.write(chunk)
    assert big.stat().st_size < 5 << 20
    with pytest.raises(safezip.ZipError, match="unpacks to 1024 MiB"):
        safezip.extract(big, tmp_path / "out", max_bytes=64 << 20)
    # a member whose header understates its size: stopped while inflating, nothing left behind
    liar = tmp_path / "liar.zip"
    _zip(liar, {"data.bin": bytes(8 << 20)})
    raw = bytearray(liar.read_bytes())
    with zipfile.ZipFile(liar) as z:
        info = z.getinfo("data.bin")
    real = (8 << 20).to_bytes(4, "little")
    fake = (1024).to_bytes(4, "little")
    assert raw.count(real) == 2  # local header and central directory
    liar.write_bytes(bytes(raw).replace(real, fake))
    with pytest.raises(safezip.ZipError):
        safezip.extract(liar, tmp_path / "out2", max_bytes=1 << 20)
    assert not (tmp_path / "out2").exists() and not list(tmp_path.glob(".out2*"))
    assert info.file_size == 8 << 20


def test_zip_extracts_good_archives_and_counts_members(tmp_path):
    z = _zip(tmp_path / "good.zip", {"a/b.txt": b"x", "c.txt": b"yy"})
    files = safezip.extract(z, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in files) == ["a/b.txt", "c.txt"]
    with pytest.raises(safezip.ZipError, match="more than the 1 allowed"):
        safezip.extract(z, tmp_path / "out3", max_members=1)
    (tmp_path / "not.zip").write_bytes(b"plain text")
    with pytest.raises(safezip.ZipError, match="not a readable zip"):
        safezip.extract(tmp_path / "not.zip", tmp_path / "out4")


# -- atomic writes ---------------------------------------------------------------------------------------------------
def test_atomic_path_serves_soundfile_and_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "x.wav"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".wav" and tmp.parent == tmp_path
        sf.write(tmp, np.zeros(160, dtype=np.float32), 16000)  # format from the suffix
    assert sf.info(target).frames == 160
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash while writing")
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["x.wav"]
    torch = pytest.importorskip("torch")
    with atomic_path(tmp_path / "s.pt") as tmp:
        torch.save({"a": 1}, tmp)
    assert torch.load(tmp_path / "s.pt") == {"a": 1}
    write_text_atomic(tmp_path / "t.txt", "héllo")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
