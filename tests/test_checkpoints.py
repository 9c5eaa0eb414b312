"""Checkpoint I/O: safe loading, version detection, official-format saving, clear errors."""
from __future__ import annotations

import io
import lzma
import os
import pickle
import pickletools
import zipfile
from pathlib import Path

import pytest
import torch

from gsv_core.checkpoints import (
    HParams,
    load_gpt_checkpoint,
    load_sovits_checkpoint,
    load_sv_state_dict,
    save_sovits_checkpoint,
)
from gsv_core.errors import CheckpointError, UnsupportedVersionError


def _sovits_files(parity_dir: Path) -> list[Path]:
    files = sorted(parity_dir.glob("s2_*.pth.xz")) + sorted(parity_dir.glob("s2_*.pth"))
    assert files, f"no s2_*.pth[.xz] in {parity_dir}"
    return files


def _gpt_files(parity_dir: Path) -> list[Path]:
    files = sorted(parity_dir.glob("s1_*.ckpt"))
    assert files, f"no s1_*.ckpt in {parity_dir}"
    return files


def _raw_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return lzma.decompress(data) if path.suffix == ".xz" else data


def _zip_structure(raw: bytes) -> tuple[list[str], bytes]:
    """Member names below the archive folder (whose name depends on the file name) and the pickle bytes."""
    zf = zipfile.ZipFile(io.BytesIO(b"PK" + raw[2:]))
    names = zf.namelist()
    root = names[0].split("/")[0]
    return [n[len(root) + 1:] for n in names], zf.read(f"{root}/data.pkl")


def _globals_in_pickle(pkl: bytes) -> set[str]:
    return {arg.replace("\n", ".").replace(" ", ".") for op, arg, _ in pickletools.genops(pkl) if op.name == "GLOBAL"}


# ---------------------------------------------------------------------------------------------------------------
# Loading and version detection
# ---------------------------------------------------------------------------------------------------------------


def test_sovits_versions_follow_meta(parity_dir):
    import json

    for f in _sovits_files(parity_dir):
        ck = load_sovits_checkpoint(f)
        meta_path = parity_dir / (f.name.split(".pth")[0] + "_meta.json")
        meta = json.loads(meta_path.read_text())
        assert ck.model_version == meta["version"], f.name
        assert ck.header == bytes.fromhex(meta["container"]["first2"]), f.name
        assert ck.info == meta["info_field"]
        assert ck.config == meta["config"], "config must come back as the plain nested dict that was pickled"
        assert isinstance(ck.config_object, HParams)
        assert not any("enc_q" in k for k in ck.weight)
        assert {str(t.dtype) for t in ck.weight.values()} == set(meta["weight_dtypes"])
        assert {k: list(t.shape) for k, t in ck.weight.items()} == meta["weight_shapes"]
        rows = ck.weight["enc_p.text_embedding.weight"].shape[0]
        assert ck.symbol_version == ("v1" if rows == 322 else "v2")


def test_gpt_checkpoint_contents(parity_dir):
    import json

    for f in _gpt_files(parity_dir):
        ck = load_gpt_checkpoint(f)
        meta = json.loads((parity_dir / f.name.replace(".ckpt", "_meta.json")).read_text())
        assert ck.config["model"] == meta["config_model"]
        assert all(k.startswith("model.") for k in ck.weight)
        assert all(t.dtype == torch.float16 for t in ck.weight.values())
        assert list(ck.model_state_dict()) == [k[len("model."):] for k in ck.weight]
        assert ck.info.startswith("GPT-e")


def test_sv_state_dict(parity_dir):
    sd = load_sv_state_dict(parity_dir / "sv_eres2netv2_tiny.ckpt")
    assert "conv1.weight" in sd and all(isinstance(v, torch.Tensor) for v in sd.values())


# ---------------------------------------------------------------------------------------------------------------
# Round trips: load -> save -> the same bytes-level structure and the same tensors
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sovits", "gpt"])
def test_round_trip_preserves_official_structure(parity_dir, tmp_path, kind):
    files = _sovits_files(parity_dir) if kind == "sovits" else _gpt_files(parity_dir)
    for f in files:
        loader = load_sovits_checkpoint if kind == "sovits" else load_gpt_checkpoint
        ck = loader(f)
        out = ck.save(tmp_path / (f.name.replace(".xz", "")))
        original, written = _raw_bytes(f), out.read_bytes()
        assert written[:2] == original[:2], "version header must be preserved"
        names_a, pkl_a = _zip_structure(original)
        names_b, pkl_b = _zip_structure(written)
        assert names_b == names_a, "zip members (data.pkl, data/N, byteorder, ...) must match"
        assert pkl_b == pkl_a, "the pickled structure must be byte-identical to upstream's"
        if kind == "sovits":
            assert "utils.HParams" in _globals_in_pickle(pkl_b)
        again = loader(out)
        assert list(again.weight) == list(ck.weight)
        for key, tensor in ck.weight.items():
            assert again.weight[key].dtype == tensor.dtype
            assert torch.equal(again.weight[key], tensor), key
        assert again.config == ck.config and again.info == ck.info
        if kind == "sovits":
            assert again.model_version == ck.model_version


def test_save_from_fp32_training_state(parity_dir, tmp_path):
    """A trainer hands over fp32 weights with enc_q: the export drops enc_q, casts to fp16, stamps the header."""
    for f in _sovits_files(parity_dir):
        ck = load_sovits_checkpoint(f)
        state = {k: v.float() for k, v in ck.weight.items()}
        state["enc_q.pre.weight"] = torch.zeros(4, 4, 1)
        out = save_sovits_checkpoint(tmp_path / "x.pth", state, ck.config, "3epoch_30iteration", ck.model_version)
        back = load_sovits_checkpoint(out)
        assert back.header == ck.header and back.model_version == ck.model_version
        assert "enc_q.pre.weight" not in back.weight
        assert all(t.dtype == torch.float16 for t in back.weight.values())
        assert back.info == "3epoch_30iteration" and back.config == ck.config


def test_atomic_save_keeps_existing_file_on_failure(parity_dir, tmp_path, monkeypatch):
    ck = load_gpt_checkpoint(_gpt_files(parity_dir)[0])
    target = ck.save(tmp_path / "keep.ckpt")
    before = target.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        ck.save(target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.ckpt"], "no temporary file may be left behind"


# ---------------------------------------------------------------------------------------------------------------
# Malicious and broken files
# ---------------------------------------------------------------------------------------------------------------


class _RunsCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("header", [b"PK", b"05"])
@pytest.mark.parametrize("loader", [load_sovits_checkpoint, load_gpt_checkpoint, load_sv_state_dict])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, header, loader):
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"weight": {"x": torch.zeros(1)}, "config": _RunsCommand(marker), "info": "x"}, buf)
    data = header + buf.getvalue()[2:]
    evil = tmp_path / "evil.pth"
    evil.write_bytes(data)
    with pytest.raises(CheckpointError) as err:
        loader(evil)
    assert "system" in str(err.value) and "nothing in it was executed" in str(err.value)
    assert str(evil) in str(err.value)
    assert not marker.exists()


def test_malicious_legacy_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"weight": _RunsCommand(marker)}, protocol=2))
    with pytest.raises(CheckpointError):
        load_gpt_checkpoint(evil)
    assert not marker.exists()


def test_unrestricted_torch_load_would_have_run_it(tmp_path):
    """Guards the two tests above: the planted payload is live, so refusing it is what protects the user."""
    marker = tmp_path / "ran"
    buf = io.BytesIO()
    torch.save({"config": _RunsCommand(marker)}, buf)
    torch.load(io.BytesIO(buf.getvalue()), weights_only=False)
    assert marker.exists()


def test_missing_empty_truncated_and_foreign_files(parity_dir, tmp_path):
    good = _raw_bytes(_sovits_files(parity_dir)[0])
    cases = {
        "missing.pth": None,
        "empty.pth": b"",
        "truncated.pth": good[: len(good) // 3],
        "tiny.pth": good[:10],
        "audio.pth": b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 64,
        "text.pth": "这不是模型\n".encode() * 20,
        "unknownheader.pth": b"99" + good[2:],
    }
    for name, data in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(CheckpointError) as err:
            load_sovits_checkpoint(path)
        msg = str(err.value)
        assert str(path) in msg, msg
        assert "SoVITS" in msg or "missing" in name, msg
    folder = tmp_path / "adir"
    folder.mkdir()
    with pytest.raises(CheckpointError, match="folder"):
        load_gpt_checkpoint(folder)


def test_wrong_kind_is_named(parity_dir, tmp_path):
    gpt = _gpt_files(parity_dir)[0]
    sovits = _sovits_files(parity_dir)[0]
    with pytest.raises(CheckpointError, match="GPT"):
        load_sovits_checkpoint(gpt)
    with pytest.raises(CheckpointError, match="SoVITS"):
        load_gpt_checkpoint(sovits)
    with pytest.raises(CheckpointError, match="ERes2NetV2"):
        load_sv_state_dict(gpt)
    random_sd = tmp_path / "random.pth"
    torch.save({"fc.weight": torch.randn(3, 3)}, random_sd)
    with pytest.raises(CheckpointError):
        load_sovits_checkpoint(random_sd)
    with pytest.raises(CheckpointError):
        load_gpt_checkpoint(random_sd)


@pytest.mark.parametrize("header,version", [(b"03", "v3"), (b"04", "v4"), (b"02", "v3")])
def test_v3_v4_files_are_recognised_and_refused_clearly(parity_dir, tmp_path, header, version):
    ck = load_sovits_checkpoint(_sovits_files(parity_dir)[-1])
    weight = dict(ck.weight)
    if header == b"02":
        weight["cfm.estimator.proj_out.weight"] = torch.zeros(2, 2, dtype=torch.float16)
    buf = io.BytesIO()
    payload = {"weight": weight, "config": ck.config, "info": "x"}
    if header in (b"03", b"04"):
        payload["lora_rank"] = 32
    torch.save(payload, buf)
    f = tmp_path / f"{version}.pth"
    f.write_bytes(header + buf.getvalue()[2:])
    with pytest.raises(UnsupportedVersionError, match=version) as err:
        load_sovits_checkpoint(f)
    assert "not supported yet" in str(err.value)


def test_header_contradicting_weights(parity_dir, tmp_path):
    plain = [f for f in _sovits_files(parity_dir) if _raw_bytes(f)[:2] == b"PK"]
    if not plain:
        pytest.skip("fixture set has no plain v1/v2 file")
    f = tmp_path / "liar.pth"
    f.write_bytes(b"05" + _raw_bytes(plain[0])[2:])
    with pytest.raises(CheckpointError, match="sv_emb"):
        load_sovits_checkpoint(f)
