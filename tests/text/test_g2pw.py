"""The G2PW code path of the v2 Chinese g2p, run on a tiny fake G2PW model folder built here.

The fake ONNX graph has upstream's six inputs and one (N, labels) output. It reads the token id found at each
query's ``position_ids`` and scores labels with a table indexed by that token id, plus the phoneme mask; so it
returns the reading the test chose for a character only if tokenization, the position mapping, the masks and the
label table all line up (a wrong position gives the first allowed label instead). Queries that share token rows
(upstream's de-duplication) are broadcast by an Expand node.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("opencc")
from onnx import TensorProto, helper  # noqa: E402

from gsv_core.text.zh import g2p_zh, g2pw  # noqa: E402
from gsv_core.text.zh.g2p import parse_pinyin, syllable_phones  # noqa: E402

# (character as G2PW sees it after OpenCC s2tw, its bopomofo labels, the label the fake model prefers)
POLYPHONES = {
    "重": (["ㄓㄨㄥ4", "ㄔㄨㄥ2"], "ㄔㄨㄥ2"),
    "行": (["ㄒㄧㄥ2", "ㄏㄤ2"], "ㄏㄤ2"),
    "長": (["ㄓㄤ3", "ㄔㄤ2"], "ㄓㄤ3"),
    "一": (["ㄧ1", "ㄧ2"], "ㄧ2"),  # in the exclusion list: never sent to the model
}
MONOPHONES = {"天": "ㄊㄧㄢ3", "似": "ㄙ4"}  # 天 deliberately odd; 似 is excluded from the monophonic table
BOPOMOFO = {
    "ㄓㄨㄥ": "zhong", "ㄔㄨㄥ": "chong", "ㄒㄧㄥ": "xing", "ㄏㄤ": "hang", "ㄓㄤ": "zhang", "ㄔㄤ": "chang",
    "ㄧ": "yi", "ㄊㄧㄢ": "tian", "ㄙ": "si",
}
VOCAB_CHARS = "重行長天一我们在银他的事很要是一个好人长城"


def _labels() -> list[str]:
    return sorted({label for labels, _ in POLYPHONES.values() for label in labels})


def _build_model(path: Path, vocab: list[str], broadcast: bool = True) -> None:
    labels = _labels()
    token_scores = np.zeros((len(vocab), len(labels)), dtype=np.float32)
    for ch, (_, preferred) in POLYPHONES.items():
        if ch in vocab:
            token_scores[vocab.index(ch), labels.index(preferred)] = 5.0
    n_chars = len(POLYPHONES)
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "T"]),
        helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["B", "T"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["B", "T"]),
        helper.make_tensor_value_info("phoneme_mask", TensorProto.FLOAT, ["N", len(labels)]),
        helper.make_tensor_value_info("char_ids", TensorProto.INT64, ["N"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["N"]),
    ]
    output = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", len(labels)])
    inits = [
        helper.make_tensor("token_scores", TensorProto.FLOAT, token_scores.shape, token_scores.flatten()),
        helper.make_tensor("char_bias", TensorProto.FLOAT, (n_chars, len(labels)), np.zeros(n_chars * len(labels))),
        helper.make_tensor("one", TensorProto.FLOAT, (), [1.0]),
        helper.make_tensor("big", TensorProto.FLOAT, (), [1e4]),
        helper.make_tensor("axis1", TensorProto.INT64, (1,), [1]),
        helper.make_tensor("slice_start", TensorProto.INT64, (1,), [1]),
        helper.make_tensor("slice_end", TensorProto.INT64, (1,), [2]),
    ]
    nodes = []
    ids = "input_ids"
    if broadcast:
        nodes += [
            helper.make_node("Shape", ["char_ids"], ["n"]),
            helper.make_node("Shape", ["input_ids"], ["bt"]),
            helper.make_node("Slice", ["bt", "slice_start", "slice_end"], ["t"]),
            helper.make_node("Concat", ["n", "t"], ["nt"], axis=0),
            helper.make_node("Expand", ["input_ids", "nt"], ["ids_full"]),
        ]
        ids = "ids_full"
    nodes += [
        helper.make_node("Unsqueeze", ["position_ids", "axis1"], ["pos2d"]),
        helper.make_node("GatherElements", [ids, "pos2d"], ["tok2d"], axis=1),
        helper.make_node("Squeeze", ["tok2d", "axis1"], ["tok"]),
        helper.make_node("Gather", ["token_scores", "tok"], ["tscore"], axis=0),
        helper.make_node("Gather", ["char_bias", "char_ids"], ["cscore"], axis=0),
        helper.make_node("Add", ["tscore", "cscore"], ["score"]),
        helper.make_node("Sub", ["phoneme_mask", "one"], ["mask_off"]),
        helper.make_node("Mul", ["mask_off", "big"], ["penalty"]),
        helper.make_node("Add", ["score", "penalty"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(nodes, "fake_g2pw", inputs, [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _make_folder(root: Path, broadcast: bool = True, model_name: str = "g2pW.onnx") -> tuple[Path, Path]:
    model_dir = root / "G2PWModel"
    model_dir.mkdir(parents=True)
    (model_dir / "POLYPHONIC_CHARS.txt").write_text(
        "\n".join(f"{ch}\t{label}" for ch, (labels, _) in POLYPHONES.items() for label in labels) + "\n",
        encoding="utf-8",
    )
    (model_dir / "MONOPHONIC_CHARS.txt").write_text(
        "\n".join(f"{ch}\t{label}" for ch, label in MONOPHONES.items()) + "\n", encoding="utf-8"
    )
    (model_dir / "bopomofo_to_pinyin_wo_tune_dict.json").write_text(json.dumps(BOPOMOFO, ensure_ascii=False), "utf-8")
    (model_dir / "char_bopomofo_dict.json").write_text("{}", encoding="utf-8")
    (model_dir / "config.py").write_text("use_mask = True\nuse_char_phoneme = False\nwindow_size = 32\n", "utf-8")
    tok_dir = root / "tokenizer"
    tok_dir.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(dict.fromkeys(VOCAB_CHARS))
    (tok_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (tok_dir / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}), "utf-8")
    _build_model(model_dir / model_name, vocab, broadcast)
    return model_dir, tok_dir


@pytest.fixture()
def fake_g2pw(tmp_path):
    model_dir, tok_dir = _make_folder(tmp_path)
    g2pw.configure_g2pw(model_dir, tok_dir, device="cpu")
    return g2pw.active_g2pw()


@pytest.fixture(autouse=True)
def _reset_g2pw():
    g2pw.reset_g2pw()
    yield
    g2pw.reset_g2pw()


def _syllable(reading: str) -> list[str]:
    return list(syllable_phones(*parse_pinyin(reading)))


def _char_phones(text: str, index: int, **kwargs) -> list[str]:
    phones, word2ph = g2p_zh(text, "v2", **kwargs)
    start = sum(word2ph[:index])
    return phones[start : start + word2ph[index]]


class _Recorder:
    """Wraps an onnxruntime session and keeps every feed it is given."""

    def __init__(self, session):
        self.session = session
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, names, feeds):
        self.feeds.append({k: np.array(v) for k, v in feeds.items()})
        return self.session.run(names, feeds)

    def get_inputs(self):
        return self.session.get_inputs()


# --------------------------------------------------------------------------------------------------------------


def _word_containing(text: str, index: int) -> str:
    trace: list = []
    g2p_zh(text, "v2", trace=trace)
    start = 0
    for step in trace:
        if "word" in step:
            if start <= index < start + len(step["word"]):
                return step["word"]
            start += len(step["word"])
    raise AssertionError(f"no word covers index {index} of {text!r}")


def test_model_labels_reach_the_phones(fake_g2pw):
    assert isinstance(fake_g2pw, g2pw.G2PW)
    text = "他很重."
    word = _word_containing(text, 2)
    assert word not in g2pw._polyphone_dictionary(), f"precondition: {word!r} must not be a dictionary word"
    assert _char_phones(text, 2, use_g2pw=True) == _syllable("chong2")  # the model's ㄔㄨㄥ2
    assert _char_phones(text, 2) == _syllable("zhong4")  # pypinyin's reading without G2PW
    # simplified 长 is converted to 長 (s2tw) before the lookup; the model prefers ㄓㄤ3
    assert fake_g2pw.predict(["长."])[0] == ["zhang3", "."]
    assert _char_phones("长.", 0, use_g2pw=True) == _syllable("zhang3")


def test_predict_sources(fake_g2pw):
    from pypinyin import Style, pinyin

    text = "一天似重."
    reference = [item[0] for item in pinyin(text, style=Style.TONE3, neutral_tone_with_five=True)]
    assert reference[2] != "si4", "precondition: pypinyin must read 似 here unlike the monophonic table"
    one, sky, like, heavy, stop = fake_g2pw.predict([text, "我们."])[0]
    assert one == reference[0]  # 一 is excluded from the model: pypinyin
    assert sky == "tian3" != reference[1]  # monophonic table (deliberately odd reading)
    assert like == reference[2]  # 似 is excluded from the monophonic table: pypinyin
    assert heavy == "chong2"  # model
    assert stop == "."
    plain = [item[0] for item in pinyin("我们.", style=Style.TONE3, neutral_tone_with_five=True)]
    assert fake_g2pw.predict(["我们."])[0] == plain


def test_polyphone_dictionary_overrides_model(fake_g2pw):
    table = g2pw._polyphone_dictionary()
    text = "他很重要."
    word = _word_containing(text, 2)
    assert word in table and table[word][0] != "chong2", f"precondition: {word!r} must be a dictionary word"
    assert _char_phones(text, 2, use_g2pw=True) == _syllable(table[word][0])
    assert g2pw.apply_polyphone_dictionary(word, ["x1"] * len(word)) == list(table[word])
    # no word entry: characters with an entry of their own take its first reading, the others are kept
    made_up = "重行重行重行"
    assert made_up not in table
    assert g2pw.apply_polyphone_dictionary(made_up, ["chong2", "hang2"] * 3) == [
        table[ch][0] if ch in table else reading for ch, reading in zip(made_up, ["chong2", "hang2"] * 3)
    ]


def test_sandhi_applies_to_corrected_readings(fake_g2pw):
    table = g2pw._polyphone_dictionary()
    text = "一行."
    word = _word_containing(text, 0)
    assert word == "一行" and word in table, "precondition: 一行 is a dictionary word"
    phones, _ = g2p_zh(text, "v2", use_g2pw=True)
    second = _syllable(table[word][1])
    expected_yi = "yi2" if second[1].endswith("4") else "yi4"  # 一 before a fourth tone -> yi2, else yi4
    assert phones == _syllable(expected_yi) + second + ["."]


def test_erhua_applies_with_g2pw(fake_g2pw):
    assert g2p_zh("一会儿.", "v2", use_g2pw=True) == g2p_zh("一会儿.", "v2")


def test_forced_and_user_dict_win_over_model(fake_g2pw):
    text = "他很重."
    assert _char_phones(text, 2, use_g2pw=True) == _syllable("chong2")
    assert _char_phones(text, 2, use_g2pw=True, forced={2: "zhong4"}) == _syllable("zhong4")
    assert _char_phones(text, 2, use_g2pw=True, user_dict={"重": ["zhong4"]}) == _syllable("zhong4")


def test_cropping_and_dedup(fake_g2pw, monkeypatch):
    recorder = _Recorder(fake_g2pw.session)
    monkeypatch.setattr(fake_g2pw, "session", recorder)
    filler = "我们在的事很要是好人" * 5  # 50 characters without polyphones
    sentence = filler + "重行重" + filler + "."
    first = len(filler)
    row = fake_g2pw.predict([sentence])[0]
    assert row[first : first + 3] == ["chong2", "hang2", "chong2"]
    window = 2 * fake_g2pw.context_chars + 3  # 16 characters either side of the polyphone span
    # one call for the shared cropped sentence: token rows sent once, one query per polyphone
    assert len(recorder.feeds) == 1
    feed = recorder.feeds[0]
    assert feed["input_ids"].shape == (1, window + 2)
    assert feed["char_ids"].shape == (3,)
    assert feed["position_ids"].tolist() == [fake_g2pw.context_chars + 1 + k for k in range(3)]
    assert feed["phoneme_mask"].shape == (3, len(_labels()))

    # the same without de-duplication: full rows, same labels
    recorder.feeds.clear()
    fake_g2pw.dedup = False
    assert fake_g2pw.predict([sentence])[0] == row
    assert recorder.feeds[0]["input_ids"].shape == (3, window + 2)


def test_no_cropping_when_context_is_zero(fake_g2pw, monkeypatch):
    recorder = _Recorder(fake_g2pw.session)
    monkeypatch.setattr(fake_g2pw, "session", recorder)
    fake_g2pw.context_chars = 0
    sentence = "我们在" * 20 + "重" + "."
    assert fake_g2pw.predict([sentence])[0][60] == "chong2"
    assert recorder.feeds[0]["input_ids"].shape == (1, len(sentence) + 2)


def test_long_sentence_is_cut_to_512_tokens_around_the_query(fake_g2pw, monkeypatch):
    recorder = _Recorder(fake_g2pw.session)
    monkeypatch.setattr(fake_g2pw, "session", recorder)
    fake_g2pw.context_chars = 0
    for position in (5, 400, 795):
        sentence = ["我"] * 800
        sentence[position] = "重"
        sentence = "".join(sentence)
        recorder.feeds.clear()
        row = fake_g2pw.predict([sentence])[0]
        assert row[position] == "chong2", f"query at {position}: the token window lost the character"
        ids = recorder.feeds[0]["input_ids"]
        assert ids.shape == (1, 512)
        pos = int(recorder.feeds[0]["position_ids"][0])
        assert 1 <= pos <= 510


def test_model_without_broadcast_falls_back_to_full_rows(tmp_path):
    model_dir, tok_dir = _make_folder(tmp_path, broadcast=False, model_name="g2pw.onnx")
    g2pw.configure_g2pw(model_dir, tok_dir, device="cpu")
    model = g2pw.active_g2pw()
    assert model is not None
    assert model.predict(["重行重."])[0][:3] == ["chong2", "hang2", "chong2"]
    assert model.dedup is False


def test_missing_folder_falls_back_with_one_notice(tmp_path, caplog):
    g2pw.configure_g2pw(tmp_path / "nowhere", tmp_path / "nowhere-tok")
    with caplog.at_level(logging.WARNING, logger="gsv_core.text.zh.g2pw"):
        first = g2p_zh("他很重视银行.", "v2", use_g2pw=True)
        second = g2p_zh("他很重视银行.", "v2", use_g2pw=True)
    assert first == second == g2p_zh("他很重视银行.", "v2")
    notices = [r for r in caplog.records if r.name == "gsv_core.text.zh.g2pw" and r.levelno >= logging.WARNING]
    assert len(notices) == 1, [r.getMessage() for r in notices]
    assert "pypinyin" in notices[0].getMessage() and "nowhere" in notices[0].getMessage()
    assert "unavailable" in g2pw.g2pw_status()


def test_unconfigured_uses_environment_then_falls_back(monkeypatch, tmp_path, caplog):
    missing = tmp_path / "env-g2pw"
    monkeypatch.setenv("GSV_G2PW_DIR", str(missing))
    g2pw.reset_g2pw()
    with caplog.at_level(logging.WARNING, logger="gsv_core.text.zh.g2pw"):
        assert g2p_zh("重视.", "v2", use_g2pw=True) == g2p_zh("重视.", "v2")
    assert any(str(missing) in r.getMessage() for r in caplog.records)


def test_unconfigured_environment_finds_a_model(monkeypatch, tmp_path):
    model_dir, tok_dir = _make_folder(tmp_path)
    monkeypatch.setenv("GSV_G2PW_DIR", str(model_dir))
    monkeypatch.setenv("GSV_BERT_DIR", str(tok_dir))
    g2pw.reset_g2pw()
    assert _char_phones("他很重.", 2, use_g2pw=True) == _syllable("chong2")
    assert "loaded" in g2pw.g2pw_status()


def test_configured_none_turns_g2pw_off(caplog):
    g2pw.configure_g2pw(None)
    with caplog.at_level(logging.WARNING, logger="gsv_core.text.zh.g2pw"):
        assert g2pw.active_g2pw() is None
    assert any("no G2PW model folder" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("broken", ["no_model", "no_polyphonic", "bad_polyphonic", "no_tokenizer", "bad_onnx"])
def test_incomplete_folder_is_reported_not_raised(tmp_path, broken, caplog):
    model_dir, tok_dir = _make_folder(tmp_path)
    if broken == "no_model":
        (model_dir / "g2pW.onnx").unlink()
    elif broken == "no_polyphonic":
        (model_dir / "POLYPHONIC_CHARS.txt").unlink()
    elif broken == "bad_polyphonic":
        (model_dir / "POLYPHONIC_CHARS.txt").write_text("重 no tab here\n", encoding="utf-8")
    elif broken == "no_tokenizer":
        tok_dir = tmp_path / "empty"
        tok_dir.mkdir()
    elif broken == "bad_onnx":
        (model_dir / "g2pW.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(g2pw.G2PWError):
        g2pw.G2PW(model_dir, tok_dir, device="cpu")
    g2pw.configure_g2pw(model_dir, tok_dir, device="cpu")
    with caplog.at_level(logging.WARNING, logger="gsv_core.text.zh.g2pw"):
        assert g2p_zh("重视.", "v2", use_g2pw=True) == g2p_zh("重视.", "v2")
    assert sum(r.levelno >= logging.WARNING for r in caplog.records if r.name == "gsv_core.text.zh.g2pw") == 1


def test_config_py_is_read_not_executed(tmp_path):
    model_dir, tok_dir = _make_folder(tmp_path)
    marker = tmp_path / "executed"
    (model_dir / "config.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\nuse_mask = False\n", encoding="utf-8"
    )
    model = g2pw.G2PW(model_dir, tok_dir, device="cpu")
    assert not marker.exists()
    assert model.use_mask is False
    assert all(mask.all() for mask in model.masks.values())
