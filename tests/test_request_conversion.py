"""One request schema, one conversion: the TTS form, a batch-CSV row, an eval system in YAML and a RefAudio sweep
cell, given the same settings as their own raw values, become identical SynthesisRequests; a bad or unknown field
is one clear message that names it (issue 13)."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from gsv_core.batch import ROW_COLUMNS, row_request
from gsv_core.engine.request import PARAMETERS, RequestError, SynthesisRequest

EXPECTED = SynthesisRequest(text="今天天气很好。", ref_audio="/r/ref.wav", ref_text="参考。", ref_lang="zh",
                            text_lang="all_zh", gpt_path="/w/g.ckpt", sovits_path="/w/s.pth", split_method="cut2",
                            top_k=7, top_p=0.9, temperature=0.8, repetition_penalty=1.2, speed=1.1, noise_scale=0.3,
                            pause=0.4, seed=42, batch_size=4, parallel=False, max_tokens=300)


def test_every_field_has_a_parser_and_defaults_come_from_the_schema():
    assert set(PARAMETERS) == {f.name for f in dataclasses.fields(SynthesisRequest)}
    d = SynthesisRequest.defaults()
    assert d["top_k"] == 15 and d["noise_scale"] == 0.5 and d["max_tokens"] is None and d["split_method"] == "cut1"
    assert {"split_method", "noise_scale", "batch_size", "parallel", "max_tokens", "aux_refs"} <= set(ROW_COLUMNS)


def test_form_values_as_the_tts_tab_sends_them():
    from pages.tts import form_values

    # the order of the /tts API; Gradio gives floats for sliders and numbers
    values = ["/w/g.ckpt", "/w/s.pth", "/r/ref.wav", "参考。", "zh", [], "今天天气很好。", "all_zh", "cut2", 7.0, 0.9,
              0.8, 1.2, 1.1, 0.4, 42.0, False, 300.0, 0.3, 4.0, False]
    fields, random_seed = form_values(values)
    assert not random_seed
    assert SynthesisRequest.from_mapping(fields) == EXPECTED


def test_csv_row_sets_split_and_noise_scale():
    base = SynthesisRequest(ref_audio="/r/ref.wav", ref_text="参考。", gpt_path="/w/g.ckpt", sovits_path="/w/s.pth",
                            seed=42, batch_size=4, parallel=False)
    row = {"id": "l1", "text": "今天天气很好。", "lang": "all_zh", "split_method": "cut2", "top_k": "7", "top_p": "0.9",
           "temperature": "0.8", "repetition_penalty": "1.2", "speed": "1.1", "noise_scale": "0.3", "pause": "0.4",
           "max_tokens": "300", "seed": ""}  # an empty cell keeps the base value
    assert row_request(base, row, 2) == EXPECTED.replace(id="l1")


def test_yaml_system_of_an_eval_run():
    from eval.run import RunConfig

    text = yaml.safe_dump({"top_k": 7, "top_p": 0.9, "temperature": 0.8, "repetition_penalty": 1.2, "speed": 1.1,
                           "noise_scale": 0.3, "pause": 0.4, "split_method": "cut2", "max_tokens": 300,
                           "batch_size": 4, "parallel": False, "ref_lang": "zh"})
    params = yaml.safe_load(text)
    base = SynthesisRequest(text="今天天气很好。", ref_audio="/r/ref.wav", ref_text="参考。", text_lang="all_zh",
                            gpt_path="/w/g.ckpt", sovits_path="/w/s.pth", seed=42)
    assert SynthesisRequest.from_mapping(params, base) == EXPECTED
    with pytest.raises(Exception, match="top_kk"):
        RunConfig.from_dict({"test_csv": "x.csv", "asr_model": "m", "systems": [
            {"name": "a", "gpt": "g", "sovits": "s", "top_kk": 5}]})


def test_sweep_cell_as_stored_by_refaudio():
    from refaudio.sweeps import PARAM_DEFAULTS, _check_value

    cell = {"top_k": "7", "top_p": 0.9, "temperature": "0.8", "repetition_penalty": 1.2, "speed": "1.1",
            "noise_scale": 0.3, "pause": 0.4, "split_method": "cut2", "max_tokens": "300", "batch_size": 4,
            "parallel": "false"}
    checked = {k: _check_value(k, v) for k, v in cell.items()}
    assert set(checked) <= set(PARAM_DEFAULTS)
    base = SynthesisRequest(text="今天天气很好。", ref_audio="/r/ref.wav", ref_text="参考。", text_lang="all_zh",
                            gpt_path="/w/g.ckpt", sovits_path="/w/s.pth", seed=42)
    assert SynthesisRequest.from_mapping(checked, base, skip_empty=False) == EXPECTED


@pytest.mark.parametrize("values, named", [
    ({"top_k": "nan"}, "top_k: expected a finite number"),
    ({"top_k": 2.5}, "top_k: expected a whole number"),
    ({"speed": "fast"}, "speed: expected a number"),
    ({"parallel": "maybe"}, "parallel: expected true/false"),
    ({"text_lang": "klingon"}, "text_lang: unknown language 'klingon'"),
    ({"split": "cut9"}, "split: unknown split method 'cut9'"),
    ({"nosie_scale": 0.3}, "unknown parameter(s) nosie_scale"),
    ({"seed": float("inf")}, "seed: expected a finite number"),
])
def test_bad_or_unknown_fields_are_named(values, named):
    with pytest.raises(RequestError) as err:
        SynthesisRequest.from_mapping(values, where="line 3")
    assert named in str(err.value) and str(err.value).startswith("line 3: ")


def test_all_problems_in_one_message_and_ranges_checked_by_validate():
    with pytest.raises(RequestError) as err:
        SynthesisRequest.from_mapping({"top_k": "x", "top_p": "y", "foo": 1})
    msg = str(err.value)
    assert "top_k" in msg and "top_p" in msg and "foo" in msg
    req = SynthesisRequest.from_mapping({"text": "你好", "ref_audio": "r.wav", "top_p": 3})
    with pytest.raises(RequestError, match="top_p must be in"):
        req.validate()


def test_to_mapping_round_trips():
    assert SynthesisRequest.from_mapping(EXPECTED.to_mapping(), skip_empty=False) == EXPECTED
