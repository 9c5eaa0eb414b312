"""``python -m gsv_core.asr``: transcribe audio files or folders with faster-whisper into a GPT-SoVITS ``.list``,
CSV or SRT (the ASR tab's engine from the command line)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from gsv_core.errors import GSVError

from .service import (COMPUTE_TYPES, FORMATS, PUNCTUATION_MODES, ASRError, ASROptions, ASRService, _safe_name,
                      default_output_name, save)


def _parse_formats(raw: Sequence[str]) -> list[str]:
    out: list[str] = []
    for item in raw:
        for f in item.split(","):
            f = f.strip().lower()
            if not f:
                continue
            if f not in FORMATS:
                raise ASRError(f"unknown format {f!r} (choose from {', '.join(FORMATS)})")
            if f not in out:
                out.append(f)
    return out or ["list"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    from config import settings

    ap = argparse.ArgumentParser(prog="python -m gsv_core.asr",
                                 description="Transcribe audio files or folders with faster-whisper into a "
                                             "GPT-SoVITS .list, CSV or SRT.")
    ap.add_argument("inputs", nargs="*", help="audio files and/or folders (folders are searched recursively)")
    ap.add_argument("--model", help="CTranslate2 Whisper model folder (default: the only/first folder under "
                                    f"whisper_dir, {settings.whisper_dir})")
    ap.add_argument("--lang", default="zh", help="language code or 'auto' (default zh)")
    ap.add_argument("--format", action="append", default=[], help="list, csv, srt (repeat or comma-separate; "
                                                                  "default list)")
    ap.add_argument("--out", type=Path, default=None, help=f"output folder (default {settings.output_dir}/asr)")
    ap.add_argument("--name", default=None, help="base name of the result files (default: the input's name)")
    ap.add_argument("--speaker", default=None, help="speaker name for every row (default: each file's folder name)")
    ap.add_argument("--no-vad", dest="vad", action="store_false", help="disable the Silero VAD filter")
    ap.add_argument("--beam", type=int, default=5, help="beam size (default 5)")
    ap.add_argument("--device", default=settings.device if settings.device in ("auto", "cpu") or
                    settings.device.startswith("cuda") else "auto")
    ap.add_argument("--compute-type", default="auto", choices=COMPUTE_TYPES,
                    help="auto = int8 on CPU, float16 on CUDA")
    ap.add_argument("--t2s", action="store_true", help="convert Traditional to Simplified Chinese")
    ap.add_argument("--punct", default="keep", choices=PUNCTUATION_MODES, help="Chinese punctuation handling")
    ap.add_argument("--max-new-tokens", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--temperature", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--list-models", action="store_true", help="list the model folders under whisper_dir and exit")
    args = ap.parse_args(argv)

    service = ASRService.from_settings(settings)
    try:
        if args.list_models:
            models = service.list_models()
            if not models:
                print(f"no CTranslate2 Whisper model folders under {settings.whisper_dir}", file=sys.stderr)
                return 1
            print("\n".join(models))
            return 0
        if not args.inputs:
            ap.error("give at least one audio file or folder")
        formats = _parse_formats(args.format)
        model = args.model
        if not model:
            models = service.list_models()
            if not models:
                raise ASRError(f"no --model given and no model folder under {settings.whisper_dir}")
            model = models[0]
        opts = ASROptions(model_dir=model, language=args.lang, vad_filter=args.vad, beam_size=args.beam,
                          device=args.device, compute_type=args.compute_type, t2s=args.t2s,
                          punctuation=args.punct, speaker=args.speaker, max_new_tokens=args.max_new_tokens,
                          temperature=args.temperature)
        t0 = time.perf_counter()

        def report(fraction: float, message: str) -> None:
            print(f"[{fraction * 100:5.1f}%] {message}", file=sys.stderr, flush=True)

        rows = service.transcribe(args.inputs, opts, progress=report)
        name = _safe_name(args.name) if args.name else default_output_name(args.inputs)
        out_dir = args.out if args.out is not None else settings.output_dir / "asr"
        failed = [r for r in rows if not r.ok]
        for r in failed:
            print(f"error: {r.error}", file=sys.stderr)
        for fmt in formats:
            for p in save(rows, fmt, out_dir, name, default_lang=args.lang if args.lang != "auto" else "zh"):
                print(p)
        print(f"{len(rows) - len(failed)}/{len(rows)} files transcribed in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
        return 2 if failed else 0
    except GSVError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
