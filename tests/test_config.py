"""config.py: typed defaults < my_config.py < GSV_* environment variables; clear errors for bad values."""
from __future__ import annotations

from pathlib import Path

import pytest

from config import Settings, load_settings


def test_defaults_are_resolved_under_the_root(tmp_path):
    s = load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=tmp_path / "none.py")
    assert s.host == "127.0.0.1" and s.device == "auto" and s.precision == "auto"
    assert s.bert_dir == tmp_path / "pretrained_models" / "chinese-roberta-wwm-ext-large"
    assert all(p.is_absolute() and str(p).startswith(str(tmp_path)) for p in s.gpt_weight_dirs)


def test_my_config_then_environment(tmp_path):
    mc = tmp_path / "my_config.py"
    mc.write_text('PORT = 9900\nDEVICE = "cpu"\nBERT_DIR = "/models/bert"\nUSE_G2PW = False\n')
    s = load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=mc)
    assert (s.port, s.device, s.bert_dir, s.use_g2pw) == (9900, "cpu", Path("/models/bert"), False)
    s = load_settings(environ={"GSV_HOME": str(tmp_path), "GSV_PORT": "9911", "GSV_USE_G2PW": "yes"}, my_config=mc)
    assert s.port == 9911 and s.use_g2pw is True and s.device == "cpu"
    s = load_settings(environ={"GSV_HOME": str(tmp_path), "GSV_GPT_WEIGHT_DIRS": "/a:/b", "GSV_USER_DICT_PATH": "d.txt"}, my_config=mc)
    assert s.gpt_weight_dirs == (Path("/a"), Path("/b")) and s.user_dict_path == tmp_path / "d.txt"


@pytest.mark.parametrize(
    "env,match",
    [({"GSV_PORT": "eighty"}, "port"), ({"GSV_PRECISION": "fp8"}, "precision"), ({"GSV_DEVICE": "tpu"}, "device"),
     ({"GSV_SHARE": "maybe"}, "share")],
)
def test_bad_values_name_the_setting(tmp_path, env, match):
    with pytest.raises(ValueError, match=match):
        load_settings(environ={"GSV_HOME": str(tmp_path), **env}, my_config=tmp_path / "none.py")


def test_unknown_name_in_my_config(tmp_path):
    mc = tmp_path / "my_config.py"
    mc.write_text("PROT = 1\n")
    with pytest.raises(ValueError, match="unknown setting PROT"):
        load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=mc)


def test_settings_is_frozen():
    with pytest.raises(Exception):
        Settings().port = 1  # type: ignore[misc]


def test_pretrained_dir_alone_moves_every_feature_model(tmp_path):
    """Issue 12 item 3: PRETRAINED_DIR points at an existing GPT-SoVITS pretrained_models folder and BERT, HuBERT,
    the SV model, G2PW and the Whisper folder follow it; a setting of its own still wins."""
    my = tmp_path / "my_config.py"
    my.write_text('PRETRAINED_DIR = "/gsv/pretrained_models"\nHUBERT_DIR = "/elsewhere/hubert"\n', encoding="utf-8")
    s = load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=my)
    base = Path("/gsv/pretrained_models")
    assert s.bert_dir == base / "chinese-roberta-wwm-ext-large"
    assert s.sv_path == base / "sv" / "pretrained_eres2netv2w24s4ep4.ckpt"
    assert (s.g2pw_dir, s.whisper_dir) == (base / "G2PWModel", base / "faster-whisper")
    assert s.hubert_dir == Path("/elsewhere/hubert")
    env = load_settings(environ={"GSV_HOME": str(tmp_path), "GSV_PRETRAINED_DIR": "models"}, my_config=tmp_path / "x.py")
    assert env.bert_dir == tmp_path / "models" / "chinese-roberta-wwm-ext-large"


def test_missing_feature_model_names_real_settings(tmp_path):
    from gsv_core.engine import ModelRegistry
    from gsv_core.errors import GSVError

    s = load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=tmp_path / "x.py")
    registry = ModelRegistry(s, device="cpu", precision="fp32")
    with pytest.raises(GSVError) as err:
        registry.speaker()
    assert "SV_PATH" in str(err.value) and "PRETRAINED_DIR" in str(err.value) and "SV_DIR" not in str(err.value)
    with pytest.raises(GSVError, match="BERT_DIR"):
        registry.bert()
