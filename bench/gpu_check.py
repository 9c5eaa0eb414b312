"""The GPU check: everything issue 15 asks of a CUDA machine, in one run, one table, a non-zero exit on any failure.

On CUDA (``scripts/gpu_check.sh`` calls this):

1. parity on CUDA against the upstream fixtures (``GSV_PARITY_DIR``): every fixture GPT (prefill logits, greedy
   tokens naive / batched / reference-free, through the plain model and the static-cache variant with CUDA graphs)
   and every fixture SoVITS version (decoded audio): fp32 within the fixture tolerances of tests/parity (TF32 off
   for this step), fp16 within the looser bounds tests/parity documents for low precision (GPT first logits
   relative error < 1e-2, audio max error < 1e-2);
2. an end-to-end synthesis per version (fp16, tiny BERT/HuBERT/SV built in code, the fixture GPT/SoVITS files);
3. the engine benchmark (bench/bench_engine.py) in fp16 with and without CUDA graphs: s1 tokens/s single and
   batched, s2 audio s/s, RTF, first audio, peak GPU memory;
4. one finetuning epoch of each trainer on tiny synthetic data with AMP (fp16);
5. a 2-process DDP GPT training step when 2 GPUs exist.

Without CUDA it says so, runs its CPU part (1 on the CPU in fp32: parity of the plain and static-cache GPT and of
every SoVITS version, the reference condition; small and fast, tests/test_gpu_check.py runs it) and exits 0.

    .venv/bin/python bench/gpu_check.py [--cpu-only] [--skip-bench] [--skip-train] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

FP32_ATOL = 1e-4  # tests/parity: logits, intermediates, audio
FP16_LOGITS_REL = 1e-2  # tests/parity/test_s1_parity.py::test_low_precision (fp16)
FP16_AUDIO_ATOL = 1e-2  # tests/parity/test_s2_parity.py::test_decode_low_precision (fp16)


def parity_dir() -> Path:
    raw = os.environ.get("GSV_PARITY_DIR")
    return Path(raw).expanduser().resolve() if raw else (ROOT.parent / "shared" / "fixtures" / "gsv_parity").resolve()


class Table:
    def __init__(self):
        self.rows: list[dict] = []

    def check(self, name: str, fn: Callable[[], str]) -> bool:
        t0 = time.perf_counter()
        try:
            detail = fn() or ""
            ok = True
        except Exception as exc:  # noqa: BLE001 - every failure is a row of the table
            detail = f"{type(exc).__name__}: {exc}"
            ok = False
            traceback.print_exc()
        self.rows.append({"check": name, "ok": ok, "detail": str(detail), "seconds": time.perf_counter() - t0})
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
        return ok

    def figure(self, name: str, value: str) -> None:
        self.rows.append({"check": name, "ok": True, "detail": value, "seconds": 0.0, "figure": True})

    @property
    def failed(self) -> int:
        return sum(not r["ok"] for r in self.rows)

    def print(self) -> None:
        width = max(len(r["check"]) for r in self.rows) if self.rows else 10
        print("\n" + "=" * (width + 60))
        for r in self.rows:
            status = "    " if r.get("figure") else ("ok  " if r["ok"] else "FAIL")
            print(f"{status} {r['check']:{width}s}  {r['detail']}")
        print("=" * (width + 60))
        print(f"{len(self.rows)} rows, {self.failed} failed")


# -- 1. parity -------------------------------------------------------------------------------------------------------
def _max_err(a: torch.Tensor, b) -> float:
    return float((a.detach().float().cpu() - torch.as_tensor(np.asarray(b), device="cpu").float()).abs().max())


def gpt_parity(device: str, dtype: torch.dtype, variant: str) -> str:
    """Every fixture GPT: prefill logits and greedy tokens (naive, batched, reference-free) against upstream's."""
    from gsv_core.engine.fastpaths import static_gpt
    from gsv_core.loading import load_gpt
    from gsv_core.models.sampling import SamplingParams

    details = []
    for io_file in sorted(parity_dir().glob("s1_*_io.npz")):
        io = np.load(io_file)
        meta = json.loads((parity_dir() / io_file.name.replace("_io.npz", "_meta.json")).read_text())
        model, _ = load_gpt(parity_dir() / io_file.name.replace("_io.npz", ".ckpt"), torch.device(device), dtype)
        if variant == "static":
            model = static_gpt(model)
        graphs = bool(getattr(model, "graphs", False))
        t = lambda k: torch.from_numpy(io[k]).to(device)  # noqa: E731
        sampling = meta["sampling"]
        params = SamplingParams(top_k=sampling["top_k"], top_p=float(sampling["top_p"]),
                                temperature=float(sampling["temperature"]),
                                repetition_penalty=float(sampling["repetition_penalty"]))
        early = int(sampling["early_stop_num"])
        with torch.inference_mode():
            first = model.prefill_logits(t("in_phones")[None], t("in_bert")[None].to(dtype), t("in_prompt")[None])
            expected = torch.from_numpy(io["out_naive_first_logits"]).float()
            if dtype == torch.float32:
                err = _max_err(first, expected)
                assert err <= FP32_ATOL + FP32_ATOL * float(expected.abs().max()), f"{io_file.name} logits {err:.2e}"
            else:
                rel = float((first.float().cpu() - expected).norm() / expected.norm())
                assert rel < FP16_LOGITS_REL, f"{io_file.name} fp16 logits relative error {rel:.2e}"
                err = rel
            y, idx = model.infer_naive(t("in_phones"), t("in_bert").to(dtype), t("in_prompt"), params, early)
            free, _ = model.infer_naive(t("in_phones"), t("in_bert").to(dtype), None, params, early)
            phones = [t("in_phones"), t("in_phones_b")]
            berts = [t("in_bert").to(dtype), t("in_bert_b").to(dtype)]
            ys, idxs = model.infer_batch(phones, berts, t("in_prompt"), params, early,
                                         max_len=max(p.shape[0] for p in phones))
        if dtype == torch.float32:  # tokens exact in fp32 (fp16 may take another near-tie: reported, not failed)
            assert y.cpu().tolist() == np.asarray(io["out_naive_y"]).reshape(1, -1).tolist(), f"{io_file.name} naive"
            assert idx == int(io["out_naive_idx"])
            assert free.cpu().tolist() == np.asarray(io["out_reffree_y"]).reshape(1, -1).tolist(), "ref-free"
            for i, yy in enumerate(ys):
                assert yy.cpu().tolist() == np.asarray(io[f"out_batch_y{i}"]).tolist(), f"{io_file.name} batch {i}"
            details.append(f"{io_file.stem[:-3]} logits {err:.1e}, tokens exact")
        else:
            same = y.cpu().tolist() == np.asarray(io["out_naive_y"]).reshape(1, -1).tolist()
            details.append(f"{io_file.stem[:-3]} rel {err:.1e}, tokens {'=' if same else '~'} upstream")
        if graphs:
            details.append("graphs on")
    return "; ".join(details)


def sovits_parity(device: str, dtype: torch.dtype) -> str:
    """Every fixture SoVITS version: decoded audio (noise 0) of each case against upstream's."""
    import re

    from gsv_core.loading import load_sovits

    inputs = np.load(parity_dir() / "s2_inputs.npz")
    specs = np.load(parity_dir() / "s2_refer_spec.npz")
    details = []
    for exp_file in sorted(parity_dir().glob("s2_*_expected.npz")):
        version = exp_file.name[len("s2_"):-len("_expected.npz")]
        exp = np.load(exp_file)
        model, info = load_sovits(parity_dir() / f"s2_{version}.pth.xz", torch.device(device), dtype)
        worst = 0.0
        for key in sorted(k for k in exp.files if k.startswith("decode_") and k.endswith("_audio")):
            case = key[len("decode_"):-len("_audio")]
            speed = float(re.search(r"speed([0-9.]+)$", case).group(1))
            n_refs = len([k for k in exp.files if k.startswith(f"decode_{case}_ref_enc_out_ref")])
            suffix = lambda j: "" if j == 0 else f"_{chr(ord('a') + j)}"  # noqa: E731
            refer = [torch.from_numpy(specs["refer_spec" + suffix(j)]).to(device, dtype) for j in range(n_refs)]
            sv = ([torch.from_numpy(inputs["sv_emb" + suffix(j)]).to(device, dtype) for j in range(n_refs)]
                  if model.is_pro else None)
            text = torch.from_numpy(inputs[f"text_{info.symbol_version}"]).to(device)
            codes = torch.from_numpy(inputs["codes"]).to(device)
            with torch.inference_mode():
                cond = model.reference_condition(refer, sv)
                audio = model.decode(codes, text, None, noise_scale=0.0, speed=speed, condition=cond)
            err = _max_err(audio, exp[key])
            worst = max(worst, err)
            limit = FP32_ATOL if dtype == torch.float32 else FP16_AUDIO_ATOL
            assert torch.isfinite(audio).all() and err <= limit, f"{version} {case}: max error {err:.2e} > {limit}"
        details.append(f"{version} {worst:.1e}")
    return "max audio error " + ", ".join(details)


def reference_condition_check(device: str) -> str:
    from gsv_core.features.spectrogram import linear_spectrogram
    from gsv_core.loading import load_sovits

    inputs = np.load(parity_dir() / "s2_inputs.npz")
    model, info = load_sovits(parity_dir() / "s2_v2ProPlus.pth.xz", torch.device(device))
    spec = linear_spectrogram(torch.from_numpy(inputs["wav32"])[None].to(device))
    sv = [torch.from_numpy(inputs["sv_emb"]).to(device)]
    text = torch.from_numpy(inputs[f"text_{info.symbol_version}"]).to(device)
    codes = torch.from_numpy(inputs["codes"]).to(device)
    with torch.inference_mode():
        gen = lambda: torch.Generator(device=device).manual_seed(3)  # noqa: E731
        a = model.decode(codes, text, [spec], 0.5, 1.0, sv_emb=sv, generator=gen())
        b = model.decode(codes, text, None, 0.5, 1.0, generator=gen(), condition=model.reference_condition([spec], sv))
    assert torch.equal(a, b), "the precomputed reference condition changed the audio"
    return "decode(condition=...) == decode(refer, sv_emb) bit for bit"


# -- 2. end to end per version ---------------------------------------------------------------------------------------
def end_to_end(device: str, precision: str, tmp: Path) -> str:
    import soundfile as sf

    sys.path.insert(0, str(ROOT / "tests"))
    from helpers.tiny_models import build_tiny_bert, build_tiny_hubert

    from config import load_settings
    from gsv_core.api import Engine
    from gsv_core.models.sv import ERes2NetV2

    torch.manual_seed(0)
    sv = ERes2NetV2(baseWidth=8, scale=2, expansion=16, m_channels=16, num_blocks=[1, 1, 1, 1]).eval()
    torch.save(sv.state_dict(), tmp / "sv.ckpt")
    inputs = np.load(parity_dir() / "s2_inputs.npz")
    sf.write(tmp / "ref.wav", inputs["wav32"], 32000)
    settings = load_settings(environ={"GSV_HOME": str(tmp)}, my_config=tmp / "none.py")
    engine = Engine.open(settings, device=device, precision=precision, bert_dir=build_tiny_bert(tmp / "bert"),
                         hubert_dir=build_tiny_hubert(tmp / "hubert"), sv_path=tmp / "sv.ckpt", log_path=None)
    out = []
    for version, gpt in (("v1", "s1_v1.ckpt"), ("v2", "s1_v2.ckpt"), ("v2Pro", "s1_v2.ckpt"),
                         ("v2ProPlus", "s1_v2.ckpt")):
        r = engine.synthesize({"text": "今天天气很好。我们去公园散步吧！", "ref_audio": str(tmp / "ref.wav"),
                               "ref_text": "你早上好，这是参考声音。", "gpt_path": str(parity_dir() / gpt),
                               "sovits_path": str(parity_dir() / f"s2_{version}.pth.xz"), "seed": 1,
                               "split_method": "cut5", "max_tokens": 20})
        assert np.isfinite(r.audio).all() and r.audio.std() > 0, f"{version}: silent or non-finite audio"
        out.append(f"{version} {r.duration:.2f} s")
    return f"{precision} on {device}: " + ", ".join(out)


# -- 3. the engine benchmark -----------------------------------------------------------------------------------------
def engine_bench(table: Table, tmp: Path, graphs: bool) -> str:
    out = tmp / f"bench_{'graphs' if graphs else 'eager'}.json"
    cmd = [sys.executable, str(ROOT / "bench" / "bench_engine.py"), "--device", "cuda", "--precision", "fp16",
           "--repeats", "2", "--json", str(out)] + ([] if graphs else ["--no-graphs"])
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if proc.returncode:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
    data = json.loads(out.read_text())
    o, meta = data["ours"], data["meta"]
    tag = "graphs" if graphs else "eager"
    if graphs and not meta.get("cuda_graphs"):
        raise RuntimeError("CUDA graphs were asked for but the engine decoded eagerly (see the log line)")
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    table.figure(f"bench fp16 {tag}: s1 tokens/s single / batched",
                 f"{fmt(o['s1_tokens_per_s'])} / {fmt(o['batched_s1_tokens_per_s'])}")
    table.figure(f"bench fp16 {tag}: s2 audio s/s, RTF uncached / cached / batched",
                 f"{fmt(o['s2_audio_s_per_s'])}; {fmt(o['rtf_uncached_ref'])} / {fmt(o['rtf_cached_ref'])} / "
                 f"{fmt(o['batched_rtf'])}")
    table.figure(f"bench fp16 {tag}: first audio s, peak GPU MiB",
                 f"{fmt(o['first_audio_s'])}, {fmt(o.get('peak_gpu_mib'))}")
    return f"{meta.get('gpu', 'GPU')}, GPT {meta['gpt_variant']}"


# -- 4./5. training --------------------------------------------------------------------------------------------------
def train_s1_epoch(tmp: Path) -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    from finetune.s1_synth import make_experiment

    from gsv_core.finetune.s1_train import S1TrainConfig, train_s1

    layout = make_experiment(tmp / "s1exp")
    cfg = S1TrainConfig(pretrained_s1=str(parity_dir() / "s1_v2.ckpt"), batch_size=8, epochs=1, save_every_epochs=1,
                        device="cuda", precision="fp16", export_dir=str(tmp / "s1w"), export_name="gpu")
    res = train_s1(layout, cfg)
    assert res.exports, "no GPT export"
    return f"{res.steps} steps, export {Path(res.exports[-1]).name}"


def train_s2_epoch(tmp: Path) -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    from finetune.s2_synth import build_experiment

    from gsv_core.finetune.s2_train import S2TrainConfig, train_s2

    layout = build_experiment(tmp / "s2exp", "v2Pro")
    cfg = S2TrainConfig(version="v2Pro", pretrained_s2g=parity_dir() / "s2_v2Pro.pth.xz", batch_size=2,
                        segment_size=4 * 640, num_workers=0, device="cuda", precision="fp16", epochs=1,
                        export_dir=tmp / "s2w")
    res = train_s2(layout, cfg)
    assert res.exports, "no SoVITS export"
    return f"{res.step} steps, export {Path(res.exports[-1]).name}"


def ddp_step(tmp: Path) -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    from finetune.s1_synth import make_experiment

    layout = make_experiment(tmp / "ddpexp")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MASTER_ADDR="127.0.0.1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "gsv_core.finetune.s1_train", "--exp-dir", str(layout.root),
           "--pretrained-s1", str(parity_dir() / "s1_v2.ckpt"), "--epochs", "1", "--batch-size", "8",
           "--device", "cuda", "--precision", "fp16", "--export-dir", str(tmp / "ddpw"), "--export-name", "ddp"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
    return "2 NCCL processes, one export: " + ", ".join(p.name for p in (tmp / "ddpw").iterdir())


# -- main ------------------------------------------------------------------------------------------------------------
def run_cpu_part(table: Table) -> None:
    table.check("GPT parity, CPU fp32, plain", lambda: gpt_parity("cpu", torch.float32, "plain"))
    table.check("GPT parity, CPU fp32, static-cache variant", lambda: gpt_parity("cpu", torch.float32, "static"))
    table.check("SoVITS parity, CPU fp32 (reference condition path)",
                lambda: sovits_parity("cpu", torch.float32))
    table.check("SoVITS reference condition, CPU", lambda: reference_condition_check("cpu"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu-only", action="store_true", help="only the CPU part, even with a GPU")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--json", help="write the table here")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gsv_core.device import cpu_features

    table = Table()
    cuda = torch.cuda.is_available() and not args.cpu_only
    feats = cpu_features()
    table.figure("machine", f"torch {torch.__version__}, CPU {feats['model']} ({feats['capability']}, "
                            f"{' '.join(feats['flags'])})"
                 + (f", GPU {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}" if cuda else ", no GPU"))
    if not cuda:
        print("no CUDA GPU here (or --cpu-only): running the CPU part only", flush=True)
        run_cpu_part(table)
    else:
        from gsv_core.device import configure_cuda

        configure_cuda()
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # fp32 parity: real fp32
        try:
            table.check("GPT parity, CUDA fp32, plain", lambda: gpt_parity("cuda", torch.float32, "plain"))
            table.check("GPT parity, CUDA fp32, static + graphs", lambda: gpt_parity("cuda", torch.float32, "static"))
            table.check("SoVITS parity, CUDA fp32", lambda: sovits_parity("cuda", torch.float32))
        finally:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        table.check("GPT parity, CUDA fp16, static + graphs", lambda: gpt_parity("cuda", torch.float16, "static"))
        table.check("SoVITS parity, CUDA fp16", lambda: sovits_parity("cuda", torch.float16))
        table.check("SoVITS reference condition, CUDA", lambda: reference_condition_check("cuda"))
        with tempfile.TemporaryDirectory(prefix="gsv-gpu-check-") as tmp:
            tmp = Path(tmp)
            (tmp / "e2e").mkdir()
            table.check("end to end per version, CUDA fp16", lambda: end_to_end("cuda", "fp16", tmp / "e2e"))
            if not args.skip_bench:
                table.check("engine benchmark fp16, CUDA graphs", lambda: engine_bench(table, tmp, True))
                table.check("engine benchmark fp16, eager", lambda: engine_bench(table, tmp, False))
            if not args.skip_train:
                table.check("GPT finetune, 1 epoch, AMP fp16", lambda: train_s1_epoch(tmp))
                table.check("SoVITS finetune, 1 epoch, AMP fp16", lambda: train_s2_epoch(tmp))
                if torch.cuda.device_count() >= 2:
                    table.check("DDP, 2 GPUs, GPT training", lambda: ddp_step(tmp))
                else:
                    table.figure("DDP, 2 GPUs", "skipped: one GPU")
    table.print()
    if args.json:
        Path(args.json).write_text(json.dumps(table.rows, indent=1))
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
