"""Precision hygiene: the whole engine and both trainers in fp16 and bf16 through the same code, on the CPU.

fp16 on the CPU normally runs fp32 (gsv_core.device: no native fp16 arithmetic, some kernels missing); these tests
turn on ``allow_cpu_fp16`` so the real fp16 code path (every cast, every op) runs here before it meets a GPU.
The numerically touchy steps stay in float32 where upstream keeps them there (STFT / spectrograms, GPT sampling,
the training losses): a dtype audit records what those functions receive. PRECISION = auto picks bf16 on the CPU
only where bf16 is native; an explicit bf16 on other CPUs gets a warning naming the measured slowdown.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from config import load_settings
from gsv_core import device as D
from gsv_core.api import Engine

TEXT = "今天天气很好。我们去公园散步吧！"
REF_TEXT = "你早上好，这是参考声音。"
GPT_OF = {"v1": "s1_v1.ckpt", "v2": "s1_v2.ckpt", "v2Pro": "s1_v2.ckpt", "v2ProPlus": "s1_v2.ckpt"}


# -- device.py: auto, fp16 override, warning ---------------------------------------------------------------------
def _features(monkeypatch, flags):
    feats = {"model": "test cpu", "cores": 2, "capability": "AVX512" if "avx512f" in flags else "AVX2",
             "flags": list(flags), "flags_known": True, "native_bf16": "avx512_bf16" in flags or "amx_bf16" in flags,
             "native_fp16": False}
    monkeypatch.setattr(D, "_features", feats)


def test_auto_precision_on_cpu_follows_native_support(monkeypatch):
    _features(monkeypatch, ["avx2", "fma"])
    assert D.resolve_dtype("auto", torch.device("cpu")) == torch.float32
    _features(monkeypatch, ["avx2", "avx512f", "avx512_bf16"])
    assert D.resolve_dtype("auto", torch.device("cpu")) == torch.bfloat16
    _features(monkeypatch, ["avx2", "amx_tile", "amx_bf16"])
    assert D.native_cpu_bf16()
    assert D.resolve_dtype("fp32", torch.device("cpu")) == torch.float32


def test_real_cpu_features_are_reported():
    feats = D.cpu_features()
    assert feats["capability"] == torch.backends.cpu.get_cpu_capability()
    assert set(feats["flags"]) <= set(D.RELEVANT_CPU_FLAGS)
    assert isinstance(feats["native_bf16"], bool)


def test_fp16_on_cpu_needs_the_override(monkeypatch):
    monkeypatch.delenv(D.CPU_FP16_ENV, raising=False)
    cpu = torch.device("cpu")
    assert D.resolve_dtype("fp16", cpu) == torch.float32
    with D.allow_cpu_fp16():
        assert D.resolve_dtype("fp16", cpu) == torch.float16
    assert D.resolve_dtype("fp16", cpu) == torch.float32
    monkeypatch.setenv(D.CPU_FP16_ENV, "1")
    assert D.resolve_dtype("fp16", cpu) == torch.float16


def test_warning_names_the_measured_slowdown(monkeypatch):
    profile = {"fp32_ms": 0.116, "bf16_ms": 8.0, "int8_bf16_ms": 8.1, "conv_fp32_ms": 78.0, "conv_bf16_ms": 1357.0}
    _features(monkeypatch, ["avx", "avx2", "fma", "f16c"])
    msg = D.reduced_precision_warning("bf16", False, "cpu", profile=profile)
    assert msg and "8.00 ms" in msg and "0.116 ms" in msg and "69x" in msg and "17x" in msg
    assert "auto or fp32" in msg
    assert "GPT_INT8 alone is fine" in D.reduced_precision_warning("bf16", True, "cpu", profile=profile)
    for ok in ("fp32", "auto", "fp16"):
        assert D.reduced_precision_warning(ok, True, "cpu", profile=profile) is None
    assert D.reduced_precision_warning("bf16", False, "cuda", profile=profile) is None
    _features(monkeypatch, ["avx2", "avx512f", "avx512_bf16"])
    assert D.reduced_precision_warning("bf16", True, "cpu", profile=profile) is None


def test_warning_reaches_the_app_and_the_cli(monkeypatch, tmp_path, capsys):
    """An explicit bf16 on a CPU without native bf16: the app shows the warning under its title, the CLI prints it."""
    profile = {"fp32_ms": 0.116, "bf16_ms": 8.0, "conv_fp32_ms": 78.0, "conv_bf16_ms": 1357.0}
    _features(monkeypatch, ["avx", "avx2", "fma"])
    monkeypatch.setattr(D, "cpu_precision_profile", lambda *a, **k: dict(profile))
    from gsv_core.asr import ASRService
    from pages.app import build_app
    from pages.services import Services

    settings = load_settings(environ={"GSV_HOME": str(tmp_path), "GSV_PRECISION": "bf16", "GSV_DEVICE": "cpu"},
                             my_config=tmp_path / "none.py")
    services = Services(settings, asr=ASRService.from_settings(settings))
    assert "69x slower" in services.precision_warning()
    app = build_app(settings, services)
    shown = [b.value for b in app.blocks.values() if getattr(b, "elem_id", None) == "precision-warning"]
    assert shown and "69x slower" in shown[0]
    fine = load_settings(environ={"GSV_HOME": str(tmp_path), "GSV_PRECISION": "auto", "GSV_DEVICE": "cpu"},
                         my_config=tmp_path / "none.py")
    assert Services(fine).precision_warning() is None

    import config
    from gsv_core import tts

    monkeypatch.setattr(config, "settings", settings)
    code = tts.main(["--text", "你好", "--ref", str(tmp_path / "missing.wav"), "--ref-text", "你好",
                     "--device", "cpu", "--precision", "bf16"])
    err = capsys.readouterr().err
    assert "warning: PRECISION = bf16 on this CPU" in err and "69x slower" in err
    assert code == 1 and "error:" in err  # and then the missing models / reference are named as usual


def test_profile_is_measured_once_per_machine(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(D, "measure_cpu_precision", lambda: calls.append(1) or {"fp32_ms": 1.0, "bf16_ms": 9.0})
    path = tmp_path / "profile.json"
    a = D.cpu_precision_profile(path)
    b = D.cpu_precision_profile(path)
    assert a == b and len(calls) == 1 and json.loads(path.read_text())["bf16_ms"] == 9.0
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({**stored, "key": "another machine"}))
    D.cpu_precision_profile(path)
    assert len(calls) == 2


# -- the dtype audit -------------------------------------------------------------------------------------------------
class DtypeAudit(TorchFunctionMode):
    """Records the dtype of the first tensor argument of the watched functions."""

    def __init__(self, watched):
        super().__init__()
        self.watched = {f: getattr(f, "__name__", str(f)) for f in watched}
        self.seen: dict[str, set] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = self.watched.get(func)
        if name is not None:
            first = next((a for a in args if isinstance(a, torch.Tensor)), None)
            if first is not None:
                self.seen.setdefault(name, set()).add(first.dtype)
        return func(*args, **(kwargs or {}))


# -- the engine in fp16 and bf16 -------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["fp16", "bf16"])
def low(request, tmp_path_factory, parity_dir, tiny_assets):
    tmp = tmp_path_factory.mktemp(f"precision_{request.param}")
    settings = load_settings(environ={"GSV_HOME": str(tmp)}, my_config=tmp / "none.py")
    with D.allow_cpu_fp16():
        engine = Engine.open(settings, device="cpu", precision=request.param, bert_dir=tiny_assets["bert"],
                             hubert_dir=tiny_assets["hubert"], sv_path=tiny_assets["sv"], log_path=None)
    return {"engine": engine, "dtype": D._DTYPES[request.param], "dir": parity_dir, "assets": tiny_assets}


def _req(low, version, **kw):
    base = dict(text=TEXT, ref_audio=str(low["assets"]["ref"]), ref_text=REF_TEXT,
                gpt_path=str(low["dir"] / GPT_OF[version]), sovits_path=str(low["dir"] / f"s2_{version}.pth.xz"),
                seed=7, split_method="cut5", max_tokens=12, text_lang="all_zh", ref_lang="all_zh")
    base.update(kw)
    return base


def _check_audio(result, fragments):
    assert len(result.fragments) == fragments
    assert result.audio.dtype == np.float32 and np.isfinite(result.audio).all()
    assert result.audio.std() > 0 and np.abs(result.audio).max() <= 1.0
    assert all(0 < f.tokens <= 12 for f in result.fragments)


@pytest.mark.parametrize("version", ["v1", "v2", "v2Pro", "v2ProPlus"])
def test_engine_runs_every_version_in_low_precision(low, version):
    """Every version one by one; batched and streamed for v1 and v2ProPlus, reference-free for v2 and v2ProPlus,
    aux references for v2ProPlus (each mode at least once, without running every pair)."""
    eng = low["engine"]
    assert eng.dtype == low["dtype"]
    audit = DtypeAudit([torch.stft])
    with audit:
        single = eng.synthesize(_req(low, version, parallel=False))
    _check_audio(single, 2)
    if version == "v1":  # the first of the module: the reference spectrogram is computed here (then cached)
        assert audit.seen["stft"] == {torch.float32}  # float32 FFT whatever the models run in
    if version in ("v1", "v2ProPlus"):
        _check_audio(eng.synthesize(_req(low, version, parallel=True, batch_size=4, top_k=1)), 2)
        chunks = list(eng.stream(_req(low, version, top_k=1)))
        assert chunks[-1].last and all(np.isfinite(c.audio).all() for c in chunks)
    if version in ("v2", "v2ProPlus"):
        _check_audio(eng.synthesize(_req(low, version, ref_text="")), 2)  # reference-free
    if version == "v2ProPlus":  # (one version: the emulated fp16/bf16 speaker model takes ~40 s per new reference)
        _check_audio(eng.synthesize(_req(low, version, aux_refs=[str(low["assets"]["aux"])])), 2)


def test_gpt_samples_in_float32(low, parity_dir, monkeypatch):
    from gsv_core.loading import load_gpt
    from gsv_core.models import s1, sampling

    seen: dict[str, set] = {}
    for name in ("apply_repetition_penalty", "filtered_probs", "sample_from_probs"):
        original = getattr(s1, name)

        def spy(x, *args, _name=name, _original=original, **kwargs):
            seen.setdefault(_name, set()).add(x.dtype)
            return _original(x, *args, **kwargs)

        monkeypatch.setattr(s1, name, spy)
    model, _ = load_gpt(parity_dir / "s1_v2.ckpt", dtype=low["dtype"])
    assert model.bert_proj.weight.dtype == low["dtype"]
    io = np.load(parity_dir / "s1_v2_io.npz")
    phones, bert, prompt = (torch.from_numpy(io[k]) for k in ("in_phones", "in_bert", "in_prompt"))
    with torch.inference_mode():
        tokens = model.generate([phones], [bert.to(low["dtype"])], prompt, sampling.SamplingParams(top_k=5),
                                early_stop_num=15, generator=torch.Generator().manual_seed(0))[0]
    assert tokens.numel() >= 1
    assert set(seen) == {"apply_repetition_penalty", "filtered_probs", "sample_from_probs"}
    assert all(dtypes == {torch.float32} for dtypes in seen.values()), seen


# -- one training step of each trainer -------------------------------------------------------------------------------
def _spy_results(monkeypatch, module, names) -> dict:
    """Replace ``module.<name>`` by a wrapper recording the dtype of the (first) tensor each call returns."""
    seen: dict[str, set] = {}
    for name in names:
        original = getattr(module, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            out = _original(*args, **kwargs)
            first = out if isinstance(out, torch.Tensor) else out[0]
            seen.setdefault(_name, set()).add(first.dtype)
            return out

        monkeypatch.setattr(module, name, spy)
    return seen


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_s2_trainer_step_in_low_precision(tmp_path, parity_dir, precision, monkeypatch):
    from gsv_core.finetune.s2_data import S2Dataset, collate
    from gsv_core.finetune.s2_train import S2TrainConfig, S2Trainer
    from finetune.s2_synth import build_experiment

    lay = build_experiment(tmp_path / "exp", "v2Pro")
    cfg = S2TrainConfig(version="v2Pro", pretrained_s2g=parity_dir / "s2_v2Pro.pth.xz", batch_size=2,
                        segment_size=2 * 640, num_workers=0, device="cpu", precision=precision)
    with D.allow_cpu_fp16():
        tr = S2Trainer(lay, cfg)
    assert tr.dtype == D._DTYPES[precision]
    assert tr.scaler.is_enabled() == (precision == "fp16")
    ds = S2Dataset(lay, "v2Pro", tr.audio)
    batch = collate([ds[0], ds[1]])
    before = {k: v.detach().clone() for k, v in tr.net_g.named_parameters() if k.startswith("dec.")}
    from gsv_core.finetune import s2_train

    results = _spy_results(monkeypatch, s2_train, ("mel_l1", "kl_loss", "feature_loss", "generator_loss",
                                                   "discriminator_loss", "mel_spectrogram"))
    audit = DtypeAudit([torch.stft])
    with audit:
        losses = tr.train_step(batch)
    # losses finite (the gradient norms may be inf in fp16: that is what the scaler detects and skips)
    assert all(np.isfinite(losses[k]) for k in ("loss_g", "mel", "kl", "fm", "gen", "disc")), losses
    # every loss and the mel spectrogram of the generated audio in float32, as upstream (fp32 losses under AMP)
    assert len(results) == 6 and all(d == {torch.float32} for d in results.values()), results
    assert audit.seen.get("stft") == {torch.float32}
    # the scaler may skip the first fp16 step on an inf gradient (then its scale drops): either way no NaN weights
    after = dict(tr.net_g.named_parameters())
    assert all(torch.isfinite(after[k]).all() for k in before)
    assert tr.scaler.is_enabled() or any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_s1_trainer_step_in_low_precision(tmp_path, parity_dir, precision):
    from torch.nn import functional as F

    from gsv_core.finetune.s1_train import S1TrainConfig, train_s1
    from finetune.s1_synth import make_experiment

    layout = make_experiment(tmp_path / "exp")
    cfg = S1TrainConfig(pretrained_s1=str(parity_dir / "s1_v2.ckpt"), batch_size=4, epochs=1, save_every_epochs=1,
                        device="cpu", precision=precision, export_dir=str(tmp_path / "w"), export_name="v",
                        max_steps=1)
    audit = DtypeAudit([F.cross_entropy])
    with D.allow_cpu_fp16(), audit:
        result = train_s1(layout, cfg)
    assert result.steps == 1
    assert audit.seen.get("cross_entropy") == {torch.float32}  # the logits scored in float32
    from gsv_core.finetune.common import load_state

    state = load_state(result.state_path)
    assert all(torch.isfinite(v).all() for v in state["weights"].values())


def test_host_copy_on_the_cpu():
    t = torch.linspace(-1, 1, 640, device="cpu").to(torch.bfloat16).view(1, 1, 640)
    out = D.host_copy(t)
    assert out.dtype == np.float32 and out.shape == (1, 1, 640)
    np.testing.assert_array_equal(out, t.float().numpy())


def test_unknown_device_names_are_named():
    from gsv_core.errors import GSVError

    assert D.resolve_device("cpu").type == "cpu"
    for bad, words in (("gpu", "unknown device"), ("mps", "not supported"), ("", "unknown device")):
        with pytest.raises(GSVError, match=words):
            D.resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(GSVError, match="no CUDA GPU"):
            D.resolve_device("cuda:0")
