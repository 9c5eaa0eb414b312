"""SoVITS v3 / v4 decode speed on this machine: official-size models with random, seeded weights (no download).

Builds SynthesizerTrnV3 (384 M parameters: text encoder, wns1, DiT 22 x 1024) from the official config, the v3
BigVGAN (official 24 kHz config, 112 M) and the v4 HiFi-GAN vocoder (14 M), then decodes one fragment of about
``--seconds`` of audio after a ``--ref-seconds`` reference through ``gsv_core.engine.cfm_decode`` for each
``sample_steps`` value, and prints the time of each stage (encoder, CFM, vocoder) and the real-time factor
(decode time / audio duration; below 1 is faster than real time). Also prints the CPU and its flags.

    .venv/bin/python bench/bench_v34.py [--versions v3 v4] [--steps 4 8 16 32] [--seconds 3] [--ref-seconds 3]
                                        [--threads N] [--precision fp32|bf16] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BIGVGAN_24K_CONFIG = {  # NVIDIA bigvgan_v2_24khz_100band_256x/config.json (generator part)
    "resblock": "1", "upsample_rates": [4, 4, 2, 2, 2, 2], "upsample_kernel_sizes": [8, 8, 4, 4, 4, 4],
    "upsample_initial_channel": 1536, "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "use_tanh_at_final": False,
    "use_bias_at_final": False, "activation": "snakebeta", "snake_logscale": True, "num_mels": 100,
    "n_fft": 1024, "hop_size": 256, "win_size": 1024, "sampling_rate": 24000,
}


def cpu_description() -> dict:
    import torch

    name, flags = platform.processor() or "?", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("?", "", "x86_64"):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                break
    except OSError:
        pass
    wanted = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_bf16", "avx512_vnni", "amx_bf16",
              "amx_tile", "sse4_2")
    return {
        "cpu": name,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "simd_flags": [f for f in wanted if f in flags],
        "all_flags": " ".join(flags),
    }


def build(version: str, dtype):
    import torch

    from gsv_core.models.s2.configs import official_s2_config
    from gsv_core.models.s2.synthesizer_v3 import build_synthesizer_v3
    from gsv_core.models.vocoder import BigVGAN, HiFiGANVocoder

    torch.manual_seed(1234)
    model = build_synthesizer_v3(official_s2_config(version), version)
    for name, buf in model.named_buffers():  # a codebook to look up (zeros otherwise)
        if name.endswith("_codebook.embed"):
            buf.normal_()
    vocoder = BigVGAN(BIGVGAN_24K_CONFIG) if version == "v3" else HiFiGANVocoder()
    return model.to(dtype=dtype).eval(), vocoder.to(dtype=dtype).eval()


def run_version(version: str, steps_list, seconds: float, ref_seconds: float, dtype, repeats: int) -> list[dict]:
    import torch

    from gsv_core.engine import cfm_decode as cd

    t0 = time.perf_counter()
    model, vocoder = build(version, dtype)
    spec = cd.SPECS[version]
    print(f"  {version}: built in {time.perf_counter() - t0:.1f} s "
          f"(s2 {sum(p.numel() for p in model.parameters()) / 1e6:.0f} M, "
          f"vocoder {sum(p.numel() for p in vocoder.parameters()) / 1e6:.0f} M parameters)", flush=True)
    g = torch.Generator().manual_seed(0)
    n_ref = int(25 * ref_seconds)
    n_tgt = max(1, round(seconds * spec.out_rate / spec.upsample / model.frames_per_token))
    prompt = torch.randint(0, 1024, (1, 1, n_ref), generator=g)
    phones = torch.randint(1, 732, (1, max(2, n_ref // 3)), generator=g)
    refer = torch.rand(1, 1025, int(ref_seconds * 50), generator=g)
    ref_wav = 0.3 * torch.randn(int(ref_seconds * spec.mel_rate), generator=g)
    codes = torch.randint(0, 1024, (1, 1, n_tgt), generator=g)
    tphones = torch.randint(1, 732, (1, max(2, n_tgt // 3)), generator=g)
    rows = []
    with torch.inference_mode():
        ref = cd.prepare_reference(model, prompt, phones, refer.to(dtype), ref_wav)
        warm = cd.encode_fragment(model, ref, codes, tphones)  # first calls pay for lazy kernel setup: not timed
        cd.vocode(vocoder, cd.sample_mels(model, ref, [warm], 1, [cd.generator_noise(None, "cpu", dtype)])[0])
        for steps in steps_list:
            best = None
            for _ in range(repeats):
                t = time.perf_counter()
                fea = cd.encode_fragment(model, ref, codes, tphones)
                t_enc = time.perf_counter() - t
                t = time.perf_counter()
                noise = cd.generator_noise(torch.Generator().manual_seed(1), "cpu", dtype)
                mel = cd.sample_mels(model, ref, [fea], steps, [noise])[0]
                t_cfm = time.perf_counter() - t
                t = time.perf_counter()
                audio = cd.vocode(vocoder, mel)
                t_voc = time.perf_counter() - t
                total = t_enc + t_cfm + t_voc
                if best is None or total < best["total_s"]:
                    dur = audio.numel() / spec.out_rate
                    best = {"version": version, "sample_steps": steps, "audio_s": round(dur, 3),
                            "mel_frames": int(mel.shape[-1]), "prompt_frames": ref.frames,
                            "encode_s": round(t_enc, 3), "cfm_s": round(t_cfm, 3), "vocoder_s": round(t_voc, 3),
                            "total_s": round(total, 3), "rtf": round(total / dur, 3)}
            rows.append(best)
            print(f"  {version} steps={steps:>2}: audio {best['audio_s']:.2f} s  encode {best['encode_s']:.2f} s  "
                  f"cfm {best['cfm_s']:.2f} s  vocoder {best['vocoder_s']:.2f} s  total {best['total_s']:.2f} s  "
                  f"RTF {best['rtf']:.2f}", flush=True)
    return rows


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--versions", nargs="+", default=["v3", "v4"], choices=["v3", "v4"])
    ap.add_argument("--steps", nargs="+", type=int, default=[4, 8, 16, 32])
    ap.add_argument("--seconds", type=float, default=3.0, help="target audio length")
    ap.add_argument("--ref-seconds", type=float, default=3.0, help="reference length (prompt frames)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dtype = torch.float32 if args.precision == "fp32" else torch.bfloat16
    cpu = cpu_description()
    print(f"CPU: {cpu['cpu']} ({cpu['logical_cpus']} logical CPUs, torch threads {cpu['torch_threads']}, "
          f"capability {cpu['torch_cpu_capability']})")
    print(f"SIMD flags: {' '.join(cpu['simd_flags']) or '-'}")
    print(f"all flags: {cpu['all_flags']}")
    print(f"torch {torch.__version__}, {args.precision}")
    rows = []
    for version in args.versions:
        rows += run_version(version, args.steps, args.seconds, args.ref_seconds, dtype, args.repeats)
    print("\nversion  steps  audio_s  RTF")
    for r in rows:
        print(f"{r['version']:>7}  {r['sample_steps']:>5}  {r['audio_s']:>7.2f}  {r['rtf']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "precision": args.precision, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
