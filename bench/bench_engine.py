"""End-to-end engine benchmark on the shared workload (../shared/bench/workload.json), the one upstream is measured on.

Builds official-size models with random, seeded weights (no download), saves them in the official formats into a
temporary folder, loads them through the engine (gsv_core.api.Engine) exactly as a user's files are loaded, and runs:

* per-sentence pass, reference uncached: each target one request, caches cleared before each (reference audio,
  prompt text and BERT processed again, as upstream's figure does), GPT naive path (parallel=False), seed + i;
* the same requests again with warm caches (reference cached);
* batched pass, cold: all targets in one request, one GPT batch (batch_size = number of targets), caches cleared
  first: like for like with upstream's batched figure, whose wall includes reference, speaker embedding and BERT;
  then the same request warm (our caches), reported separately;
* streaming: first-audio latency of one request (batch_size 1): fragment-level streaming (engine.stream), and,
  where the engine offers it (``stream_tokens``), token-level streaming.

Every target produces exactly 5 semantic tokens per Han character (EOS forced after it), as the workload
prescribes, so both implementations do identical work. Prints s1 tokens/s, s2 seconds of audio per second, RTF,
first-audio latency, peak RSS (and peak GPU memory on CUDA), the CPU's instruction sets and torch's capability, and
the load average around the run; ratios against upstream's figures from ``--upstream`` (a run or summary JSON of
/work/shared/tools/upstream-bench; bench/compare_upstream.py measures both interleaved in one sitting).

    .venv/bin/python bench/bench_engine.py [--device cpu|cuda] [--precision fp32|fp16|bf16] [--gpt-int8]
        [--gpt-variant auto|plain|static|onnx|int8|int8-dynamic|int8-onnx] [--no-graphs] [--threads N] [--repeats 3] [--sentences N]
        [--json out.json]
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


def first_audio_seconds(engine, request, mode: str = "fragment") -> float | None:
    """Seconds from the request to its first audio chunk. ``mode="fragment"``: a fragment's audio once its GPT
    decoding and SoVITS decode are done; ``mode="token"``: token-level streaming (the first piece after the first
    few semantic tokens, gsv_core/engine/streaming.py). The stream is closed after its first chunk."""
    t0 = time.perf_counter()
    chunks = engine.stream(request, mode="fragments" if mode == "fragment" else "tokens")
    try:
        for _chunk in chunks:
            return time.perf_counter() - t0
    finally:
        chunks.close()
    return None


def run_once(engine, workload: dict, ref: Path, device_sync) -> dict:
    from gsv_core.api import SynthesisRequest

    sampling = workload["sampling"]
    targets = workload["targets"]
    counts = {t["text"]: t["semantic_tokens"] for t in targets}
    engine.fix_token_counts(lambda text: counts.get(text.strip(), 5 * han_chars(text)))
    base = SynthesisRequest(
        text=targets[0]["text"], ref_audio=str(ref), ref_text=workload["reference"]["prompt_text"],
        ref_lang="all_zh", text_lang="all_zh", split_method=workload["text_split_method"],
        top_k=sampling["top_k"], top_p=sampling["top_p"], temperature=sampling["temperature"],
        repetition_penalty=sampling["repetition_penalty"], pause=workload["fragment_interval_s"],
        noise_scale=workload["s2_decode"]["noise_scale"], speed=workload["s2_decode"]["speed"],
    )
    out: dict = {"per_sentence": [], "per_sentence_cached": [], "batched": {}, "batched_warm": {}}

    def sentence_pass(key: str, cold: bool) -> None:
        for i, t in enumerate(targets):
            if cold:  # as upstream's uncached figure: reference audio and prompt text processed in every request
                engine.clear_caches()
            r = engine.synthesize(base.replace(text=t["text"], seed=sampling["seed"] + i, parallel=False,
                                               batch_size=1))
            device_sync()
            out[key].append({"id": t["id"], "tokens": r.tokens, "audio_s": r.speech_seconds, "wall": r.wall,
                             **{f"t_{k}": v for k, v in r.timings.items()}})

    sentence_pass("per_sentence", cold=True)
    sentence_pass("per_sentence_cached", cold=False)
    joined = "\n".join(t["text"] for t in targets)
    batched = base.replace(text=joined, seed=sampling["seed"], parallel=True, batch_size=len(targets))
    for key, cold in (("batched", True), ("batched_warm", False)):
        if cold:  # like for like: upstream's batched wall includes the reference, speaker embedding and BERT
            engine.clear_caches()
        r = engine.synthesize(batched)
        device_sync()
        out[key] = {"tokens": r.tokens, "audio_s": r.speech_seconds, "wall": r.wall,
                    **{f"t_{k}": v for k, v in r.timings.items()}}
    stream_request = base.replace(text=targets[-1]["text"], seed=7, batch_size=1)
    out["first_audio_s"] = first_audio_seconds(engine, stream_request, "fragment")
    out["first_audio_token_s"] = first_audio_seconds(engine, stream_request, "token")
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
        b, w = run["batched"], run["batched_warm"]
        return {
            "s1_tokens_per_s": tokens / sum(p["t_s1"] for p in ps),
            "s2_audio_s_per_s": audio / sum(p["t_s2"] for p in ps),
            "rtf_uncached_ref": sum(walls) / audio,
            "rtf_cached_ref": cached / audio,
            "batched_s1_tokens_per_s": b["tokens"] / b["t_s1"],
            "batched_s2_audio_s_per_s": b["audio_s"] / b["t_s2"],
            "batched_rtf": b["wall"] / b["audio_s"],
            "batched_rtf_warm": w["wall"] / w["audio_s"],
            "first_audio_s": run.get("first_audio_s"),
            "first_audio_token_s": run.get("first_audio_token_s"),
            "stage_totals_s": {k[2:]: sum(p[k] for p in ps) for k in ps[0] if k.startswith("t_")},
        }

    rows = [per_run(r) for r in runs]
    keys = [k for k in rows[0] if k != "stage_totals_s"]
    agg = {k: (med([r[k] for r in rows]) if all(r[k] is not None for r in rows) else None) for k in keys}
    agg["stage_totals_s"] = rows[len(rows) // 2]["stage_totals_s"]
    agg["runs"] = rows
    return agg


def load_upstream(path: Path) -> dict:
    """Upstream figures keyed like our summary: from a summary.json (aggregate medians) or one run JSON."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    flat: dict = {}
    if "aggregate" in data:
        for k, v in data["aggregate"].items():
            if isinstance(v, dict) and "median" in v:
                flat[k] = v["median"]
    else:
        for k, v in (data.get("naive", {}).get("summary") or {}).items():
            if not isinstance(v, dict):
                flat[f"naive.{k}"] = v
        for k, v in ((data.get("batched") or {}).get("summary") or {}).items():
            flat[f"batched.{k}"] = v
        flat["peak_rss_inference_mib"] = data.get("peak_rss_inference_mib")
    return flat


def load_average() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


TABLE = [
    ("s1 tokens/s (per sentence)", "s1_tokens_per_s", "naive.s1_tokens_per_s"),
    ("s1 tokens/s (batched)", "batched_s1_tokens_per_s", "batched.s1_tokens_per_s"),
    ("s2 audio s/s (per sentence)", "s2_audio_s_per_s", "naive.s2_audio_s_per_s"),
    ("RTF per sentence, ref uncached", "rtf_uncached_ref", "naive.rtf_uncached_ref"),
    ("RTF per sentence, ref cached", "rtf_cached_ref", "naive.rtf_cached_ref"),
    ("RTF batched, cold", "batched_rtf", "batched.rtf"),
    ("RTF batched, warm caches", "batched_rtf_warm", None),
    ("first audio, fragment stream (s)", "first_audio_s", None),
    ("first audio, token stream (s)", "first_audio_token_s", None),
    ("peak RSS MiB", "peak_rss_mib", "peak_rss_inference_mib"),
    ("peak GPU memory MiB", "peak_gpu_mib", None),
]


def print_table(ours: dict, upstream: dict, title: str) -> None:
    print(title)
    print(f"{'metric':34s} {'ours':>10s} {'upstream':>10s} {'ratio':>7s}")
    for label, key, up_key in TABLE:
        mine = ours.get(key)
        if mine is None and key in ("peak_gpu_mib", "first_audio_token_s"):
            continue
        theirs = upstream.get(up_key) if up_key else None
        ratio = ""
        if mine and theirs:
            better_low = "rtf" in key or "rss" in key or "first" in key
            ratio = f"{(theirs / mine if better_low else mine / theirs):.2f}x"
        fmt = lambda v: "-" if v is None else f"{v:.3f}" if v < 100 else f"{v:.0f}"  # noqa: E731
        print(f"{label:34s} {fmt(mine):>10s} {fmt(theirs):>10s} {ratio:>7s}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", default=str(SHARED / "workload.json"))
    ap.add_argument("--upstream", default=str(SHARED / "upstream-cpu" / "summary.json"),
                    help="upstream's figures (a summary.json or one run JSON of tools/upstream-bench)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--gpt-int8", action="store_true", help="CPU: the GPT's projections as int8 (GPT_INT8)")
    ap.add_argument("--gpt-variant", default="auto",
                    choices=["auto", "plain", "static", "onnx", "int8", "int8-dynamic", "int8-onnx"],
                    help="force a GPT decoding variant (auto: what gsv_core.engine.fastpaths picks)")
    ap.add_argument("--no-graphs", action="store_true", help="CUDA: decode with the eager static step")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sentences", type=int, default=0, help="only the first N targets (0: all)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    workload = json.loads(Path(args.workload).read_text(encoding="utf-8"))
    if args.sentences:
        workload["targets"] = workload["targets"][: args.sentences]
    ref = Path(args.workload).parent / workload["reference"]["wav"]
    from config import load_settings
    from gsv_core.api import Engine
    from gsv_core.device import cpu_features
    from gsv_core.engine import fastpaths

    if args.gpt_variant != "auto":  # a benchmark override of the one place variants are chosen
        forced = args.gpt_variant
        fastpaths.gpt_variant_name = lambda settings, device: forced  # type: ignore[assignment]
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="gsv-bench-") as tmp:
        t0 = time.perf_counter()
        paths = build_models(workload, Path(tmp))
        print(f"built and saved official-size random models in {time.perf_counter() - t0:.1f} s", flush=True)
        env = {"GSV_HOME": tmp, "GSV_USE_G2PW": "0", "GSV_GPT_INT8": "1" if args.gpt_int8 else "0"}
        settings = load_settings(environ=env, my_config=Path(tmp) / "none.py")
        engine = Engine.open(settings, device=args.device, precision=args.precision, bert_dir=paths["bert"],
                             hubert_dir=paths["hubert"], sv_path=paths["sv"], log_path=None, memory_budget_gb=64)
        engine.set_models(paths["gpt"], paths["sovits"])
        cuda = engine.device.type == "cuda"
        gpt = engine._pipeline.registry.gpt(paths["gpt"])[0]  # the variant the engine decodes with
        if args.no_graphs and hasattr(gpt, "disable_graphs"):
            gpt.disable_graphs("--no-graphs")
        graphs = bool(getattr(gpt, "graphs", False))
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        # warm-up: one full untimed request, as upstream's harness does
        run_once(engine, {**workload, "targets": workload["targets"][:1]}, ref, sync)
        peak_rss_reset()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        runs = []
        for i in range(args.repeats):
            runs.append(run_once(engine, workload, ref, sync))
            print(f"run {i + 1}/{args.repeats} done", flush=True)
        ours = summarise(runs)
        ours["peak_rss_mib"] = peak_rss_mib()
        ours["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    meta = {"device": str(engine.device), "dtype": str(engine.dtype), "gpt_int8": args.gpt_int8,
            "gpt_variant": type(gpt).__name__ + (f"/{gpt.backend}" if hasattr(gpt, "backend") else "")
            + (f" ({getattr(gpt, 'quantized')})" if hasattr(gpt, "quantized") else ""),
            "cuda_graphs": graphs, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "cpu": cpu_features(),
            "load_before": load_before, "load_after": load_average(),
            "tokens": sum(t["semantic_tokens"] for t in workload["targets"]), "sentences": len(workload["targets"])}
    if cuda:
        meta["gpu"] = torch.cuda.get_device_name(engine.device)
    upstream = load_upstream(Path(args.upstream))
    cpu = meta["cpu"]
    print(f"\nworkload {workload['name']} on {meta['device']} {meta['dtype']}, GPT {meta['gpt_variant']}"
          f"{', CUDA graphs' if graphs else ''}, {meta['threads']} threads, {args.repeats} runs (median)")
    print(f"CPU {cpu['model']} ({cpu['cores']} cores), torch capability {cpu['capability']}, flags "
          f"{' '.join(cpu['flags']) or '?'}; load average {load_before} -> {meta['load_after']}")
    print_table(ours, upstream, "")
    print("stage totals (per-sentence pass, s): "
          + ", ".join(f"{k} {v:.2f}" for k, v in ours["stage_totals_s"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "ours": ours, "upstream": upstream}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
