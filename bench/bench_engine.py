"""End-to-end engine benchmark on the shared workload (../shared/bench/workload.json), the one upstream is measured on.

Builds official-size models with random, seeded weights (no download), saves them in the official formats into a
temporary folder, loads them through the engine exactly as a user's files are loaded, and runs:

* per-sentence pass: each target one request (reference processed on first use, then served from the cache),
  GPT naive path (parallel=False), seed + i per target;
* batched pass: all targets in one request, one GPT batch (batch_size = number of targets);
* streaming: first-audio latency of one request (batch_size 1).

Every target produces exactly 5 semantic tokens per Han character (EOS forced after it), as the workload
prescribes, so both implementations do identical work. Prints s1 tokens/s, s2 seconds of audio per second, RTF,
first-audio latency and peak RSS, next to upstream's figures from ../shared/bench/upstream-cpu/summary.json.

    .venv/bin/python bench/bench_engine.py [--device cpu|cuda] [--precision fp32|fp16|bf16] [--threads N]
                                           [--repeats 3] [--json out.json]

How upstream's side was measured (not part of this project): a harness kept outside the project runs upstream's
TTS.run at commit 48b1a01 on the same workload and machine kind (3 fresh processes); its summary is the JSON above.
To re-measure it, run upstream's TTS.run with the models and settings listed in workload.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "bench"


def han_chars(text: str) -> int:
    return len(re.findall(r"[\u4e00-\u9fff]", text))


def build_models(workload: dict, folder: Path) -> dict[str, Path]:
    """Random official-size models saved in the official formats; seeds as the workload prescribes."""
    import torch

    from gsv_core.checkpoints import save_gpt_checkpoint, save_sovits_checkpoint
    from gsv_core.models.s1 import Text2Semantic
    from gsv_core.models.s2 import build_synthesizer
    from gsv_core.models.sv import ERes2NetV2

    seed = workload["weights"]["seed"]
    off = workload["weights"]["seed_offsets"]
    models = workload["models"]
    paths = {}

    torch.manual_seed(seed + off["s1"])
    s1_cfg = {"model": models["s1"]["model"], "data": models["s1"]["data"]}
    gpt = Text2Semantic.from_config(s1_cfg["model"], max_sec=s1_cfg["data"]["max_sec"])
    paths["gpt"] = save_gpt_checkpoint(folder / "bench-gpt.ckpt", gpt.state_dict(), s1_cfg, "GPT-e1")
    del gpt

    torch.manual_seed(seed + off["s2"])
    s2 = models["s2"]
    hps = {"data": s2["data"], "train": s2["train"], "model": s2["model"]}
    sovits = build_synthesizer(hps, s2["version"])
    gen = torch.Generator().manual_seed(seed + off["codebook"])
    sd = sovits.state_dict()
    cb = "quantizer.vq.layers.0._codebook."
    sd[cb + "embed"] = torch.randn(sd[cb + "embed"].shape, generator=gen)
    sd[cb + "inited"] = torch.ones_like(sd[cb + "inited"])
    paths["sovits"] = save_sovits_checkpoint(folder / "bench-sovits.pth", sd, hps, "1epoch_1iteration", s2["version"])
    del sovits, sd

    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast, HubertConfig, HubertModel
    from transformers import Wav2Vec2FeatureExtractor

    torch.manual_seed(seed + off["bert"])
    texts = [workload["reference"]["prompt_text"]] + [t["text"] for t in workload["targets"]]
    from gsv_core.text import preprocess_text, text_to_phones

    norm = [text_to_phones(t, "all_zh", "v2", use_g2pw=False, user_dict=None).norm_text for t in texts]
    chars = sorted(set("".join(texts + norm)))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars
    vocab += [f"[unused{i}]" for i in range(models["bert"]["config"]["vocab_size"] - len(vocab))]
    bert_dir = folder / "bert"
    BertForMaskedLM(BertConfig(**models["bert"]["config"])).save_pretrained(bert_dir)
    BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=False,
                      tokenize_chinese_chars=True).save_pretrained(bert_dir)
    paths["bert"] = bert_dir

    torch.manual_seed(seed + off["hubert"])
    hub_dir = folder / "hubert"
    HubertModel(HubertConfig(**models["hubert"]["config"])).save_pretrained(hub_dir)
    Wav2Vec2FeatureExtractor(**models["hubert"]["feature_extractor"]).save_pretrained(hub_dir)
    paths["hubert"] = hub_dir

    torch.manual_seed(seed + off["sv"])
    sv = ERes2NetV2(**models["sv"]["ctor_kwargs"], **models["sv"]["defaults"])
    torch.save(sv.state_dict(), folder / "sv.ckpt")
    paths["sv"] = folder / "sv.ckpt"
    return paths


def peak_rss_reset() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_once(engine, workload: dict, ref: Path, device_sync) -> dict:
    from gsv_core.engine import SynthesisRequest

    sampling = workload["sampling"]
    targets = workload["targets"]
    counts = {t["text"]: t["semantic_tokens"] for t in targets}
    engine.fixed_token_count = lambda text: counts.get(text.strip(), 5 * han_chars(text))
    base = SynthesisRequest(
        text=targets[0]["text"], ref_audio=str(ref), ref_text=workload["reference"]["prompt_text"],
        ref_lang="all_zh", text_lang="all_zh", split_method=workload["text_split_method"],
        top_k=sampling["top_k"], top_p=sampling["top_p"], temperature=sampling["temperature"],
        repetition_penalty=sampling["repetition_penalty"], pause=workload["fragment_interval_s"],
        noise_scale=workload["s2_decode"]["noise_scale"], speed=workload["s2_decode"]["speed"],
    )
    out: dict = {"per_sentence": [], "per_sentence_cached": [], "batched": {}}

    def sentence_pass(key: str, cold: bool) -> None:
        for i, t in enumerate(targets):
            if cold:  # as upstream's uncached figure: reference audio and prompt text processed in every request
                engine.refs = type(engine.refs)()
                engine.text = type(engine.text)(engine.text._bert_model, engine.text.dtype)
            r = engine.synthesize(base.replace(text=t["text"], seed=sampling["seed"] + i, parallel=False,
                                               batch_size=1))
            device_sync()
            out[key].append({"id": t["id"], "tokens": r.tokens, "audio_s": r.speech_seconds, "wall": r.wall,
                             **{f"t_{k}": v for k, v in r.timings.items()}})

    sentence_pass("per_sentence", cold=True)
    sentence_pass("per_sentence_cached", cold=False)
    joined = "\n".join(t["text"] for t in targets)
    r = engine.synthesize(base.replace(text=joined, seed=sampling["seed"], parallel=True, batch_size=len(targets)))
    device_sync()
    out["batched"] = {"tokens": r.tokens, "audio_s": r.speech_seconds, "wall": r.wall,
                      **{f"t_{k}": v for k, v in r.timings.items()}}
    t0 = time.perf_counter()
    for chunk in engine.stream(base.replace(text=targets[-1]["text"], seed=7, batch_size=1)):
        out["first_audio_s"] = time.perf_counter() - t0
        break
    return out


def summarise(runs: list[dict]) -> dict:
    def med(values):
        return statistics.median(values)

    def per_run(run):
        ps, warm = run["per_sentence"], run["per_sentence_cached"]
        tokens = sum(p["tokens"] for p in ps)
        audio = sum(p["audio_s"] for p in ps)
        walls = [p["wall"] for p in ps]
        cached = sum(p["wall"] for p in warm)
        b = run["batched"]
        return {
            "s1_tokens_per_s": tokens / sum(p["t_s1"] for p in ps),
            "s2_audio_s_per_s": audio / sum(p["t_s2"] for p in ps),
            "rtf_uncached_ref": sum(walls) / audio,
            "rtf_cached_ref": cached / audio,
            "batched_s1_tokens_per_s": b["tokens"] / b["t_s1"],
            "batched_s2_audio_s_per_s": b["audio_s"] / b["t_s2"],
            "batched_rtf": b["wall"] / b["audio_s"],
            "first_audio_s": run.get("first_audio_s"),
            "stage_totals_s": {k[2:]: sum(p[k] for p in ps) for k in ps[0] if k.startswith("t_")},
        }

    rows = [per_run(r) for r in runs]
    keys = [k for k in rows[0] if k != "stage_totals_s"]
    agg = {k: med([r[k] for r in rows]) for k in keys}
    agg["stage_totals_s"] = rows[len(rows) // 2]["stage_totals_s"]
    agg["runs"] = rows
    return agg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", default=str(SHARED / "workload.json"))
    ap.add_argument("--upstream", default=str(SHARED / "upstream-cpu" / "summary.json"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--gpt-int8", action="store_true", help="CPU: GPT in bf16 with weight-only int8 projections")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    workload = json.loads(Path(args.workload).read_text(encoding="utf-8"))
    ref = Path(args.workload).parent / workload["reference"]["wav"]
    from config import load_settings
    from gsv_core.engine import ModelRegistry, TTSEngine

    with tempfile.TemporaryDirectory(prefix="gsv-bench-") as tmp:
        t0 = time.perf_counter()
        paths = build_models(workload, Path(tmp))
        print(f"built and saved official-size random models in {time.perf_counter() - t0:.1f} s", flush=True)
        env = {"GSV_HOME": tmp, "GSV_USE_G2PW": "0", "GSV_GPT_INT8": "1" if args.gpt_int8 else "0"}
        settings = load_settings(environ=env, my_config=Path(tmp) / "none.py")
        registry = ModelRegistry(settings, device=args.device, precision=args.precision, budget_gb=64)
        engine = TTSEngine(registry, bert_dir=paths["bert"], hubert_dir=paths["hubert"], sv_path=paths["sv"],
                           log_path=None)
        engine.set_models(paths["gpt"], paths["sovits"])
        sync = torch.cuda.synchronize if registry.device.type == "cuda" else (lambda: None)
        # warm-up: one full untimed request, as upstream's harness does
        run_once(engine, {**workload, "targets": workload["targets"][:1]}, ref, sync)
        peak_rss_reset()
        runs = []
        for i in range(args.repeats):
            runs.append(run_once(engine, workload, ref, sync))
            print(f"run {i + 1}/{args.repeats} done", flush=True)
        ours = summarise(runs)
        ours["peak_rss_mib"] = peak_rss_mib()
    meta = {"device": str(registry.device), "dtype": str(registry.dtype), "gpt_int8": args.gpt_int8, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
            "tokens": sum(t["semantic_tokens"] for t in workload["targets"])}
    table = [
        ("s1 tokens/s (per sentence)", "s1_tokens_per_s", "naive.s1_tokens_per_s"),
        ("s1 tokens/s (batched)", "batched_s1_tokens_per_s", "batched.s1_tokens_per_s"),
        ("s2 audio s/s (per sentence)", "s2_audio_s_per_s", "naive.s2_audio_s_per_s"),
        ("RTF per sentence, ref uncached", "rtf_uncached_ref", "naive.rtf_uncached_ref"),
        ("RTF per sentence, ref cached", "rtf_cached_ref", "naive.rtf_cached_ref"),
        ("RTF batched", "batched_rtf", "batched.rtf"),
        ("first audio (streaming) s", "first_audio_s", None),
        ("peak RSS MiB", "peak_rss_mib", "peak_rss_inference_mib"),
    ]
    up_flat = {}
    if Path(args.upstream).exists():
        for k, v in json.loads(Path(args.upstream).read_text()).get("aggregate", {}).items():
            if isinstance(v, dict) and "median" in v:
                up_flat[k] = v["median"]
    print(f"\nworkload {workload['name']} on {meta['device']} {meta['dtype']}"
          f"{' (GPT int8 weights, bf16 activations)' if args.gpt_int8 else ''}, {meta['threads']} threads, "
          f"{args.repeats} runs (median)")
    print(f"{'metric':34s} {'ours':>10s} {'upstream':>10s} {'ratio':>7s}")
    for label, key, up_key in table:
        mine = ours.get(key)
        theirs = up_flat.get(up_key) if up_key else None
        ratio = ""
        if mine and theirs:
            better_low = "rtf" in key or "rss" in key or "first" in key
            ratio = f"{(theirs / mine if better_low else mine / theirs):.2f}x"
        fmt = lambda v: "-" if v is None else f"{v:.3f}" if v < 100 else f"{v:.0f}"
        print(f"{label:34s} {fmt(mine):>10s} {fmt(theirs):>10s} {ratio:>7s}")
    print("stage totals (per-sentence pass, s): " + ", ".join(f"{k} {v:.2f}" for k, v in ours["stage_totals_s"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "ours": ours, "upstream": up_flat}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
