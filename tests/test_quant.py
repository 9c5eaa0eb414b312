"""Opt-in int8 GPT decoding on CPU: close to fp32 numerically, same greedy tokens on the fixtures, wired in config."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from config import load_settings
from gsv_core.engine import ModelRegistry
from gsv_core.loading import load_gpt
from gsv_core.models.quant import Int8Linear, int8_supported, quantize_gpt_int8
from gsv_core.models.sampling import SamplingParams

pytestmark = pytest.mark.skipif(not int8_supported(), reason="torch build without int8 weight-only matmul")


def test_int8_linear_close_to_dense():
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 96)
    q = Int8Linear(lin.weight, lin.bias, torch.bfloat16)
    x = torch.randn(3, 5, 256)
    ref = lin(x)
    got = q(x.bfloat16()).float()
    assert got.shape == ref.shape
    assert (got - ref).abs().max() / ref.abs().max() < 0.02
    assert (q(x).float() - ref).abs().max() / ref.abs().max() < 0.02  # fp32 input takes the dequantising path


def test_quantized_gpt_matches_fp32_greedy_on_fixtures(parity_dir):
    for io_file in sorted(parity_dir.glob("s1_*_io.npz")):
        io = np.load(io_file)
        ckpt = parity_dir / io_file.name.replace("_io.npz", ".ckpt")
        fp32, _ = load_gpt(ckpt)
        q, _ = load_gpt(ckpt, dtype=torch.bfloat16)
        quantize_gpt_int8(q)
        phones, bert, prompt = (torch.from_numpy(io[k]) for k in ("in_phones", "in_bert", "in_prompt"))
        with torch.inference_mode():
            fp32_logits = fp32.prefill_logits(phones[None], bert[None], prompt[None]).float()
            q_logits = q.prefill_logits(phones[None], bert[None].bfloat16(), prompt[None]).float()
            a = fp32.generate([phones], [bert], prompt, SamplingParams(top_k=1), early_stop_num=20)[0]
            b = q.generate([phones], [bert.bfloat16()], prompt, SamplingParams(top_k=1), early_stop_num=20)[0]
        assert (q_logits - fp32_logits).abs().max() < 0.05 * fp32_logits.abs().max()
        if float(io["out_naive_margins"][:20].min()) > 0.01:  # greedy choices robust to int8 rounding
            assert torch.equal(a, b), io_file.name


def test_registry_applies_the_setting(parity_dir, tmp_path):
    settings = load_settings(environ={"GSV_HOME": str(tmp_path), "GSV_GPT_INT8": "1"}, my_config=tmp_path / "n.py")
    model, _ = ModelRegistry(settings, device="cpu", precision="fp32").gpt(parity_dir / "s1_v2.ckpt")
    assert getattr(model, "quantized", None) == "int8"
    assert isinstance(model.ar_predict_layer, Int8Linear) and model.bert_proj.weight.dtype == torch.bfloat16
