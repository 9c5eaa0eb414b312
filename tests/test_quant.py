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


@pytest.mark.parametrize("native_bf16", [True, False])
def test_registry_applies_the_setting(parity_dir, tmp_path, monkeypatch, native_bf16):
    """GPT_INT8 picks the bf16-activation kernel where bf16 is native, fbgemm's integer kernel elsewhere (AVX2)."""
    from gsv_core import device as D
    from gsv_core.models.quant import DynamicInt8Linear, dynamic_int8_supported
    from gsv_core.models.s1_static import StaticCacheText2Semantic

    if not native_bf16 and not dynamic_int8_supported():
        pytest.skip("no fbgemm int8 kernel in this build")
    monkeypatch.setattr(D, "native_cpu_bf16", lambda: native_bf16)
    settings = load_settings(environ={"GSV_HOME": str(tmp_path), "GSV_GPT_INT8": "1"}, my_config=tmp_path / "n.py")
    model, _ = ModelRegistry(settings, device="cpu", precision="fp32").gpt(parity_dir / "s1_v2.ckpt")
    assert isinstance(model, StaticCacheText2Semantic)  # int8 projections under the static-cache step
    if native_bf16:
        assert getattr(model, "quantized", None) == "int8"
        assert isinstance(model.ar_predict_layer, Int8Linear) and model.bert_proj.weight.dtype == torch.bfloat16
    else:
        from gsv_core.models.s1_onnx import onnx_available

        assert model.bert_proj.weight.dtype == torch.float32
        if onnx_available():  # the step on onnxruntime's integer kernels, the model itself unchanged
            assert model.backend == "onnx-int8" and getattr(model, "quantized", None) == "int8-onnx"
        else:
            assert getattr(model, "quantized", None) == "int8-dynamic"
            assert isinstance(model.ar_predict_layer, DynamicInt8Linear)


def test_dynamic_int8_gpt_close_to_fp32_on_fixtures(parity_dir):
    from gsv_core.models.quant import DynamicInt8Linear, dynamic_int8_supported, quantize_gpt_dynamic_int8

    if not dynamic_int8_supported():
        pytest.skip("no fbgemm int8 kernel in this build")
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 96)
    x = torch.randn(3, 5, 256)
    got = DynamicInt8Linear(lin.weight, lin.bias)(x)
    assert got.shape == (3, 5, 96) and (got - lin(x)).abs().max() / lin(x).abs().max() < 0.03
    for io_file in sorted(parity_dir.glob("s1_*_io.npz")):
        io = np.load(io_file)
        ckpt = parity_dir / io_file.name.replace("_io.npz", ".ckpt")
        fp32, _ = load_gpt(ckpt)
        q, _ = load_gpt(ckpt)
        quantize_gpt_dynamic_int8(q)
        phones, bert, prompt = (torch.from_numpy(io[k]) for k in ("in_phones", "in_bert", "in_prompt"))
        with torch.inference_mode():
            ref = fp32.prefill_logits(phones[None], bert[None], prompt[None])
            got = q.prefill_logits(phones[None], bert[None], prompt[None])
            a = fp32.generate([phones], [bert], prompt, SamplingParams(top_k=1), early_stop_num=20)[0]
            b = q.generate([phones], [bert], prompt, SamplingParams(top_k=1), early_stop_num=20)[0]
        assert (got - ref).abs().max() < 0.05 * ref.abs().max()  # measured 0.019-0.021 on the fixtures
        if float(io["out_naive_margins"][:20].min()) > 0.01:
            assert torch.equal(a, b), io_file.name


def test_onnx_int8_step_close_to_fp32_on_fixtures(parity_dir):
    from gsv_core.models.s1_onnx import onnx_available
    from gsv_core.models.s1_static import StaticCacheText2Semantic

    if not onnx_available():
        pytest.skip("onnx / onnxruntime not installed")
    for io_file in sorted(parity_dir.glob("s1_*_io.npz")):
        io = np.load(io_file)
        fp32, _ = load_gpt(parity_dir / io_file.name.replace("_io.npz", ".ckpt"))
        q = StaticCacheText2Semantic.from_plain(fp32, backend="onnx-int8")
        phones, bert, prompt = (torch.from_numpy(io[k]) for k in ("in_phones", "in_bert", "in_prompt"))
        ta, tb = [], []
        with torch.inference_mode():
            a, _ = fp32.infer_naive(phones, bert, prompt, SamplingParams(top_k=1), 20, trace=ta)
            b, _ = q.infer_naive(phones, bert, prompt, SamplingParams(top_k=1), 20, trace=tb)
        ref, got = ta[1][1], tb[1][1]  # step 1: the first int8 step (the prefill is fp32)
        assert (got - ref).abs().max() < 0.05 * ref.abs().max()  # measured 0.014 on the fixtures
        if float(io["out_naive_margins"][:20].min()) > 0.01:
            assert torch.equal(a, b), io_file.name
