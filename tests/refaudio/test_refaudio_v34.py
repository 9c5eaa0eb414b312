"""RefAudio sweeps over the SoVITS v3/v4 settings on the tiny v3 fixture model: a sample-steps sweep and a
super-sampling (upstream's if_sr) sweep, end to end through the engine's batched path."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from ra_helpers import REF_TEXT
from refaudio.sweeps import PARAM_DEFAULTS, SINGLE_VARIABLES, SweepError, TaskSpec


def test_v34_settings_are_sweep_variables():
    assert {"sample_steps", "super_sampling"} <= set(SINGLE_VARIABLES)
    assert PARAM_DEFAULTS["sample_steps"] is None and PARAM_DEFAULTS["super_sampling"] is False


def test_sample_steps_and_super_sampling_sweeps(tmp_path, parity_dir, tiny_assets):
    from config import load_settings
    from gsv_core.api import Engine
    from gsv_core.models import ap_bwe
    from helpers.v34 import build_v34_home
    from refaudio.service import RefAudioService

    files = build_v34_home(tmp_path, parity_dir)
    folder = files["pretrained"] / "AP_BWE_main" / "24kto48k"  # tiny AP-BWE weights for the if_sr sweep
    folder.mkdir(parents=True)
    config = {"ConvNeXt_channels": 16, "ConvNeXt_layers": 1, "n_fft": 64, "hop_size": 8, "win_size": 32,
              "hr_sampling_rate": 48000, "lr_sampling_rate": 24000}
    torch.manual_seed(0)
    torch.save({"generator": ap_bwe.APNetBWE(config).state_dict()}, folder / "g_24kto48k.zip")
    (folder / "config.json").write_text(json.dumps(config))
    settings = load_settings(environ={"GSV_HOME": str(tmp_path), "GSV_REFAUDIO_DB": str(tmp_path / "ra" / "l.db"),
                                      "GSV_OUTPUT_DIR": str(tmp_path / "out")}, my_config=tmp_path / "none.py")
    engine = Engine.open(settings, device="cpu", precision="fp32", bert_dir=tiny_assets["bert"],
                         hubert_dir=tiny_assets["hubert"], log_path=None)
    svc = RefAudioService(settings, engine=engine, auto_resume=False, sv_path=tiny_assets["sv"])
    try:
        role = svc.create_role("v3", "voice")
        ref, _ = svc.library.add_clip(role, tiny_assets["ref"], REF_TEXT, "zh")
        base = {"gpt_path": str(files["gpt"]), "sovits_path": str(files["v3_lora"]), "max_tokens": 8,
                "split_method": "cut0", "top_k": 1, "sample_steps": 2}
        texts = [("今天天气很好。", "zh")]
        with pytest.raises(SweepError, match="sample_steps"):
            svc.create_task(TaskSpec(role, "bad", "sample_steps", base, texts, [2, 500], ref_clip_ids=[ref]))
        steps = svc.create_task(TaskSpec(role, "steps", "sample_steps", base, texts, ["2", 4], ref_clip_ids=[ref]))
        if_sr = svc.create_task(TaskSpec(role, "if_sr", "super_sampling", base, texts, ["false", "true"],
                                         ref_clip_ids=[ref]))
        assert [json.loads(c["params"])["sample_steps"] for c in svc.sweeps.cells(steps)] == [2, 4]
        assert [json.loads(c["params"])["super_sampling"] for c in svc.sweeps.cells(if_sr)] == [False, True]
        for task in (steps, if_sr):
            svc.start_task(task)
            assert svc.queue.wait(task, 600).state == "done", svc.task_status(task)
            assert svc.task_status(task)["counts"]["done"] == 2, svc.task_status(task)
        by_cell = {r["cell_label"]: r for r in svc.list_results(steps)}
        a, sr_a = sf.read(svc.result_audio(by_cell["sample_steps=2"]["id"]))
        b, sr_b = sf.read(svc.result_audio(by_cell["sample_steps=4"]["id"]))
        assert sr_a == sr_b == 24000 and a.shape == b.shape and not np.allclose(a, b)  # same tokens, other steps
        by_cell = {r["cell_label"]: r for r in svc.list_results(if_sr)}
        plain, sr_plain = sf.read(svc.result_audio(by_cell["super_sampling=false"]["id"]))
        wide, sr_wide = sf.read(svc.result_audio(by_cell["super_sampling=true"]["id"]))
        assert (sr_plain, sr_wide) == (24000, 48000) and abs(len(wide) - 2 * len(plain)) <= 16
        # a product of the super-sampled result keeps both settings; its api_v2 request carries upstream's fields
        pid = svc.product_from_result(by_cell["super_sampling=true"]["id"], "v3 wide")
        values = svc.product_request_values(pid)
        assert values["sample_steps"] == 2 and values["super_sampling"] is True
        preset, api, _ = svc.products.documents(pid)
        assert api["request"]["sample_steps"] == 2 and api["request"]["super_sampling"] is True
    finally:
        svc.close()
