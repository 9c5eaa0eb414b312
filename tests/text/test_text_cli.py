"""``python -m gsv_core.text``: readable report, --json, stdin batch mode (one JSON object per line) and errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BASE = ["--g2pw", "off", "--no-user-dict"]


def run_cli(*args, stdin: str | None = None):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "gsv_core.text", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )


def test_json_output_matches_the_api():
    from gsv_core.text import text_to_phones

    text = "我爱Python编程，今天是3月15日。"
    proc = run_cli(text, "--lang", "zh", "--version", "v2", "--json", *BASE)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert {"text", "norm_text", "phones", "word2ph", "phone_ids"} <= set(obj)
    expected = text_to_phones(text, "zh", "v2", user_dict=None, use_g2pw=False)
    assert obj["text"] == text
    assert obj["phones"] == expected.phones
    assert obj["phone_ids"] == expected.phone_ids
    assert obj["norm_text"] == expected.norm_text
    assert [s["lang"] for s in obj["segments"]] == ["zh", "en", "zh"]


def test_readable_report():
    proc = run_cli("今天天气不错。", "--version", "v1", *BASE)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "norm_text 今天天气不错." in out
    assert "phones    j in1 t ian1" in out
    assert "word2ph   2 2 2 2 2 2 1" in out


def test_error_is_one_line_on_stderr_and_exit_code_1():
    proc = run_cli("重[chonq2]新", *BASE)
    assert proc.returncode == 1
    assert proc.stdout == ""
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "[chonq2]" in err[0]


def test_stdin_mode_one_object_per_line_and_continues_after_errors():
    proc = run_cli("--lang", "zh", *BASE, stdin="今天天气不错。\n[pause=abc]\n\nHello world\n")
    assert proc.returncode == 1
    objs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [o["text"] for o in objs] == ["今天天气不错。", "[pause=abc]", "", "Hello world"]
    assert "error" not in objs[0] and objs[0]["phones"][:2] == ["j", "in1"]
    assert "pause tag" in objs[1]["error"] and "empty" in objs[2]["error"]
    assert objs[3]["phones"][:4] == ["HH", "AH0", "L", "OW1"]
    assert proc.stderr.count("error:") == 2


@pytest.mark.parametrize("method", ["cut0", "cut5"])
def test_split_option(method):
    proc = run_cli("第一句话很长很长。第二句话也很长很长！", "--split", method, "--json", *BASE)
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    pieces = obj.get("pieces", [obj])
    assert len(pieces) == (1 if method == "cut0" else 2)
    assert obj["norm_text"] == "第一句话很长很长.第二句话也很长很长!"
