"""Issue 14: the black-box probe replayed against an in-process app through gradio_client (and the CLI where it
applies). Every server path a caller names is refused unless it lies in the app's folders, the data folders or a
fresh upload, with one message whether or not the path exists and without file contents; bombs are refused with
bounded memory (RSS sampled while the call runs) and leave no files; the launcher refuses an exposed host without a
login and /config carries no absolute path of the host; and the unclear messages of item 13 are clear.

Limits in this module are made small (MAX_UNPACKED_MB 40, MAX_UPLOAD_MB 8, MAX_AUDIO_MINUTES 5) so the bombs stay cheap to build."""
from __future__ import annotations

import dataclasses
import json
import lzma
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from test_app import REF_TEXT, TEXT, _params, serve_app
from test_eval_tab import _inputs, _settings

ROOT = Path(__file__).resolve().parents[1]
MB = 2**20
UNPACK_CAP_MB = 40
SECRET = "TOPSECRET-the-first-line-of-a-private-file"


# -- fixtures --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def outside(tmp_path_factory, parity_dir, tiny_assets):
    """A folder the app must never read: a secret text, real audio, a real checkpoint and a .list naming them."""
    d = tmp_path_factory.mktemp("outside")
    (d / "secret.txt").write_text(SECRET + "\nline two\n", encoding="utf-8")
    (d / "secret.csv").write_text(SECRET + ",x\n1,2\n", encoding="utf-8")
    shutil.copy(tiny_assets["ref"], d / "voice.wav")
    shutil.copy(parity_dir / "s1_v2.ckpt", d / "stolen.ckpt")
    (d / "voice.list").write_text(f"{d / 'voice.wav'}|spk|zh|{REF_TEXT}\n", encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def served(tmp_path_factory, parity_dir, tiny_assets, outside):
    from gradio_client import Client

    root = tmp_path_factory.mktemp("security")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(root / "gradio_tmp"))
    settings = dataclasses.replace(_settings(root, parity_dir, tiny_assets), max_unpacked_mb=UNPACK_CAP_MB,
                                   max_upload_mb=8, max_audio_minutes=5)
    assert not any(Path(outside).is_relative_to(Path(r).resolve()) for r in settings.data_dirs)
    app = serve_app(settings)
    try:
        yield {"app": app, "client": Client(app.local_url, verbose=False), "root": root, "settings": settings,
               "services": app.gsv_services, "url": app.local_url}
    finally:
        app.close()


def _outcome(call) -> str:
    """What the caller sees: the error message, or the returned values as text."""
    try:
        return json.dumps(call(), ensure_ascii=False, default=str)
    except Exception as exc:  # noqa: BLE001 - gradio_client's AppError carries the page's message
        return str(exc)


def _same_refusal(a: str, name_a: str, b: str, name_b: str) -> None:
    """The refusal of an existing file and of a missing one read the same (nothing about existence leaks)."""
    assert a.replace(name_a, "NAME") == b.replace(name_b, "NAME"), (a, b)
    assert "does not exist" not in a and "not found" not in a.lower() and "No such file" not in a


@contextmanager
def peak_rss():
    """Samples this process's RSS every 10 ms; ``box[0]`` is the peak growth in bytes over the block."""
    import psutil

    proc, stop, box = psutil.Process(), threading.Event(), [0]
    base = proc.memory_info().rss

    def sample():
        while not stop.is_set():
            box[0] = max(box[0], proc.memory_info().rss - base)
            stop.wait(0.01)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield box
    finally:
        stop.set()
        t.join()


def _role(served, name="probe") -> int:
    role, _ = served["client"].predict("security", name, api_name="/refaudio_create_role")
    return int(role["value"] if isinstance(role, dict) else role)


def _files_under(folder: Path) -> list[Path]:
    return [p for p in Path(folder).rglob("*") if p.is_file()]


def _zip(path: Path, members: dict) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _xz_bomb(size: int) -> bytes:
    comp, block = lzma.LZMACompressor(format=lzma.FORMAT_XZ, preset=0), b"\0" * (8 * MB)
    return b"".join(comp.compress(block) for _ in range(size // len(block))) + comp.flush()


def _deflate_bomb(path: Path, size: int, name: str = "p/big.wav", extra: dict | None = None) -> Path:
    block = b"\0" * (8 * MB)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, data in (extra or {}).items():
            zf.writestr(n, data)
        with zf.open(name, "w", force_zip64=True) as fh:
            for _ in range(size // len(block)):
                fh.write(block)
    return path


def _preset(name: str, gpt_file=None, sovits_file=None, gpt_source=None, sovits_source=None) -> dict:
    from refaudio.products import PRESET_FORMAT

    def model(kind, file, source):
        return {"file": file, "name": kind, "source_path": source}

    return {"format": PRESET_FORMAT, "format_version": 1, "name": name,
            "models": {"gpt": model("gpt", gpt_file, gpt_source), "sovits": model("sovits", sovits_file, sovits_source)},
            "reference": {"audio": "ref.wav", "text": REF_TEXT, "language": "zh"}, "params": {}}


# -- items 1-4: server paths -----------------------------------------------------------------------------------

def test_list_upload_cannot_pull_server_audio_into_the_library(served, outside, tmp_path):
    """Item 1: a .list naming an absolute path (or '..') imports nothing from outside the upload."""
    from gradio_client import handle_file

    client, svc = served["client"], served["services"].refaudio
    role = _role(served, "list_upload")
    lst = tmp_path / "evil.list"
    lst.write_text(f"{outside / 'voice.wav'}|spk|zh|{REF_TEXT}\n../outside/voice.wav|spk|zh|{REF_TEXT}\n",
                   encoding="utf-8")
    report, *_ = client.predict(role, [handle_file(str(lst))], "", "default", False, api_name="/refaudio_import")
    assert "0 added" in report and "line 1" in report and "line 2" in report, report
    assert svc.list_clips(role) == []
    secret_audio = (outside / "voice.wav").read_bytes()
    assert not any(p.read_bytes() == secret_audio for p in _files_under(svc.library_root) if p.suffix == ".wav")
    # the staging folder of the upload is gone
    assert not [p for p in (svc.out_root / "uploads").glob("import_*")]


def test_server_paths_are_refused_without_disclosure(served, outside, tiny_assets, tmp_path):
    """Items 2 and 4: /eval_run's csv_path, /refaudio_import's path, /asr_load_list, the ASR paths box and the
    batch CSV's ref column refuse files outside the allowed folders with the same message whether they exist or
    not, and never show their contents."""
    from gradio_client import handle_file

    client = served["client"]
    missing = outside / "nothere.csv"
    # item 2: the eval test CSV
    a = _outcome(lambda: client.predict(*_inputs(served, tiny_assets, outside / "secret.csv", "p1"), api_name="/eval_run"))
    b = _outcome(lambda: client.predict(*_inputs(served, tiny_assets, missing, "p2"), api_name="/eval_run"))
    assert SECRET not in a and "cannot be used" in a
    _same_refusal(a, "secret.csv", b, "nothere.csv")
    a = _outcome(lambda: client.predict(*_inputs(served, tiny_assets, "/etc/shadow", "p3"), api_name="/eval_run"))
    assert "cannot be used" in a and "root:" not in a
    # item 4: the RefAudio import path, the ASR .list loader and paths box
    role = _role(served, "paths")
    a = _outcome(lambda: client.predict(role, [], str(outside / "voice.list"), "default", False,
                                        api_name="/refaudio_import"))
    b = _outcome(lambda: client.predict(role, [], str(outside / "nothere.list"), "default", False,
                                        api_name="/refaudio_import"))
    _same_refusal(a, "voice.list", b, "nothere.list")
    assert served["services"].refaudio.list_clips(role) == []
    a = _outcome(lambda: client.predict(str(outside / "secret.txt"), None, api_name="/asr_load_list"))
    b = _outcome(lambda: client.predict(str(outside / "nothere.txt"), None, api_name="/asr_load_list"))
    assert SECRET not in a and "cannot be used" in a
    _same_refusal(a, "secret.txt", b, "nothere.txt")
    whisper = "tiny-random"
    a = _outcome(lambda: client.predict(whisper, "zh", False, 1, "cpu", "int8", False, "keep", "", [],
                                        str(outside / "voice.wav"), api_name="/asr_transcribe"))
    b = _outcome(lambda: client.predict(whisper, "zh", False, 1, "cpu", "int8", False, "keep", "", [],
                                        str(outside / "nothere.wav"), api_name="/asr_transcribe"))
    assert "cannot be used" in a
    _same_refusal(a, "voice.wav", b, "nothere.wav")
    # the batch CSV's ref column: the row fails alone with the refusal, the other row is synthesised
    batch = tmp_path / "lines.csv"
    batch.write_text(f"id,text,ref\nok,你好。,\nbad,你好。,{outside / 'voice.wav'}\nmiss,你好。,{outside / 'no.wav'}\n",
                     encoding="utf-8")
    info, results, _zip_file, _table = client.predict(handle_file(str(batch)), *_params(served, tiny_assets,
                                                      max_tokens=4), api_name="/tts_batch")
    rows = {r["id"]: r for r in __import__("csv").DictReader(open(results, encoding="utf-8"))}
    assert rows["ok"]["status"] == "ok" and rows["bad"]["status"] == rows["miss"]["status"] == "error"
    _same_refusal(rows["bad"]["error"], "voice.wav", rows["miss"]["error"], "no.wav")


def test_product_with_a_foreign_source_path_is_refused(served, outside, tiny_assets, tmp_path):
    """Item 3: a product zip whose source_path names a checkpoint outside the model folders is refused on import
    and by the TTS preset loader, so no export can carry that file out."""
    from gradio_client import handle_file

    client = served["client"]
    role = _role(served, "foreign")
    preset = _preset("foreign", gpt_source=str(outside / "stolen.ckpt"), sovits_source=str(outside / "stolen.ckpt"))
    z = _zip(tmp_path / "foreign.zip", {"p/preset.json": json.dumps(preset),
                                        "p/ref.wav": Path(tiny_assets["ref"]).read_bytes()})
    for call in (lambda: client.predict(role, handle_file(str(z)), False, api_name="/refaudio_product_import"),
                 lambda: client.predict(handle_file(str(z)), api_name="/tts_load_preset")):
        msg = _outcome(call)
        assert "not in this app's model folders" in msg and str(outside) not in msg, msg
    svc = served["services"].refaudio
    assert not svc.products.products(role)
    stolen = (outside / "stolen.ckpt").read_bytes()
    assert not any(p.read_bytes() == stolen for p in _files_under(svc.library_root) if p.suffix == ".ckpt")


# -- item 5: bombs ----------------------------------------------------------------------------------------------

def test_xz_bomb_in_a_preset_zip_costs_bounded_memory(served, tiny_assets, tmp_path):
    """Item 5: a preset zip whose model is a small xz stream of 192 MiB of zeros: the checkpoint reader stops at
    MAX_UNPACKED_MB; the app answers and keeps serving."""
    from gradio_client import handle_file

    preset = _preset("xzbomb", gpt_file="models/gpt.ckpt", sovits_file="models/sovits.pth")
    bomb = _xz_bomb(192 * MB)
    z = _zip(tmp_path / "xzbomb.zip", {"p/preset.json": json.dumps(preset), "p/models/gpt.ckpt": bomb,
                                       "p/models/sovits.pth": bomb, "p/ref.wav": Path(tiny_assets["ref"]).read_bytes()})
    assert z.stat().st_size < MB
    with peak_rss() as grew:
        msg = _outcome(lambda: served["client"].predict(handle_file(str(z)), api_name="/tts_load_preset"))
    assert grew[0] < 3 * UNPACK_CAP_MB * MB, f"RSS grew by {grew[0] / MB:.0f} MiB"
    assert "MAX_UNPACKED_MB" in msg or "cannot be read" in msg, msg
    # still serving
    assert served["client"].predict(api_name="/tts_batch_cancel") == "No batch is running."


def test_deflate_bomb_zips_are_refused_and_leave_nothing(served, tmp_path):
    """Item 5: a 192 MiB zip member (a few hundred KiB uploaded) is refused by the RefAudio import and the product
    import before it is unpacked; no staged file stays on disk."""
    from gradio_client import handle_file

    client, svc = served["client"], served["services"].refaudio
    role = _role(served, "bomb")
    bomb = _deflate_bomb(tmp_path / "bomb.zip", 192 * MB, extra={"p/a.list": "big.wav|s|zh|好。\n"})
    assert bomb.stat().st_size < MB
    before = {p for p in _files_under(svc.out_root)} | {p for p in _files_under(svc.library_root)}
    with peak_rss() as grew:
        a = _outcome(lambda: client.predict(role, [handle_file(str(bomb))], "", "default", False,
                                            api_name="/refaudio_import"))
        b = _outcome(lambda: client.predict(role, handle_file(str(bomb)), False, api_name="/refaudio_product_import"))
        c = _outcome(lambda: client.predict(handle_file(str(bomb)), api_name="/tts_load_preset"))
    for msg in (a, b, c):
        assert "MAX_UNPACKED_MB" in msg or "unpacks to more than" in msg, msg
    assert grew[0] < 3 * UNPACK_CAP_MB * MB, f"RSS grew by {grew[0] / MB:.0f} MiB"
    after = {p for p in _files_under(svc.out_root)} | {p for p in _files_under(svc.library_root)}
    left = [p for p in after - before if p.stat().st_size > MB]
    assert not left, left
    assert not [p for p in (svc.out_root / "uploads").glob("import_*")]


# -- item 6: exposure ---------------------------------------------------------------------------------------------

def test_exposed_host_needs_a_login_and_config_has_no_host_paths(served):
    """Item 6: --host 0.0.0.0 or --share without --auth is refused (or warned about with --allow-open-access);
    /config carries no absolute path of the host; uploads over MAX_UPLOAD_MB are refused."""
    import httpx

    from main_launcher import access_check, parse_auth

    assert access_check("127.0.0.1", False, None, False) == ""
    for host, share in (("0.0.0.0", False), ("192.168.1.5", False), ("127.0.0.1", True)):
        msg = access_check(host, share, None, False)
        assert "--auth" in msg and "login" in msg
        assert access_check(host, share, "me:pw", False) == ""
        assert access_check(host, share, None, True) == ""  # allowed, with a printed warning (main())
    assert parse_auth("a:1,b:2") == [("a", "1"), ("b", "2")]
    with pytest.raises(SystemExit, match="USER:PASSWORD"):
        parse_auth("nopassword")
    proc = subprocess.run([sys.executable, str(ROOT / "main_launcher.py"), "--host", "0.0.0.0", "--port", "1"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode != 0 and "--auth" in proc.stderr and "Traceback" not in proc.stderr

    config = httpx.get(served["url"] + "config", timeout=30).text
    root = str(served["root"])
    assert root not in config and str(ROOT) not in config, "an absolute host path is in /config"
    big = b"\0" * (9 * MB)  # MAX_UPLOAD_MB is 8 here
    r = httpx.post(served["url"] + "gradio_api/upload", files={"files": ("big.wav", big)}, timeout=60)
    assert r.status_code in (413, 400), r.status_code
    assert not [p for p in _files_under(Path(os.environ["GRADIO_TEMP_DIR"])) if p.stat().st_size >= 9 * MB]


def test_old_upload_staging_folders_are_cleaned(tmp_path):
    """Item 6: staged uploads older than a day are removed when the next upload is staged."""
    from refaudio.uploads import STAGING_MAX_AGE_S, staging_folder

    old = staging_folder(tmp_path, "import")
    (old / "x.wav").write_bytes(b"x")
    past = time.time() - STAGING_MAX_AGE_S - 60
    os.utime(old, (past, past))
    fresh = staging_folder(tmp_path, "import")
    assert fresh.is_dir() and not old.exists()


# -- item 12: limits ----------------------------------------------------------------------------------------------

def _long_wav_header(path: Path, seconds: float, sr: int, channels: int = 1, subtype: str = "PCM_16") -> Path:
    """A WAV of ``seconds`` of silence written as a sparse file: cheap on disk, and a reader that decodes it whole
    before checking its length costs its full size in memory."""
    width = {"PCM_U8": 1, "PCM_16": 2}[subtype]
    frames = int(seconds * sr)
    with sf.SoundFile(path, "w", samplerate=sr, channels=channels, subtype=subtype) as f:
        f.write(np.zeros((16, channels), dtype=np.float32))
    data = frames * channels * width
    with open(path, "r+b") as fh:  # patch the RIFF and data chunk sizes, then extend without writing
        fh.seek(4)
        fh.write((36 + data).to_bytes(4, "little"))
        fh.seek(40)
        fh.write(data.to_bytes(4, "little"))
        fh.truncate(44 + data)
    assert abs(sf.info(str(path)).duration - seconds) < 1
    return path


def test_limits_refuse_before_the_work(served, tiny_assets, tmp_path):
    """Item 12: a 50,000-character text, a too-long reference and a too-long ASR input (refused from their headers,
    never decoded) and a 120x120x120 sweep grid (refused from the list lengths) get messages naming the limit, in
    bounded time and memory."""
    from gradio_client import handle_file

    client = served["client"]
    huge = "今天天气很好。" * 7200
    msg = _outcome(lambda: client.predict(*_params(served, tiny_assets, text=huge), api_name="/tts"))
    assert "MAX_TEXT_CHARS" in msg and "50400" in msg, msg
    long_ref = _long_wav_header(tmp_path / "long_ref.wav", 100, 8000, subtype="PCM_U8")
    msg = _outcome(lambda: client.predict(*_params(served, tiny_assets, ref_audio=handle_file(str(long_ref))),
                                          api_name="/tts"))
    assert "long_ref" in msg and "60 s" in msg and "Unexpected" not in msg, msg
    data = Path(served["settings"].data_dirs[0])
    data.mkdir(parents=True, exist_ok=True)
    minutes = served["settings"].max_audio_minutes
    long_asr = _long_wav_header(data / "long_asr.wav", minutes * 60 + 60, 48000, channels=2)  # 138 MB as float32
    with peak_rss() as grew:
        table, status = client.predict("tiny-random", "zh", False, 1, "cpu", "int8", False, "keep", "", [],
                                       str(long_asr), api_name="/asr_transcribe")
    assert "MAX_AUDIO_MINUTES" in json.dumps(table, ensure_ascii=False) + status, (table, status)
    assert grew[0] < 64 * MB, f"RSS grew by {grew[0] / MB:.0f} MiB for a header check"

    role = _role(served, "grid")
    lst = tmp_path / "one.list"
    lst.write_text(f"ref.wav|spk|zh|{REF_TEXT}\n", encoding="utf-8")
    shutil.copy(tiny_assets["ref"], tmp_path / "ref.wav")
    client.predict(role, [handle_file(str(lst)), handle_file(str(tmp_path / "ref.wav"))], "", "default", False,
                   api_name="/refaudio_import")
    clip = served["services"].refaudio.list_clips(role)[0]["id"]
    from test_refaudio_tab import _sweep_args

    values = [", ".join(f"{a}{k:03d}" for k in range(1, 121)) for a in ("", "0.", "1.")]
    t0 = time.perf_counter()
    with peak_rss() as grew:
        msg = _outcome(lambda: client.predict(*_sweep_args(served["services"], role, str(clip), compare="kpt",
                                                           grid_k=values[0], grid_p=values[1], grid_t=values[2]),
                                              api_name="/refaudio_sweep"))
    assert "1728000" in msg and "MAX_SWEEP_ITEMS" in msg, msg
    assert time.perf_counter() - t0 < 30 and grew[0] < 100 * MB, (time.perf_counter() - t0, grew[0] / MB)


def test_long_audio_is_embedded_in_windows(tiny_assets, monkeypatch):
    """Item 12: the speaker model sees at most WINDOW_SECONDS of audio at a time, so a two-minute clip costs the
    memory of a 20-second one; a short clip is embedded whole. (The window is made 2 s here to keep the test fast:
    12 s of audio stands for 120 s.)"""
    import torch

    from gsv_core.features import speaker
    from gsv_core.loading import load_speaker_encoder

    assert speaker.WINDOW_SECONDS == 20.0
    monkeypatch.setattr(speaker, "WINDOW_SECONDS", 2.0)
    enc = load_speaker_encoder(tiny_assets["sv"])
    seen = []
    real_fbank = enc.fbank

    def spy(wav16):
        feats = real_fbank(wav16)
        seen.append(feats.shape[1])  # frames: 100 per second
        return feats

    enc.fbank = spy
    out = enc.embed(torch.randn(16000 * 12) * 0.1)
    assert out.shape[0] == 1 and torch.isfinite(out).all()
    assert len(seen) == 6 and max(seen) <= 2 * 100, seen
    seen.clear()
    enc.embed(torch.randn(16000 * 2) * 0.1)
    assert len(seen) == 1


# -- item 13: the unclear messages ----------------------------------------------------------------------------

def _raw_call(served, api_name: str, data: list) -> str:
    """An API call as raw HTTP (what gradio_client cannot send: JSON's NaN/Infinity literals); the event stream's
    text comes back."""
    import httpx

    url = served["url"]
    params = served["client"].view_api(return_format="dict", print_info=False)["named_endpoints"][f"/{api_name}"]
    data = list(data) + [p.get("parameter_default") for p in params["parameters"][len(data):]]
    body = json.dumps({"data": data}, allow_nan=True)
    r = httpx.post(f"{url}gradio_api/call/{api_name}", content=body, headers={"Content-Type": "application/json"},
                   timeout=60)
    r.raise_for_status()
    return httpx.get(f"{url}gradio_api/call/{api_name}/{r.json()['event_id']}", timeout=300).text


def _uploaded(served, path) -> dict:
    import httpx

    r = httpx.post(served["url"] + "gradio_api/upload", files={"files": (Path(path).name, Path(path).read_bytes())},
                   timeout=60)
    return {"path": r.json()[0], "meta": {"_type": "gradio.FileData"}, "orig_name": Path(path).name}


@pytest.mark.parametrize("kw, expected", [
    (dict(text="我要重[chong9]新开始。"), "tone"),
    (dict(text="我要[chong]新开始。"), "tone"),
    (dict(text="こんにちは、世界。"), "Japanese"),
])
def test_unclear_texts_get_named_errors(served, tiny_assets, kw, expected):
    msg = _outcome(lambda: served["client"].predict(*_params(served, tiny_assets, **kw), api_name="/tts"))
    assert expected in msg and "Unexpected error" not in msg and "Traceback" not in msg, msg


@pytest.mark.parametrize("field, label", [("top_k", "top_k"), ("max_tokens", "max semantic tokens"), ("seed", "seed"),
                                          ("temperature", "temperature"), ("speed", "speed")])
def test_nan_and_infinity_numbers_get_named_errors(served, tiny_assets, field, label):
    """Item 13: NaN (or Infinity) in a number field, sent as raw JSON, names the field."""
    from test_app import _params as params

    names = ["gpt", "sovits", "ref_audio", "ref_text", "ref_lang", "aux_refs", "text", "text_lang", "split", "top_k",
             "top_p", "temperature", "repetition_penalty", "speed", "pause", "seed", "random_seed", "max_tokens"]
    data = params(served, tiny_assets)
    data[names.index("ref_audio")] = _uploaded(served, tiny_assets["ref"])
    data[names.index(field)] = float("nan") if field != "speed" else float("inf")
    out = _raw_call(served, "tts", data)
    assert "event: error" in out and label in out and "finite number" in out and "Unexpected" not in out, out[-1500:]


def test_long_unpunctuated_text_is_split_not_empty(served, tiny_assets):
    """Item 13: 600 Chinese characters without punctuation are cut into fragments (no empty first piece)."""
    import soundfile as sf

    text = ("今天天气很好我们一起去公园散步吧" * 40)[:600]
    audio, info, *_ = served["client"].predict(*_params(served, tiny_assets, text=text, max_tokens=2), api_name="/tts")
    assert sf.info(audio).frames > 0 and "empty" not in info


def test_upload_named_aux_wav_is_found(served, tiny_assets, tmp_path):
    """Item 13: Gradio renames an upload called aux.wav (a reserved name on Windows); a .list naming aux.wav still
    finds it, and it works as an auxiliary reference."""
    from gradio_client import handle_file

    client, svc = served["client"], served["services"].refaudio
    aux = tmp_path / "aux.wav"
    shutil.copy(tiny_assets["ref"], aux)
    lst = tmp_path / "aux.list"
    lst.write_text(f"aux.wav|spk|zh|{REF_TEXT}\n", encoding="utf-8")
    role = _role(served, "aux")
    report, *_ = client.predict(role, [handle_file(str(lst)), handle_file(str(aux))], "", "default", False,
                                api_name="/refaudio_import")
    assert "1 added" in report, report
    audio, info, *_ = client.predict(*_params(served, tiny_assets, aux_refs=[handle_file(str(aux))], max_tokens=4),
                                     api_name="/tts")
    assert sf.info(audio).frames > 0


@pytest.fixture(scope="module")
def mismatched(tmp_path_factory, parity_dir, tiny_assets):
    """An app whose HuBERT is 256 wide while the SoVITS models expect 768."""
    from gradio_client import Client

    from helpers.tiny_models import build_tiny_hubert
    from test_app import app_settings

    root = tmp_path_factory.mktemp("mismatch")
    hubert = build_tiny_hubert(root / "hubert256", hidden=256)
    settings = dataclasses.replace(app_settings(root, parity_dir, tiny_assets), hubert_dir=hubert)
    app = serve_app(settings)
    try:
        yield {"app": app, "client": Client(app.local_url, verbose=False), "root": root, "settings": settings,
               "services": app.gsv_services}
    finally:
        app.close()


def test_hubert_width_mismatch_is_named(mismatched, tiny_assets):
    """Item 13: a HuBERT whose width differs from the SoVITS model's: a message naming both, in the app and in
    ``python -m gsv_core.tts`` (no traceback)."""
    msg = _outcome(lambda: mismatched["client"].predict(*_params(mismatched, tiny_assets, max_tokens=4),
                                                        api_name="/tts"))
    assert "HuBERT" in msg and "768" in msg and "256" in msg and "Unexpected" not in msg, msg
    s = mismatched["settings"]
    env = dict(os.environ, GSV_HOME=str(mismatched["root"]), GSV_GPT_WEIGHT_DIRS=str(s.gpt_weight_dirs[0]),
               GSV_SOVITS_WEIGHT_DIRS=str(s.sovits_weight_dirs[0]))
    proc = subprocess.run([sys.executable, "-m", "gsv_core.tts", "--gpt", str(s.gpt_weight_dirs[0] / "s1_v2.ckpt"),
                           "--sovits", str(s.sovits_weight_dirs[0] / "s2_v2.pth.xz"), "--ref", str(tiny_assets["ref"]),
                           "--ref-text", REF_TEXT, "--text", TEXT, "--max-tokens", "4", "--device", "cpu",
                           "--hubert", str(s.hubert_dir), "--bert", str(s.bert_dir), "--sv", str(s.sv_path),
                           "-o", str(mismatched["root"] / "out.wav")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode != 0 and "HuBERT" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


# -- items 7-11: nothing lost or mixed up ---------------------------------------------------------------------------

def _tone(path: Path, hz: float, seconds: float = 4.0, sr: int = 32000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), sr)
    return path


def test_same_name_uploads_keep_their_own_transcripts(served, tmp_path):
    """Item 7: spkA/0001.wav and spkB/0001.wav in one zip each get their own row's text; the same two files
    uploaded loose (folders lost) are refused by name instead of guessed."""
    from gradio_client import handle_file

    client, svc = served["client"], served["services"].refaudio
    a, b = _tone(tmp_path / "spkA" / "0001.wav", 220), _tone(tmp_path / "spkB" / "0001.wav", 440)
    lst = "spkA/0001.wav|A|zh|甲说的第一句话。\nspkB/0001.wav|B|zh|乙说的第一句话。\n"
    z = _zip(tmp_path / "both.zip", {"data/both.list": lst, "data/spkA/0001.wav": a.read_bytes(),
                                     "data/spkB/0001.wav": b.read_bytes()})
    role = _role(served, "same_names")
    report, *_ = client.predict(role, [handle_file(str(z))], "", "default", False, api_name="/refaudio_import")
    assert "2 added" in report, report
    clips = {c["transcript"]: svc.clip_audio(c["id"]) for c in svc.list_clips(role)}
    want = {"甲说的第一句话。": a, "乙说的第一句话。": b}
    for text, src in want.items():
        got, _ = sf.read(clips[text])
        ref, _ = sf.read(src)
        assert abs(len(got) - len(ref)) < 10 and np.corrcoef(got[:len(ref)][:31000], ref[:31000])[0, 1] > 0.99, text
    loose = tmp_path / "loose.list"
    loose.write_text("0001.wav|A|zh|甲。\n0001.wav|B|zh|乙。\n", encoding="utf-8")
    role2 = _role(served, "same_names_loose")
    report, *_ = client.predict(role2, [handle_file(str(loose)), handle_file(str(a)), handle_file(str(b))], "",
                                "default", False, api_name="/refaudio_import")
    assert "0 added" in report and "2 uploaded files are named '0001.wav'" in report, report


def test_same_name_models_of_two_products_stay_apart(served, parity_dir, tiny_assets, tmp_path):
    """Item 8: two product zips whose model files share a name: each product keeps its own weights."""
    from gradio_client import handle_file

    client, svc = served["client"], served["services"].refaudio
    role = _role(served, "same_models")
    ref = Path(tiny_assets["ref"]).read_bytes()
    made = {}
    for name, gpt in (("one", parity_dir / "s1_v2.ckpt"), ("two", parity_dir / "s1_v1.ckpt")):
        preset = _preset(name, gpt_file="models/gpt.ckpt", sovits_file="models/sovits.pth")
        z = _zip(tmp_path / f"{name}.zip", {f"{name}/preset.json": json.dumps(preset), f"{name}/ref.wav": ref,
                                            f"{name}/models/gpt.ckpt": gpt.read_bytes(),
                                            f"{name}/models/sovits.pth": lzma.decompress(
                                                (parity_dir / "s2_v2.pth.xz").read_bytes())})
        out = client.predict(role, handle_file(str(z)), False, api_name="/refaudio_product_import")
        assert "mport" in json.dumps(out, ensure_ascii=False), out
        made[name] = gpt.read_bytes()
    products = {p["name"]: p for p in svc.products.products() if p["name"] in made}  # the preset's own role
    assert set(products) == {"one", "two"}
    assert products["one"]["gpt_path"] != products["two"]["gpt_path"]
    for name, data in made.items():
        assert Path(products[name]["gpt_path"]).read_bytes() == data, name


def test_unterminated_quotes_are_errors_naming_the_line(served, tiny_assets, tmp_path):
    """Item 10: a CSV with a quote that never closes is refused with its line instead of merging the rows that
    follow: the batch CSV, the eval test CSV and a finetune dataset CSV."""
    from gradio_client import handle_file

    from gsv_core.finetune.data import DatasetError, read_dataset

    bad = 'id,text\na,"今天天气很好。\nb,我们去公园。\nc,晚上见。\n'
    batch = tmp_path / "batch.csv"
    batch.write_text(bad, encoding="utf-8")
    msg = _outcome(lambda: served["client"].predict(handle_file(str(batch)), *_params(served, tiny_assets),
                                                    api_name="/tts_batch"))
    assert "line 2" in msg and "quote" in msg, msg
    data = Path(served["settings"].data_dirs[0])
    data.mkdir(parents=True, exist_ok=True)
    (data / "quote.csv").write_text(bad, encoding="utf-8")
    msg = _outcome(lambda: served["client"].predict(*_inputs(served, tiny_assets, data / "quote.csv", "quote"),
                                                    api_name="/eval_run"))
    assert "line 2" in msg and "quote" in msg, msg
    ft = tmp_path / "ft.csv"
    ft.write_text('audio,text\na.wav,"好的。\nb.wav,不好。\n', encoding="utf-8")
    with pytest.raises(DatasetError, match="line 2.*quote"):
        read_dataset(ft)


def test_corrupt_library_disables_only_the_refaudio_tab(tmp_path, parity_dir, tiny_assets):
    """Item 11: a damaged refaudio/library.sqlite3: the app starts, TTS works, the RefAudio tab says why and moves
    the file aside on request (nothing is deleted)."""
    from gradio_client import Client

    from test_app import app_settings

    settings = app_settings(tmp_path, parity_dir, tiny_assets)
    db = Path(settings.refaudio_db)
    db.parent.mkdir(parents=True, exist_ok=True)
    garbage = b"this is not a database" * 200
    db.write_bytes(garbage)
    app = serve_app(settings)
    try:
        client = Client(app.local_url, verbose=False)
        served = {"services": app.gsv_services, "client": client}
        audio, info, *_ = client.predict(*_params(served, tiny_assets, max_tokens=4), api_name="/tts")
        assert sf.info(audio).frames > 0
        import httpx

        config = httpx.get(app.local_url + "config", timeout=30).text
        assert "The RefAudio library is not available" in config
        moved = client.predict(api_name="/refaudio_move_db_aside")
        assert "Moved to" in moved
        aside = [p for p in db.parent.iterdir() if p.name.startswith(db.name) and p != db]
        assert len(aside) == 1 and aside[0].read_bytes() == garbage and not db.exists()
    finally:
        app.close()


# -- load ---------------------------------------------------------------------------------------------------------------

def test_twenty_concurrent_tts_calls(served, tiny_assets):
    """20 /tts calls at once on the loopback app (tiny models, 4 tokens a fragment): every call returns its own
    audio with its own seed, the app stays responsive and memory stays bounded."""
    client, services = served["client"], served["services"]
    t0 = time.perf_counter()
    with peak_rss() as grew:
        jobs = [client.submit(*_params(served, tiny_assets, seed=1000 + k, max_tokens=4), api_name="/tts")
                for k in range(20)]
        results = [job.result(timeout=600) for job in jobs]
    elapsed = time.perf_counter() - t0
    seeds = []
    for audio, info, _download, seed_used, *_ in results:
        assert sf.info(audio).frames > 0 and "RTF" in info
        seeds.append(int(seed_used))
    assert sorted(seeds) == [1000 + k for k in range(20)]
    assert grew[0] < 1024 * MB, f"RSS grew by {grew[0] / MB:.0f} MiB"
    print(f"20 concurrent /tts: {elapsed:.1f} s, RSS +{grew[0] / MB:.0f} MiB")
    assert {1000 + k for k in range(20)} <= {e.seed for e in services.history.entries()}  # each one recorded
    assert client.predict(api_name="/tts_batch_cancel") == "No batch is running."
