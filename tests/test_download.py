"""gsv_core.download: listing, placement of downloaded files, G2PW zip extraction, offline and network failures.

No test touches the network: downloads go through a stand-in for ``hf_hub_download`` that copies from a local
"hub" folder, and the real ``hf_hub_download`` is only run with HF_HUB_OFFLINE=1 under a socket guard.
"""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from config import load_settings
from gsv_core import download as D
from gsv_core.download import ITEMS, ITEMS_BY_KEY, describe_missing, main, missing_items

REPO_ROOT = Path(__file__).resolve().parents[1]

G2PW_FILES = ("g2pW.onnx", "config.py", "POLYPHONIC_CHARS.txt", "MONOPHONIC_CHARS.txt",
              "bopomofo_to_pinyin_wo_tune_dict.json", "char_bopomofo_dict.json")


def all_model_files() -> list[str]:
    names: list[str] = []
    for item in ITEMS:
        if item.archive is None:
            names += [D._first(f) for f in item.files + item.optional]
    return sorted(set(names))


def content_for(name: str) -> bytes:
    return f"fake weights of {name}\n".encode() * 50


def populate(base: Path, keys=None) -> None:
    """Create the expected files of the given items (all by default) under ``base``."""
    for item in ITEMS:
        if keys is not None and item.key not in keys:
            continue
        for entry in item.files + item.optional:
            p = base / D._first(entry)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content_for(p.name))


def make_g2pw_zip(path: Path, top: str = "G2PWModel_1.1", extra_members=()) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name in G2PW_FILES:
            zf.writestr(f"{top}/{name}", content_for(name))
        for member, data in extra_members:
            zf.writestr(member, data)


class FakeHub:
    """Stands in for huggingface_hub.hf_hub_download: copies hub/<repo_id>/<filename> to local_dir/<filename>
    (huggingface_hub's local_dir layout) and records every call."""

    def __init__(self, root: Path):
        self.root = root
        self.calls: list[dict] = []
        for name in all_model_files():
            p = root / D.MODELS_REPO / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content_for(Path(name).name))
        (root / D.G2PW_REPO).mkdir(parents=True, exist_ok=True)
        make_g2pw_zip(root / D.G2PW_REPO / "G2PWModel.zip")

    def __call__(self, repo_id, filename, *, local_dir=None, endpoint=None, **kwargs):
        self.calls.append({"repo_id": repo_id, "filename": filename, "local_dir": local_dir, "endpoint": endpoint})
        src = self.root / repo_id / filename
        if not src.is_file():
            import httpx2
            from huggingface_hub.errors import RemoteEntryNotFoundError

            url = f"https://huggingface.co/{repo_id}/resolve/main/{filename}"
            raise RemoteEntryNotFoundError(
                f"404 Client Error. Entry Not Found for url: {url}",
                response=httpx2.Response(404, request=httpx2.Request("HEAD", url)),
            )
        dst = Path(local_dir) / filename
        dst.parent.mkdir(parents=True, exist_ok=True)
        (Path(local_dir) / ".cache" / "huggingface").mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
        return str(dst)

    def fetched(self) -> list[str]:
        return [c["filename"] for c in self.calls]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    fake = FakeHub(tmp_path / "hub")
    monkeypatch.setattr(D, "hf_hub_download", fake)
    return fake


@pytest.fixture
def settings_in(tmp_path):
    """Settings of a project rooted in tmp_path (pretrained_models/ there), ignoring the developer's my_config."""
    return load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=tmp_path / "no_my_config.py")


def run_main(argv, settings=None):
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, settings=settings, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def item_line(text: str, key: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"{key} "))


# ---------------------------------------------------------------------------------------------------------------
# listing

def test_list_on_empty_folder(tmp_path):
    code, out, err = run_main(["--list", "--dest", str(tmp_path / "models")])
    assert code == 0 and err == ""
    assert str(tmp_path / "models") in out
    for key in ("bert", "hubert", "sv", "g2pw", "v1", "v2", "v2Pro", "v2ProPlus"):
        line = item_line(out, key)
        assert " missing " in line, line
    assert "needed for: speaker embedding of v2Pro / v2ProPlus" in out
    assert "models/chinese-roberta-wwm-ext-large" in item_line(out, "bert")
    assert "To fetch what is missing: python -m gsv_core.download bert hubert sv g2pw v1 v2 v2Pro v2ProPlus" in out
    assert not (tmp_path / "models").exists()  # listing creates nothing


def test_list_when_everything_is_there(tmp_path):
    base = tmp_path / "models"
    populate(base)
    for name in G2PW_FILES:
        (base / "G2PWModel").mkdir(exist_ok=True)
        (base / "G2PWModel" / name).write_bytes(content_for(name))
    code, out, _ = run_main(["--list", "--dest", str(base)])
    assert code == 0
    for item in ITEMS:
        line = item_line(out, item.key)
        assert " present " in line, line
        size = sum(len(content_for(Path(D._first(f)).name)) for f in item.files + item.optional)
        assert D._human(size) in line
    assert "Everything is present." in out
    assert "for finetuning also" not in out


def test_list_partial_and_training_only_missing(tmp_path):
    base = tmp_path / "models"
    (base / "chinese-roberta-wwm-ext-large").mkdir(parents=True)
    (base / "chinese-roberta-wwm-ext-large" / "config.json").write_text("{}")
    (base / "chinese-hubert-base").mkdir()
    (base / "chinese-hubert-base" / "pytorch_model.bin").write_bytes(b"")  # empty files do not count
    for name in ("s1v3.ckpt", "v2Pro/s2Gv2ProPlus.pth"):
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_bytes(b"x" * 10)
    code, out, _ = run_main(["--list", "--dest", str(base)])
    assert code == 0
    assert " partial " in item_line(out, "bert")
    assert "missing: chinese-roberta-wwm-ext-large/tokenizer.json, chinese-roberta-wwm-ext-large/pytorch_model.bin" in out
    assert " missing " in item_line(out, "hubert")
    assert " present " in item_line(out, "v2ProPlus")
    assert "for finetuning also: v2Pro/s2Dv2ProPlus.pth" in out
    assert " partial " in item_line(out, "v2Pro")  # shares s1v3.ckpt, lacks its own s2G


def test_no_arguments_lists(tmp_path, settings_in):
    code, out, _ = run_main([], settings=settings_in)
    assert code == 0 and str(tmp_path / "pretrained_models") in out and " missing " in item_line(out, "sv")


def test_cli_module_lists_with_settings_from_environment(tmp_path):
    populate(tmp_path / "pretrained_models", keys={"sv"})
    env = dict(os.environ, GSV_HOME=str(tmp_path), GSV_MY_CONFIG=str(tmp_path / "none.py"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "gsv_core.download", "--list"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert " present " in item_line(proc.stdout, "sv") and " missing " in item_line(proc.stdout, "bert")
    assert "pretrained_models/sv/pretrained_eres2netv2w24s4ep4.ckpt" in item_line(proc.stdout, "sv")


# ---------------------------------------------------------------------------------------------------------------
# missing_items / describe_missing

def test_missing_items_and_describe(tmp_path, settings_in):
    assert [i.key for i in missing_items(settings_in)] == [i.key for i in ITEMS]
    bert = ITEMS_BY_KEY["bert"]
    assert describe_missing(bert) == (
        "BERT folder pretrained_models/chinese-roberta-wwm-ext-large is missing: run python -m gsv_core.download bert"
    )
    assert describe_missing(bert, settings_in) == describe_missing(bert)
    assert describe_missing(ITEMS_BY_KEY["sv"]) == (
        "SV model pretrained_models/sv/pretrained_eres2netv2w24s4ep4.ckpt is missing: run python -m gsv_core.download sv"
    )
    assert describe_missing(ITEMS_BY_KEY["v2"]) == (
        "v2 pretrained weights pretrained_models/gsv-v2final-pretrained/s1bert25hz-5kh-longer-epoch=12-step=369668.ckpt, "
        "pretrained_models/gsv-v2final-pretrained/s2G2333k.pth is missing: run python -m gsv_core.download v2"
    )
    populate(tmp_path / "pretrained_models", keys={"bert", "v2ProPlus"})
    keys = [i.key for i in missing_items(settings_in)]
    assert "bert" not in keys and "v2ProPlus" not in keys and "hubert" in keys and "v2Pro" in keys
    assert missing_items(settings_in, keys=["bert", "v2proplus"]) == []
    assert [i.key for i in missing_items(settings_in, keys=["HuBERT"])] == ["hubert"]
    # a half-filled folder is called incomplete, naming what is absent
    (tmp_path / "pretrained_models" / "chinese-hubert-base").mkdir()
    (tmp_path / "pretrained_models" / "chinese-hubert-base" / "config.json").write_text("{}")
    msg = describe_missing(ITEMS_BY_KEY["hubert"], settings_in)
    assert msg == ("HuBERT folder pretrained_models/chinese-hubert-base is incomplete (missing "
                   "preprocessor_config.json, pytorch_model.bin): run python -m gsv_core.download hubert")
    (tmp_path / "pretrained_models" / "s1v3.ckpt").unlink()
    assert describe_missing(ITEMS_BY_KEY["v2ProPlus"], settings_in) == (
        "v2ProPlus pretrained weights pretrained_models/s1v3.ckpt, pretrained_models/v2Pro/s2Gv2ProPlus.pth is "
        "incomplete (missing s1v3.ckpt): run python -m gsv_core.download v2ProPlus")


def test_describe_uses_configured_locations(tmp_path, settings_in):
    elsewhere = tmp_path / "elsewhere" / "my-bert"
    s = replace(settings_in, bert_dir=elsewhere)
    assert describe_missing(ITEMS_BY_KEY["bert"], s) == (
        f"BERT folder {elsewhere} is missing: run python -m gsv_core.download bert"
    )
    populate(tmp_path / "pretrained_models", keys={"bert"})  # in the default place, not where settings point
    assert ITEMS_BY_KEY["bert"] in missing_items(s)


# ---------------------------------------------------------------------------------------------------------------
# downloading (hf_hub_download replaced by the local FakeHub)

def test_download_places_files_and_skips_present(tmp_path, hub):
    dest = tmp_path / "models"
    code, out, err = run_main(["bert", "hubert", "sv", "v2ProPlus", "--dest", str(dest)])
    assert code == 0, err
    assert "All requested items are present." in out
    expected = [D._first(f) for k in ("bert", "hubert", "sv", "v2ProPlus")
                for f in ITEMS_BY_KEY[k].files + ITEMS_BY_KEY[k].optional]
    for name in expected:
        assert (dest / name).read_bytes() == content_for(Path(name).name), name
    assert sorted(hub.fetched()) == sorted(expected)
    assert {c["repo_id"] for c in hub.calls} == {"lj1995/GPT-SoVITS"}
    assert {c["local_dir"] for c in hub.calls} == {str(dest)}  # straight into place: resumable in place
    assert not [p for p in dest.iterdir() if p.name.startswith(".gsv-download")]
    # second run: nothing fetched
    hub.calls.clear()
    code, out, _ = run_main(["bert", "hubert", "sv", "v2ProPlus", "--dest", str(dest)])
    assert code == 0 and hub.calls == []
    assert "bert: already present" in out and "v2ProPlus: already present" in out
    code, out, _ = run_main(["--list", "--dest", str(dest)])
    for key in ("bert", "hubert", "sv", "v2ProPlus"):
        assert " present " in item_line(out, key)
    assert " partial " in item_line(out, "v2Pro")  # s1v3.ckpt is shared


def test_partial_item_fetches_only_what_is_missing(tmp_path, hub):
    dest = tmp_path / "models"
    (dest / "chinese-hubert-base").mkdir(parents=True)
    (dest / "chinese-hubert-base" / "config.json").write_text("mine")
    code, _, _ = run_main(["hubert", "--dest", str(dest)])
    assert code == 0
    assert hub.fetched() == ["chinese-hubert-base/preprocessor_config.json", "chinese-hubert-base/pytorch_model.bin"]
    assert (dest / "chinese-hubert-base" / "config.json").read_text() == "mine"


@pytest.mark.parametrize("top", ["G2PWModel_1.1", "G2PWModel", "nested/deeper/G2PWModel"])
def test_g2pw_zip_is_extracted(tmp_path, hub, top):
    make_g2pw_zip(hub.root / D.G2PW_REPO / "G2PWModel.zip", top=top)
    dest = tmp_path / "models"
    code, out, err = run_main(["g2pw", "--dest", str(dest)])
    assert code == 0, err
    assert hub.calls[0]["repo_id"] == "XXXXRT/GPT-SoVITS-Pretrained" and hub.fetched() == ["G2PWModel.zip"]
    for name in G2PW_FILES:
        assert (dest / "G2PWModel" / name).read_bytes() == content_for(name)
    assert sorted(p.name for p in dest.iterdir()) == ["G2PWModel"]  # zip and staging removed
    assert ITEMS_BY_KEY["g2pw"] not in missing_items(None, dest=dest)


def test_g2pw_zip_with_lowercase_onnx_and_traversal(tmp_path, hub):
    zpath = hub.root / D.G2PW_REPO / "G2PWModel.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for name in G2PW_FILES:
            zf.writestr(f"G2PWModel/{'g2pw.onnx' if name == 'g2pW.onnx' else name}", content_for(name))
    dest = tmp_path / "models"
    assert run_main(["g2pw", "--dest", str(dest)])[0] == 0
    assert (dest / "G2PWModel" / "g2pw.onnx").is_file()
    # a zip whose members escape their folder is refused and nothing lands outside
    dest2 = tmp_path / "models2"
    make_g2pw_zip(zpath, extra_members=[("../../escaped.txt", b"evil")])
    code, _, err = run_main(["g2pw", "--dest", str(dest2)])
    assert code == 1 and "unsafe entry" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not [p for p in dest2.rglob("*") if p.is_file()]
    # not a zip at all
    zpath.write_bytes(b"not a zip")
    code, _, err = run_main(["g2pw", "--dest", str(tmp_path / "models3")])
    assert code == 1 and "not a readable zip" in err and "archive was removed" in err
    assert not [p for p in (tmp_path / "models3").rglob("*") if p.is_file()]  # the bad zip is not kept


def test_version_flag_and_inference_only(tmp_path, hub):
    dest = tmp_path / "models"
    code, _, err = run_main(["--version", "v2pro", "--inference-only", "--dest", str(dest)])
    assert code == 0, err
    fetched = hub.fetched()
    assert "G2PWModel.zip" in fetched and "sv/pretrained_eres2netv2w24s4ep4.ckpt" in fetched
    assert "v2Pro/s2Gv2Pro.pth" in fetched and "s1v3.ckpt" in fetched
    assert "v2Pro/s2Dv2Pro.pth" not in fetched  # discriminator skipped
    assert "chinese-roberta-wwm-ext-large/pytorch_model.bin" in fetched and "chinese-hubert-base/config.json" in fetched
    assert not any("ProPlus" in f or "s2G488k" in f for f in fetched)
    assert missing_items(None, keys=D.VERSION_NEEDS["v2Pro"], dest=dest) == []
    hub.calls.clear()
    assert run_main(["v2Pro", "--dest", str(dest)])[0] == 0
    assert hub.fetched() == ["v2Pro/s2Dv2Pro.pth"]  # now the training file too


def test_v3_v4_versions_fetch_their_vocoders(tmp_path, hub, settings_in):
    """--version v3 / v4: s1v3.ckpt, the s2G and the vocoder in upstream's layout (no discriminator); the vocoders
    are not listed as SoVITS voices, the base models are."""
    from gsv_core import weights

    code, out, err = run_main(["--version", "v3", "--version", "v4"], settings=settings_in)
    assert code == 0, err
    fetched = hub.fetched()
    for name in ("s1v3.ckpt", "s2Gv3.pth", "models--nvidia--bigvgan_v2_24khz_100band_256x/config.json",
                 "models--nvidia--bigvgan_v2_24khz_100band_256x/bigvgan_generator.pt", "gsv-v4-pretrained/s2Gv4.pth",
                 "gsv-v4-pretrained/vocoder.pth", "G2PWModel.zip"):
        assert name in fetched, name
    assert fetched.count("s1v3.ckpt") == 1 and not any("s2D" in f or "sv/" in f for f in fetched)
    pre = Path(settings_in.pretrained_dir)
    assert (pre / "models--nvidia--bigvgan_v2_24khz_100band_256x" / "bigvgan_generator.pt").is_file()
    assert D.VERSION_NEEDS["v3"] == ("bert", "hubert", "g2pw", "v3") and {"v3", "v4"} <= set(D.VERSIONS)
    labels = [w.label for w in weights.pretrained_files(settings_in)]
    assert "pretrained v3 · s2Gv3.pth" in labels and "pretrained v4 · s2Gv4.pth" in labels
    assert "pretrained v2Pro/v2ProPlus/v3/v4 · s1v3.ckpt" in labels  # the GPT every one of them uses
    assert len(labels) == 3 and not any("vocoder" in x or "bigvgan" in x for x in labels)
    code, out, _ = run_main(["--list"], settings=settings_in)
    assert " present " in item_line(out, "v3") and " present " in item_line(out, "v4")


def test_all_fetches_every_item(tmp_path, hub):
    dest = tmp_path / "models"
    code, _, err = run_main(["all", "--dest", str(dest)])
    assert code == 0, err
    assert missing_items(None, dest=dest) == []
    assert len(hub.fetched()) == len(all_model_files()) + 1  # + the G2PW zip, s1v3.ckpt once


def test_download_to_configured_locations(tmp_path, hub, settings_in):
    s = replace(settings_in, bert_dir=tmp_path / "else" / "bert-large", sv_path=tmp_path / "else" / "sv.ckpt",
                g2pw_dir=tmp_path / "else" / "g2pw")
    code, _, err = run_main(["bert", "sv", "g2pw", "v2"], settings=s)
    assert code == 0, err
    assert (tmp_path / "else" / "bert-large" / "tokenizer.json").read_bytes() == content_for("tokenizer.json")
    assert (tmp_path / "else" / "sv.ckpt").read_bytes() == content_for("pretrained_eres2netv2w24s4ep4.ckpt")
    assert (tmp_path / "else" / "g2pw" / "char_bopomofo_dict.json").is_file()
    assert (tmp_path / "pretrained_models" / "gsv-v2final-pretrained" / "s2G2333k.pth").is_file()
    assert sorted(p.name for p in (tmp_path / "else").iterdir()) == ["bert-large", "g2pw", "sv.ckpt"]  # no staging
    assert missing_items(s, keys=["bert", "sv", "g2pw", "v2"]) == []


def test_endpoint_is_passed(tmp_path, hub, monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    code, _, _ = run_main(["sv", "--dest", str(tmp_path / "m"), "--endpoint", "https://mirror.example/"])
    assert code == 0
    assert hub.calls[0]["endpoint"] == "https://mirror.example"
    assert os.environ["HF_ENDPOINT"] == "https://mirror.example"


# ---------------------------------------------------------------------------------------------------------------
# failures

def test_connection_error_stops_and_explains(tmp_path, monkeypatch):
    import httpx2

    calls = []

    def no_network(repo_id, filename, **kwargs):
        calls.append(filename)
        raise httpx2.ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(D, "hf_hub_download", no_network)
    dest = tmp_path / "models"
    code, out, err = run_main(["bert", "sv", "g2pw", "--dest", str(dest), "--endpoint", "https://mirror.example"])
    assert code == 1
    assert len(calls) == 1  # the first failure ends the run: no point retrying every file
    assert "Traceback" not in err + out
    assert "Could not fetch 3 item(s): BERT folder (bert), SV model (sv), G2PW model (g2pw)" in err
    assert "https://mirror.example could not be reached" in err and "name resolution" in err
    assert f"inside {dest}:" in err
    for rel in ("chinese-roberta-wwm-ext-large/config.json", "chinese-roberta-wwm-ext-large/pytorch_model.bin",
                "sv/pretrained_eres2netv2w24s4ep4.ckpt", "G2PWModel/g2pW.onnx (or g2pw.onnx)",
                "G2PWModel/char_bopomofo_dict.json"):
        assert f"      {rel}" in err, rel
    assert "https://mirror.example/lj1995/GPT-SoVITS/resolve/main/sv/pretrained_eres2netv2w24s4ep4.ckpt" in err
    assert "https://mirror.example/XXXXRT/GPT-SoVITS-Pretrained/resolve/main/G2PWModel.zip" in err
    assert f"python -m gsv_core.download --list --dest {dest}" in err


def test_file_missing_on_mirror_does_not_stop_others(tmp_path, hub):
    (hub.root / D.MODELS_REPO / "s2G488k.pth").unlink()
    dest = tmp_path / "models"
    code, out, err = run_main(["v1", "sv", "--dest", str(dest)])
    assert code == 1
    assert "s2G488k.pth was not found in lj1995/GPT-SoVITS" in err
    assert (dest / "sv" / "pretrained_eres2netv2w24s4ep4.ckpt").is_file()  # the other item still came
    assert "Could not fetch 1 item(s): v1 pretrained weights (v1)" in err
    assert "      s2G488k.pth   from https://huggingface.co/lj1995/GPT-SoVITS/resolve/main/s2G488k.pth" in err
    assert "      s1bert25hz-2kh-longer-epoch=68e-step=50232.ckpt" not in err  # that one arrived


def test_download_that_leaves_nothing_is_caught(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "hf_hub_download", lambda repo_id, filename, local_dir=None, **kw: str(Path(local_dir) / filename))
    code, _, err = run_main(["sv", "--dest", str(tmp_path / "m")])
    assert code == 1 and "still missing: sv/pretrained_eres2netv2w24s4ep4.ckpt" in err


def test_disk_error_is_reported(tmp_path, monkeypatch):
    def disk_full(repo_id, filename, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "m" / filename))

    monkeypatch.setattr(D, "hf_hub_download", disk_full)
    code, _, err = run_main(["sv", "--dest", str(tmp_path / "m")])
    assert code == 1 and "cannot write sv/pretrained_eres2netv2w24s4ep4.ckpt (No space left on device" in err


def test_interrupt_says_how_to_resume(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(D, "hf_hub_download", interrupted)
    code, _, err = run_main(["sv", "--dest", str(tmp_path / "m")])
    assert code == 130 and "run the same command again to resume" in err.lower()


def test_bad_arguments(tmp_path, capsys):
    for argv in (["bogus"], ["--version", "v5"], ["sv", "--endpoint", "mirror.example"]):
        with pytest.raises(SystemExit) as exc:
            main(argv + ["--dest", str(tmp_path)])
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown item 'bogus'" in err and "unknown version 'v5'" in err and "http(s) URL" in err


def _guard_sockets(monkeypatch) -> list:
    touched: list = []

    def refuse(*args, **kwargs):
        touched.append(args)
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return touched


def test_offline_mode_real_hf_hub_download(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    touched = _guard_sockets(monkeypatch)
    dest = tmp_path / "models"
    code, out, err = run_main(["sv", "bert", "--dest", str(dest)])
    assert code == 1
    assert touched == []
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in err and "Traceback" not in err
    assert "      sv/pretrained_eres2netv2w24s4ep4.ckpt" in err
    assert "      chinese-roberta-wwm-ext-large/tokenizer.json" in err
    assert not dest.exists() or [p for p in dest.rglob("*") if p.is_file()] == []  # no debris
    # items already present need no network, even offline
    populate(dest, keys={"sv"})
    code, out, err = run_main(["sv", "--dest", str(dest)])
    assert code == 0 and "sv: already present" in out and touched == []


def test_offline_mode_command_line(tmp_path):
    guard = (
        "import socket, sys, runpy\n"
        "def refuse(*a, **k):\n"
        "    sys.stderr.write('NETWORK TOUCHED\\n'); raise OSError('blocked')\n"
        "socket.socket.connect = refuse; socket.getaddrinfo = refuse; socket.create_connection = refuse\n"
        "sys.argv = ['gsv_core.download'] + sys.argv[1:]\n"
        "runpy.run_module('gsv_core.download', run_name='__main__', alter_sys=True)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", GSV_MY_CONFIG=str(tmp_path / "none.py"))
    dest = tmp_path / "models"
    proc = subprocess.run([sys.executable, "-c", guard, "--version", "v2ProPlus", "--dest", str(dest)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "NETWORK TOUCHED" not in proc.stderr
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in proc.stderr
    assert "Could not fetch 5 item(s)" in proc.stderr
    for rel in ("chinese-hubert-base/pytorch_model.bin", "v2Pro/s2Gv2ProPlus.pth", "s1v3.ckpt",
                "sv/pretrained_eres2netv2w24s4ep4.ckpt", "G2PWModel/config.py"):
        assert f"      {rel}" in proc.stderr, rel


def test_partial_download_is_kept_for_resuming(tmp_path, hub, monkeypatch):
    """A download cut off midway leaves huggingface_hub's .incomplete file in local_dir/.cache, which the next
    run (same local_dir) resumes from; a failure with nothing partial leaves no debris."""
    import httpx2

    dest = tmp_path / "models"

    def cut_off(repo_id, filename, *, local_dir, **kwargs):
        part = Path(local_dir) / ".cache" / "huggingface" / "download" / (filename + ".abc.incomplete")
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"first half")
        raise httpx2.ReadError("connection reset by peer")

    monkeypatch.setattr(D, "hf_hub_download", cut_off)
    code, _, err = run_main(["sv", "--dest", str(dest)])
    assert code == 1 and "connection reset by peer" in err
    kept = list(dest.rglob("*.incomplete"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"first half"
    monkeypatch.setattr(D, "hf_hub_download", hub)
    assert run_main(["sv", "--dest", str(dest)])[0] == 0
    assert hub.calls[0]["local_dir"] == str(dest)  # same local_dir: huggingface_hub picks the partial file up
