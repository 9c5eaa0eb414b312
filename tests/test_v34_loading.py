"""SoVITS v3/v4 files outside the happy path: LoRA files without their base model, models without their vocoder,
unsafe files, saving in upstream's formats, inspect output, AP-BWE super-sampling's interface."""
from __future__ import annotations

import io
import json
import lzma
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gsv_core import inspect as gsv_inspect
from gsv_core.checkpoints import load_any_checkpoint, load_sovits_checkpoint
from gsv_core.engine import cfm_decode as cd
from gsv_core.errors import CheckpointError, GSVError, ModelMismatchError
from gsv_core.loading import find_lora_base, find_vocoder, load_sovits, load_vocoder
from gsv_core.models import ap_bwe
from gsv_core.versions import inference_versions

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fx() -> Path:
    raw = os.environ.get("GSV_PARITY_V34_DIR")
    d = Path(raw).expanduser().resolve() if raw else (REPO / ".." / "shared" / "fixtures" / "gsv_parity_v34").resolve()
    if not (d / "weights_index.json").is_file():
        pytest.fail(f"v3/v4 parity fixture folder not found: {d} (set GSV_PARITY_V34_DIR)")
    return d


@pytest.fixture(scope="module")
def files(fx):
    index = json.loads((fx / "weights_index.json").read_text())
    return {k: fx / v["file"] for k, v in index.items()}


def _raw(path: Path) -> bytes:
    data = path.read_bytes()
    return lzma.decompress(data) if path.suffix == ".xz" else data


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A working directory with nothing in it, so no pretrained folder is found by accident."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_lora_without_base_names_the_missing_file(files, isolated):
    for v in ("v3", "v4"):
        lora = isolated / "weights" / f"my_{v}_lora.pth"
        lora.parent.mkdir(exist_ok=True)
        lora.write_bytes(_raw(files[f"{v}_lora"]))
        ck = load_sovits_checkpoint(lora)
        assert ck.is_lora and ck.model_version == v and ck.lora_rank > 0
        expected = "s2Gv3.pth" if v == "v3" else "s2Gv4.pth"
        with pytest.raises(CheckpointError, match=expected) as err:
            load_sovits(lora)
        assert "LoRA" in str(err.value) and "not found" in str(err.value)


def test_lora_base_is_found_in_the_pretrained_layout(files, isolated):
    pre = isolated / "pretrained_models"
    (pre / "gsv-v4-pretrained").mkdir(parents=True)
    (pre / "s2Gv3.pth").write_bytes(_raw(files["v3_base"]))
    (pre / "gsv-v4-pretrained" / "s2Gv4.pth").write_bytes(_raw(files["v4_base"]))
    lora_dir = isolated / "elsewhere"
    lora_dir.mkdir()
    for v in ("v3", "v4"):
        lora = lora_dir / f"{v}.pth"
        lora.write_bytes(_raw(files[f"{v}_lora"]))
        ck = load_sovits_checkpoint(lora)
        base = find_lora_base(ck, [pre])
        assert base.name == ("s2Gv3.pth" if v == "v3" else "s2Gv4.pth")
        model, info = load_sovits(lora, search_dirs=[pre])
        assert info.base == base and info.lora_rank == ck.lora_rank
    # a base of the other version is refused
    with pytest.raises(ModelMismatchError, match="v3"):
        load_sovits(lora_dir / "v4.pth", base_path=pre / "s2Gv3.pth")


def test_model_without_vocoder_names_the_missing_file(isolated):
    with pytest.raises(CheckpointError, match="bigvgan_v2_24khz_100band_256x") as err:
        find_vocoder("v3", [isolated])
    assert "bigvgan_generator.pt" in str(err.value)
    with pytest.raises(CheckpointError, match="vocoder.pth"):
        find_vocoder("v4", [isolated])
    with pytest.raises(CheckpointError, match="vocoder not found"):
        load_vocoder("v3", isolated / "models--nvidia--bigvgan_v2_24khz_100band_256x")
    empty = isolated / "models--nvidia--bigvgan_v2_24khz_100band_256x"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="bigvgan_generator.pt"):
        load_vocoder("v3", empty)


def test_vocoders_found_in_the_pretrained_layout(fx, files, isolated):
    pre = isolated / "pretrained_models"
    big = pre / "models--nvidia--bigvgan_v2_24khz_100band_256x"
    big.mkdir(parents=True)
    shutil.copy(fx / "bigvgan_tiny" / "config.json", big / "config.json")
    (big / "bigvgan_generator.pt").write_bytes(_raw(files["bigvgan"]))
    (pre / "gsv-v4-pretrained").mkdir()
    (pre / "gsv-v4-pretrained" / "vocoder.pth").write_bytes(_raw(files["v4_vocoder"]))
    assert find_vocoder("v3", [pre]) == big
    assert find_vocoder("v4", [isolated]) == pre / "gsv-v4-pretrained" / "vocoder.pth"
    assert load_vocoder("v3", big).sample_rate == 24000
    assert load_vocoder("v4", find_vocoder("v4", [pre])).hop == 480


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned_v34",))


def test_malicious_lora_file_is_refused(isolated):
    buf = io.BytesIO()
    torch.save({"weight": {"x": torch.zeros(1)}, "config": _Evil(), "info": "", "lora_rank": 4}, buf,
               pickle_module=pickle)
    f = isolated / "evil.pth"
    f.write_bytes(b"03" + buf.getvalue()[2:])
    with pytest.raises(CheckpointError, match="Refusing"):
        load_sovits_checkpoint(f)
    with pytest.raises(CheckpointError):
        load_sovits(f)
    assert not (isolated / "pwned_v34").exists()


def test_save_round_trip_keeps_upstream_headers(files, tmp_path):
    for v in ("v3", "v4"):
        for kind, header in (("base", b"PK"), ("lora", b"03" if v == "v3" else b"04")):
            ck = load_sovits_checkpoint(files[f"{v}_{kind}"])
            out = ck.save(tmp_path / f"{v}_{kind}.pth")
            assert out.read_bytes()[:2] == header
            again = load_sovits_checkpoint(out)
            assert again.model_version == v and again.is_lora == (kind == "lora")
            assert again.lora_rank == ck.lora_rank and list(again.weight) == list(ck.weight)
            assert all(torch.equal(again.weight[k], ck.weight[k]) for k in ck.weight)


def test_mixed_and_empty_lora_files_are_refused(files, tmp_path):
    ck = load_sovits_checkpoint(files["v3_lora"])
    weight = {k: t for k, t in ck.weight.items() if ".lora_" not in k}
    buf = io.BytesIO()
    torch.save({"weight": weight, "config": ck.config, "info": "", "lora_rank": 4}, buf)
    f = tmp_path / "nolora.pth"
    f.write_bytes(b"03" + buf.getvalue()[2:])
    with pytest.raises(CheckpointError, match="no LoRA tensors"):
        load_sovits_checkpoint(f)


def test_inspect_names_v34_files(fx, files, capsys):
    paths = [files["v3_base"], files["v4_base"], files["v3_lora"], files["v4_lora"], fx / "bigvgan_tiny",
             files["v4_vocoder"]]
    assert gsv_inspect.main([str(p) for p in paths] + ["--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [r["kind"] for r in rows]
    assert "SoVITS v3 weights" in kinds[0] and "SoVITS v4 weights" in kinds[1]
    assert "v3 LoRA" in kinds[2] and "v4 LoRA" in kinds[3]
    assert rows[2]["config"]["base_model"] == "s2Gv3.pth" and rows[3]["config"]["lora_rank"] > 0
    assert "BigVGAN" in kinds[4] and rows[4]["version"] == "v3"
    assert "v4 vocoder" in kinds[5]
    assert isinstance(load_any_checkpoint(files["v4_vocoder"]), dict)


def test_versions_and_decode_guard(files):
    assert {"v3", "v4"} <= set(inference_versions())
    model, info = load_sovits(files["v3_base"])
    assert info.version == "v3" and info.symbol_version == "v2"
    with pytest.raises(GSVError, match="cfm_decode"):
        model.decode(None, None, None)


def test_inference_mode_leaves_no_cache_for_training(files, fx):
    """Running the v3 path under inference_mode and then training the same model must work (no inference tensors
    cached in modules, e.g. the weight-normalised wns1 convolutions)."""
    model, _ = load_sovits(files["v3_base"])
    inputs = np.load(fx / "v34_inputs.npz")
    specs = np.load(fx / "v34_refer_spec.npz")
    ref_key = next(k for k in specs.files)
    codes = torch.from_numpy(inputs["tgt_lora_codes"])[None, None]
    phones = torch.from_numpy(inputs["tgt_lora_phones"])[None]
    with torch.inference_mode():
        ge = model.timbre(torch.from_numpy(specs[ref_key]))
        fea = model.encode(codes, phones, ge)
        model.cfm.inference(fea.transpose(1, 2), torch.zeros(1, 100, 10), 1)
    model.train()
    ge = model.timbre(torch.from_numpy(specs[ref_key]))
    x = model.wns1(torch.randn(1, model.widths.fea_channels, 20), torch.ones(1, 1, 20), ge)
    h = model.cfm.estimator.text_embed(x.transpose(1, 2))
    (x.square().mean() + h.square().mean()).backward()
    assert model.wns1.enc.in_layers[0].weight_v.grad is not None


def test_super_sampler_interface(tmp_path):
    with pytest.raises(CheckpointError, match="g_24kto48k.zip"):
        ap_bwe.load_super_sampler(tmp_path)
    assert not cd.super_sampler_available(tmp_path)
    config = {"ConvNeXt_channels": 16, "ConvNeXt_layers": 2, "n_fft": 64, "hop_size": 8, "win_size": 32,
              "hr_sampling_rate": 48000, "lr_sampling_rate": 24000}
    torch.manual_seed(0)
    model = ap_bwe.APNetBWE(config)
    torch.save({"generator": model.state_dict()}, tmp_path / "g_24kto48k.zip")
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert cd.super_sampler_available(tmp_path)
    sampler = ap_bwe.load_super_sampler(tmp_path)
    t = np.arange(24000) / 24000
    audio, sr = sampler(torch.from_numpy((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)), 24000)
    assert sr == 48000 and audio.dtype == np.float32 and abs(len(audio) - 48000) <= config["hop_size"]
    assert np.isfinite(audio).all()
