"""SoVITS v3/v4 in the TTS tab, through its HTTP API (gradio_client) on the tiny v3/v4 fixture models: a v3 LoRA
voice synthesises at 24 kHz with the form's sample steps; the form shows sample steps for v3/v4 only and
super-sampling only for v3 with its weights; a model without its vocoder and a LoRA file without its base model
give a readable message naming the missing file, and the app keeps serving."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import soundfile as sf

from helpers.v34 import build_v34_home
from test_app import REF_TEXT, TEXT, app_settings, serve_app


@pytest.fixture(scope="module")
def served(tmp_path_factory, parity_dir, tiny_assets):
    from gradio_client import Client

    root = tmp_path_factory.mktemp("app_v34")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(root / "gradio_tmp"))
    files = build_v34_home(root, parity_dir)
    base = app_settings(root, parity_dir, tiny_assets, with_models=False)
    settings = dataclasses.replace(base, sovits_weight_dirs=(*base.sovits_weight_dirs, files["v3_lora"].parent,
                                                             files["v4_lora"].parent))
    app = serve_app(settings)
    try:
        yield {"app": app, "client": Client(app.local_url, verbose=False), "files": files,
               "services": app.gsv_services}
    finally:
        app.close()


def _params(served, tiny_assets, sovits, **kw):
    from gradio_client import handle_file

    services = served["services"]
    label = getattr(services, "model_choice", lambda path, kind: path)  # the dropdowns' values are list labels
    values = dict(gpt=label(str(served["files"]["gpt"].resolve()), "GPT"), sovits=label(str(sovits.resolve()), "SoVITS"),
                  ref_audio=handle_file(str(tiny_assets["ref"])), ref_text=REF_TEXT, ref_lang="zh", aux_refs=[],
                  text=TEXT, text_lang="zh", split="cut5", top_k=15, top_p=1.0, temperature=1.0,
                  repetition_penalty=1.35, speed=1.0, pause=0.3, seed=1234, random_seed=False, max_tokens=8,
                  noise_scale=0.5, batch_size=8, parallel=True, sample_steps=2, super_sampling=False)
    values.update(kw)
    return list(values.values())


def test_v34_models_are_listed_and_the_form_adapts(served):
    from pages.tts import sovits_form_options

    services, files = served["services"], served["files"]
    labels = [label for label, _ in services.sovits_choices()]
    assert "SoVITS_weights_v3/lora_v3.pth" in labels and "pretrained v3 · s2Gv3.pth" in labels
    assert "pretrained v4 · s2Gv4.pth" in labels and not any("vocoder" in label for label in labels)
    steps, sr = sovits_form_options(services, str(files["v3"].resolve()), 64, True)
    assert steps["visible"] and steps["value"] == 64 and [v for _, v in steps["choices"]] == [0, 4, 8, 16, 32, 64, 128]
    assert sr["visible"] is False and sr["value"] is False  # no AP-BWE weights installed
    steps, _ = sovits_form_options(services, str(files["v4_lora"].resolve()), 64, False)
    assert steps["value"] == 0 and [v for _, v in steps["choices"]] == [0, 4, 8, 16, 32]  # 64 is not a v4 choice
    steps, sr = sovits_form_options(services, "/etc/passwd", 8, False)
    assert steps["visible"] is False and sr["visible"] is False


def test_v3_lora_synthesis_through_the_api(served, tiny_assets):
    audio, info, download, seed_used, *_ = served["client"].predict(
        *_params(served, tiny_assets, served["files"]["v3_lora"]), api_name="/tts")
    data, sr = sf.read(audio)
    assert sr == 24000 and len(data) > 0 and seed_used == 1234 and "seed 1234" in info
    entry = served["services"].history.entries()[0]
    assert entry.version == "v3" and entry.params["sample_steps"] == 2
    # an older API caller that sends only the inputs before sample_steps gets the defaults
    short = _params(served, tiny_assets, served["files"]["v3_lora"])[:-2]
    from pages.tts import form_values

    fields, _ = form_values(short)
    assert fields["sample_steps"] is None and fields["super_sampling"] is None


@pytest.mark.parametrize("case, missing", [("vocoder", "vocoder.pth"), ("lora_base", "s2Gv4.pth")])
def test_missing_files_are_named(served, tiny_assets, case, missing):
    files = served["files"]
    moved = files["v4_vocoder"] if case == "vocoder" else files["v4"]
    sovits = files["v4"] if case == "vocoder" else files["v4_lora"]
    hidden = moved.with_name(moved.name + ".away")
    moved.rename(hidden)
    try:
        with pytest.raises(Exception) as err:
            served["client"].predict(*_params(served, tiny_assets, sovits), api_name="/tts")
        assert missing in str(err.value)
        if case == "lora_base":
            assert "LoRA" in str(err.value)
    finally:
        hidden.rename(moved)
    audio, *_ = served["client"].predict(*_params(served, tiny_assets, files["v3_lora"]), api_name="/tts")
    assert sf.info(audio).samplerate == 24000  # still serving


FT_KEYS = ("name", "version", "list_file", "list_path", "audio_dir", "lang", "min_s", "max_s", "min_snr", "ref_min",
           "ref_max", "val_frac", "test_frac", "split_seed", "pre_s1", "pre_s2g", "pre_s2d", "bert_dir", "hubert_dir",
           "sv_path", "s2_bs", "s2_epochs", "s2_save", "s2_text_lr", "s1_bs", "s1_epochs", "s1_save", "lora",
           "lora_rank", "device", "precision", "asr_check")


def test_finetune_tab_offers_v34_lora_rank_and_dpo(served):
    """The Finetune tab's v3 settings (SoVITS LoRA rank, GPT DPO; no text-module lr) reach the experiment; the
    inputs added for them come after the older ones in the API order."""
    import json

    from gsv_core.finetune.layout import ExperimentLayout

    services = served["services"]
    settings = services.settings
    data = next(Path(d) for d in settings.data_dirs)
    data.mkdir(parents=True, exist_ok=True)
    lst = data / "voice.list"
    lst.write_text("/nowhere/a.wav|spk|zh|你好。\n", encoding="utf-8")
    values = dict(name="ft_v3", version="v3", list_file=None, list_path=str(lst), audio_dir="", lang="zh",
                  min_s=1.2, max_s=15.0, min_snr=12.0, ref_min=3.0, ref_max=5.0, val_frac=0.05, test_frac=0.05,
                  split_seed=1, pre_s1="", pre_s2g="", pre_s2d="", bert_dir="", hubert_dir="", sv_path="", s2_bs=2,
                  s2_epochs=2, s2_save=1, s2_text_lr=0.4, s1_bs=2, s1_epochs=1, s1_save=1, lora=False, lora_rank=32,
                  device="cpu", precision="fp32", asr_check=False)
    assert tuple(values) == FT_KEYS
    # the SoVITS stage starts (and fails at once: no features yet), after saving the experiment's settings
    status, *_ = served["client"].predict(*values.values(), None, 5, 16, True, api_name="/finetune_s2")
    saved = json.loads(ExperimentLayout.under(settings.experiments_dir, "ft_v3").experiment_json.read_text())
    cfg = saved["config"]
    assert cfg["version"] == "v3" and cfg["s2"]["lora_rank"] == 16 and "text_low_lr_rate" not in cfg["s2"]
    assert cfg["s1"]["dpo"] is True and cfg["s2"]["epochs"] == 2
    assert "feature" in status.lower() or "2-name2text" in status
    loaded = served["client"].predict("ft_v3", api_name="/finetune_load")
    late = [v["value"] if isinstance(v, dict) else v for v in loaded[-2:]]
    assert late == [16, True]  # the late inputs come back last
