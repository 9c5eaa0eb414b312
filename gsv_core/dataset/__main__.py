"""``python -m gsv_core.dataset``: raw recordings -> separated, denoised, sliced, normalised clips -> transcripts ->
``<name>.list`` and the cleaning report, in ``DATASETS_DIR/<name>/`` (the Dataset tab's flow without the UI).

    python -m gsv_core.dataset podcast rec1.mp3 folder/ --steps separate,denoise,slice,normalize,transcribe,report \\
        --asr large-v3 --lang zh
    python -m gsv_core.dataset podcast                      # run again: continues where it stopped (Ctrl-C safe)
    python -m gsv_core.dataset podcast --preview cuts.png   # the slicer's cut points on the first recording
    python -m gsv_core.dataset podcast --status

Settings given once are saved with the dataset; a later run without them reuses them. Ctrl-C stops after the
current window or clip; the same command continues from there.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
from pathlib import Path
from typing import Optional, Sequence

from gsv_core.cli import ProgressBar, stop_on_ctrl_c
from gsv_core.errors import GSVError

from .flow import STEPS, DatasetCancelled, DatasetFlow


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m gsv_core.dataset",
                                 description="Build a training list from raw recordings: vocal separation, "
                                             "denoising, slicing, loudness, transcription, cleaning report.")
    ap.add_argument("name", help="dataset name (folder under DATASETS_DIR)")
    ap.add_argument("inputs", nargs="*", help="recordings and/or folders (saved; default: the saved inputs)")
    ap.add_argument("--steps", help=f"comma-separated steps to include, in this order: {','.join(STEPS)} "
                                    "(default: the saved ones, else slice,normalize,transcribe,report)")
    g = ap.add_argument_group("separation (audio-separator)")
    g.add_argument("--separation-model", help="bs-roformer, mel-roformer, hp2, hp5, deecho-dereverb or a model "
                                              "file name (python -m gsv_core.download --separator NAME)")
    g.add_argument("--separation-window", type=float, help="seconds per window (default 30)")
    g = ap.add_argument_group("denoising (noisereduce)")
    g.add_argument("--denoise-strength", type=float, help="share of the noise removed, 0-1 (default 0.8)")
    g.add_argument("--denoise-nonstationary", action="store_true",
                   help="follow changing noise instead of a fixed noise profile")
    g = ap.add_argument_group("slicer (upstream's parameters)")
    g.add_argument("--threshold", type=float, help="silence threshold in dB (default -34)")
    g.add_argument("--min-length", type=int, help="shortest clip in ms (default 4000)")
    g.add_argument("--min-interval", type=int, help="shortest silence to cut at, ms (default 300)")
    g.add_argument("--hop-size", type=int, help="loudness hop in ms (default 10)")
    g.add_argument("--max-sil-kept", type=int, help="silence kept around a cut, ms (default 500)")
    g.add_argument("--max-amp", type=float, help="normalisation peak (default 0.9)")
    g.add_argument("--alpha", type=float, help="normalisation mix (default 0.25)")
    g = ap.add_argument_group("loudness (pyloudnorm)")
    g.add_argument("--lufs", type=float, help="target integrated loudness (default -20 LUFS)")
    g.add_argument("--peak-db", type=float, help="peak limit in dBFS (default -1)")
    g = ap.add_argument_group("transcription (faster-whisper)")
    g.add_argument("--asr", help="a model name under WHISPER_DIR (e.g. large-v3) or a model folder")
    g.add_argument("--lang", help="language code or auto (default zh)")
    g.add_argument("--speaker", help="speaker of every row (default: the dataset name)")
    g.add_argument("--beam", type=int, help="beam size (default 5)")
    g.add_argument("--no-vad", action="store_true", help="do not skip silence with the VAD")
    g.add_argument("--t2s", action="store_true", help="Traditional -> Simplified Chinese")
    g.add_argument("--punct", choices=("keep", "strip", "fullwidth"), help="Chinese punctuation")
    g.add_argument("--device", help="auto, cpu, cuda (ASR)")
    g.add_argument("--max-new-tokens", type=int, help=argparse.SUPPRESS)
    g = ap.add_argument_group("cleaning report")
    g.add_argument("--ref-min", type=float, help="reference pool from (s; at least 2, default 3)")
    g.add_argument("--ref-max", type=float, help="reference pool to (s; default 5)")
    g.add_argument("--min-seconds", type=float, help="drop clips shorter than this (default 1.2)")
    g.add_argument("--max-seconds", type=float, help="drop clips longer than this (default 15)")
    ap.add_argument("--preview", type=Path, metavar="PNG", help="write the slicer's cut points on the first "
                                                                 "recording (after separation/denoising when they "
                                                                 "ran) as an image and exit")
    ap.add_argument("--status", action="store_true", help="print what the dataset folder holds and exit")
    return ap


def _config(flow: DatasetFlow, args, settings):
    from gsv_core.asr import resolve_model

    cfg = flow.config()
    if args.steps:
        cfg.steps = tuple(s.strip() for s in args.steps.split(",") if s.strip())
    if args.separation_model:
        cfg.separation_model = args.separation_model
    if args.separation_window is not None:
        cfg.separation_window_s = args.separation_window
    den = {}
    if args.denoise_strength is not None:
        den["strength"] = args.denoise_strength
    if args.denoise_nonstationary:
        den["stationary"] = False
    cfg.denoise = dataclasses.replace(cfg.denoise, **den)
    sl = {k: v for k, v in dict(threshold_db=args.threshold, min_length_ms=args.min_length,
                                min_interval_ms=args.min_interval, hop_size_ms=args.hop_size,
                                max_sil_kept_ms=args.max_sil_kept, normalize_max=args.max_amp,
                                alpha=args.alpha).items() if v is not None}
    cfg.slicer = dataclasses.replace(cfg.slicer, **sl)
    ld = {k: v for k, v in dict(target_lufs=args.lufs, peak_db=args.peak_db).items() if v is not None}
    cfg.loudness = dataclasses.replace(cfg.loudness, **ld)
    if args.asr:
        cfg.asr_model = resolve_model(settings.whisper_dir, args.asr)
    elif not cfg.asr_model:
        from gsv_core.asr import list_models

        models = list_models(settings.whisper_dir)
        cfg.asr_model = models[0] if models else ""
    for attr, value in (("language", args.lang), ("speaker", args.speaker), ("beam_size", args.beam),
                        ("punctuation", args.punct), ("device", args.device), ("min_seconds", args.min_seconds),
                        ("max_seconds", args.max_seconds), ("max_new_tokens", args.max_new_tokens)):
        if value is not None:
            setattr(cfg, attr, value)
    if args.no_vad:
        cfg.vad_filter = False
    if args.t2s:
        cfg.t2s = True
    lo, hi = cfg.refpool_seconds
    cfg.refpool_seconds = (args.ref_min if args.ref_min is not None else lo,
                           args.ref_max if args.ref_max is not None else hi)
    return cfg.validate()


def _preview(flow: DatasetFlow, cfg, out: Path, settings) -> None:
    from .audiostream import AudioStream
    from .slicing import plan, preview_figure, scan_loudness

    stem, path, stage = flow.slicer_input(cfg)
    bar = ProgressBar("measuring")
    try:
        scan = scan_loudness(AudioStream(path, cfg.slicer.sample_rate,
                                         max_seconds=float(settings.max_audio_minutes) * 60), cfg.slicer,
                             progress=bar)
    finally:
        bar.close()
    fig = preview_figure(scan, plan(scan, cfg.slicer), cfg.slicer, title=f"{stem} · {stage}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from config import settings

    args = _parser().parse_args(argv)
    stop = threading.Event()

    stop_on_ctrl_c(stop, "stopping after the current window or clip (everything done is kept)")
    bar = None
    try:
        flow = DatasetFlow(settings, args.name)
        if args.status:
            print(json.dumps(flow.status(), ensure_ascii=False, indent=2))
            return 0
        if args.inputs:  # the user's own shell: any path they can read (the app's path policy is for the UI/API)
            flow.set_inputs(args.inputs)
        cfg = _config(flow, args, settings)
        if args.preview:
            _preview(flow, cfg, args.preview, settings)
            return 0
        bar = ProgressBar(args.name)
        summary = flow.run(cfg, progress=bar, cancel=stop.is_set)
        bar.close()
        bar = None
        for step, info in summary["steps"].items():
            print(f"{step:<11} {json.dumps(info, ensure_ascii=False)}")
        if summary.get("list"):
            print(f"list: {summary['list']}")
        if "report" in summary["steps"]:
            print(f"reference pool: {flow.refpool_list}")
        return 0
    except DatasetCancelled as exc:
        if bar is not None:
            bar.close()
        print(f"cancelled: {exc}", file=sys.stderr)
        return 130
    except GSVError as exc:
        if bar is not None:
            bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
