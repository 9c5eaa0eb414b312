"""Parity of the BERT phone features and the HuBERT content features with upstream (fixture README §4).

BERT cases are discovered from bert_cases.json and must all have their arrays in bert_expected.npz; every array
in hubert_expected.npz must be reproduced.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from gsv_core.errors import CheckpointError, GSVError
from gsv_core.features.bert import BertPhoneFeatures
from gsv_core.features.hubert import HubertContent

BERT_ATOL, BERT_RTOL = 1e-5, 1e-4
HUBERT_ATOL, HUBERT_RTOL = 1e-4, 1e-4


def _close(actual: torch.Tensor, expected: np.ndarray, atol: float, rtol: float, what: str) -> None:
    actual = actual.detach().float().cpu().numpy()
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol, err_msg=what)


# ---------------------------------------------------------------------------------------------------------- BERT


@pytest.fixture(scope="module")
def bert_data(parity_dir):
    cases = json.loads((parity_dir / "bert_cases.json").read_text(encoding="utf-8"))
    expected = dict(np.load(parity_dir / "bert_expected.npz"))
    return cases, expected


@pytest.fixture(scope="module")
def bert(parity_dir):
    return BertPhoneFeatures(parity_dir / "bert_tiny")


@pytest.fixture(scope="module")
def feature_cases(bert_data):
    cases, expected = bert_data
    found = {f"s{c['idx']:02d}": c for c in cases["bert_feature_cases"]}
    assert found, "bert_cases.json lists no bert_feature_cases"
    in_npz = {k.split("_", 1)[0] for k in expected if re.fullmatch(r"s\d+_.*", k)}
    assert in_npz == set(found), f"sNN cases: JSON {sorted(found)} vs npz {sorted(in_npz)}"
    return found


def test_input_ids_and_hidden_layer(bert, bert_data, feature_cases):
    _, expected = bert_data
    hidden = bert.char_features([c["norm_text"] for c in feature_cases.values()])
    for (name, case), h in zip(feature_cases.items(), hidden):
        assert np.array_equal(bert.input_ids(case["norm_text"]).numpy(), expected[f"{name}_input_ids"]), name
        _close(h, expected[f"{name}_hidden_m3"], BERT_ATOL, BERT_RTOL, f"{name} hidden_m3 (batched)")
        if "num_hidden_states" in case:
            assert bert.model.config.num_hidden_layers + 1 == case["num_hidden_states"]


def test_phone_features(bert, bert_data, feature_cases):
    _, expected = bert_data
    for name, case in feature_cases.items():
        feats = bert.phone_features(case["norm_text"], case["word2ph"])
        _close(feats, expected[f"{name}_phone_feature"], BERT_ATOL, BERT_RTOL, f"{name} phone_feature")
        assert feats.shape[1] == len(case["phone_ids"]) == sum(case["word2ph"])
    batched = bert.phone_features_batch([(c["norm_text"], c["word2ph"]) for c in feature_cases.values()])
    for (name, _), feats in zip(feature_cases.items(), batched):
        _close(feats, expected[f"{name}_phone_feature"], BERT_ATOL, BERT_RTOL, f"{name} phone_feature (batched)")


def test_word2ph_length_mismatch_is_a_user_error(bert, feature_cases):
    case = next(iter(feature_cases.values()))
    with pytest.raises(GSVError, match="word2ph"):
        bert.phone_features(case["norm_text"], case["word2ph"][:-1])


def test_zeros(bert, feature_cases):
    n = len(next(iter(feature_cases.values()))["phone_ids"])
    z = bert.zeros(n)
    assert z.shape == (bert.model.config.hidden_size, n) and not z.any()


def _producer_args(cases: dict) -> tuple[str, str]:
    """Language and symbol version of the get_phones_and_bert call, as the fixture's producer note states them."""
    note = cases["producer"]["get_phones_and_bert"]
    m = re.search(r"get_phones_and_bert\(\s*\w+\s*,\s*'([\w]+)'\s*,\s*'(v\d)'", note)
    assert m, f"cannot read language/version from producer note {note!r}"
    return m.group(1).replace("all_", ""), m.group(2)


def _word2ph_from_phones(norm_text: str, phones: list[str]) -> list[int]:
    """The JSON stores no word2ph for pNN cases. In the zh front end a punctuation mark is its own single phone
    and every other character gives initial + final, so word2ph follows from aligning phones with characters."""
    word2ph, pos = [], 0
    for ch in norm_text:
        n = 1 if pos < len(phones) and phones[pos] == ch else 2
        word2ph.append(n)
        pos += n
    assert pos == len(phones), f"cannot align {len(phones)} phones with {norm_text!r}"
    return word2ph


def test_phones_and_bert(bert, bert_data, parity_dir, feature_cases):
    cases, expected = bert_data
    language, version = _producer_args(cases)
    symbols = json.loads((parity_dir / "symbols.json").read_text(encoding="utf-8"))[version]
    p_cases = {f"p{c['idx']:02d}": c for c in cases["phones_and_bert_cases"]}
    assert p_cases, "bert_cases.json lists no phones_and_bert_cases"
    in_npz = {k.split("_", 1)[0] for k in expected if re.fullmatch(r"p\d+_bert", k)}
    assert in_npz == set(p_cases), f"pNN cases: JSON {sorted(p_cases)} vs npz {sorted(in_npz)}"
    by_text = {c["norm_text"]: c["word2ph"] for c in feature_cases.values()}
    for name, case in p_cases.items():
        word2ph = _word2ph_from_phones(case["norm_text"], [symbols[i] for i in case["phone_ids"]])
        if case["norm_text"] in by_text:  # cross-check the rebuilt alignment where the JSON has the real one
            assert word2ph == by_text[case["norm_text"]], name
        if language == "zh":
            feats = bert.phone_features(case["norm_text"], word2ph)
        else:
            feats = bert.zeros(len(case["phone_ids"]))
        _close(feats, expected[f"{name}_bert"], BERT_ATOL, BERT_RTOL, f"{name} bert")


def test_missing_or_incomplete_folders(tmp_path, parity_dir):
    with pytest.raises(CheckpointError, match="not found"):
        BertPhoneFeatures(tmp_path / "absent")
    with pytest.raises(CheckpointError, match="not found"):
        HubertContent(tmp_path / "absent")
    (tmp_path / "config.json").write_bytes((parity_dir / "hubert_tiny" / "config.json").read_bytes())
    with pytest.raises(CheckpointError, match="preprocessor_config.json"):
        HubertContent(tmp_path)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        BertPhoneFeatures(tmp_path)


# -------------------------------------------------------------------------------------------------------- HuBERT


@pytest.fixture(scope="module")
def hubert_data(parity_dir):
    return dict(np.load(parity_dir / "hubert_expected.npz"))


@pytest.fixture(scope="module")
def hubert(parity_dir):
    return HubertContent(parity_dir / "hubert_tiny")


def test_hubert_arrays(hubert, hubert_data):
    wav = torch.from_numpy(hubert_data["in_wav16"])
    padded = hubert_data["tts_prompt_path_input"]
    pad = len(padded) - len(wav)
    assert pad >= 0 and np.array_equal(padded[: len(wav)], wav.numpy()) and not padded[len(wav):].any()
    computed = {
        "tts_prompt_path_input": lambda: torch.cat([wav, wav.new_zeros(pad)]),
        "tts_prompt_path_feats": lambda: hubert.prompt_features(wav, pad),
        "raw_model_feats": lambda: hubert.raw_features(wav),
        "fe_input_values": lambda: hubert.normalize(wav),
        # CNHubert.forward returns (1, frames, hidden); get_content is the same transposed.
        "cnhubert_forward_feats": lambda: hubert.normalized_features(wav).transpose(1, 2),
        "get_content_feats": lambda: hubert.normalized_features(wav),
    }
    outputs = sorted(k for k in hubert_data if k != "in_wav16")
    unknown = [k for k in outputs if k not in computed]
    assert not unknown, f"hubert_expected.npz arrays this test does not know how to reproduce: {unknown}"
    for key in outputs:
        _close(computed[key](), hubert_data[key], HUBERT_ATOL, HUBERT_RTOL, key)


def test_hubert_low_precision_and_batch(hubert, hubert_data):
    wav = torch.from_numpy(hubert_data["in_wav16"])
    ref = torch.from_numpy(hubert_data["raw_model_feats"])
    _close(hubert.raw_features(torch.stack([wav, wav])), np.concatenate([ref.numpy()] * 2), HUBERT_ATOL, HUBERT_RTOL, "batch")
    try:
        low = hubert.to(torch.bfloat16).raw_features(wav)
    finally:
        hubert.float()
    assert low.dtype == torch.bfloat16 and low.shape == ref.shape and torch.isfinite(low).all()
    cos = torch.nn.functional.cosine_similarity(low.float().flatten(), ref.flatten(), dim=0)
    assert cos > 0.99
