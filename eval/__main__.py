"""``python -m eval``: run an evaluation, write its report, or transcribe audio.

    python -m eval run --config run.yaml [--run-dir DIR]
    python -m eval run --csv tests.csv --system base:s1.ckpt:s2.pth --system ft:s1ft.ckpt:s2ft.pth \\
        --ref ref.wav --ref-text "..." --asr-model pretrained_models/faster-whisper/large-v3 [--samples 2 ...]
    python -m eval report RUN_DIR
    python -m eval asr ...            (the options of python -m gsv_core.asr)

A run is resumable: start the same command again on the same run folder and finished utterances are skipped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from gsv_core.errors import GSVError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m eval", description="TTS evaluation: TTS -> ASR -> metrics -> report.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="synthesise, transcribe and score a test CSV (resumable), then write the report")
    run.add_argument("--config", type=Path, help="run config (YAML); flags below override its values")
    run.add_argument("--csv", dest="test_csv", help="test CSV (id, text, optional ref_audio, ref_text, lang)")
    run.add_argument("--system", action="append", default=[], metavar="NAME:GPT:SOVITS",
                     help="a system to evaluate (repeat; uses --ref/--ref-text)")
    run.add_argument("--ref", default="", help="reference audio of the --system entries")
    run.add_argument("--ref-text", default="", help="reference text of the --system entries")
    run.add_argument("--asr-model", help="CTranslate2 Whisper model folder")
    run.add_argument("--asr-lang", dest="asr_language", help="ASR language (default zh)")
    run.add_argument("--samples", type=int, help="samples per text (default 1)")
    run.add_argument("--seed", type=int, help="base seed (default 1234); every sample's seed is recorded")
    run.add_argument("--reroll-cer", type=float, help="re-roll when the error rate (CER/WER) is above this")
    run.add_argument("--reroll-sim", type=float, help="re-roll when speaker similarity is below this")
    run.add_argument("--max-tries", type=int, help="tries per utterance including the first (default 1)")
    run.add_argument("--run-dir", type=Path, help="run folder (default: reports_dir/eval_TIMESTAMP)")
    run.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    rep = sub.add_parser("report", help="write report.html/json and CSVs of a run folder")
    rep.add_argument("run_dir", type=Path)
    sub.add_parser("asr", help="speech recognition (python -m eval asr --help)", add_help=False)
    return ap


def _config_from_args(args) -> "RunConfig":
    from eval.run import EvalError, RunConfig

    data: dict = {}
    base = None
    if args.config:
        import yaml

        if not args.config.is_file():
            raise EvalError(f"run config not found: {args.config}")
        try:
            data = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise EvalError(f"{args.config} is not valid YAML: {exc}") from None
        base = args.config.resolve().parent
    for key in ("test_csv", "asr_language", "samples", "seed"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    if args.asr_model:
        data["asr_model"] = str(Path(args.asr_model).resolve())
    if args.test_csv:
        data["test_csv"] = str(Path(args.test_csv).resolve())
    if args.system:
        systems = []
        for spec in args.system:
            parts = spec.split(":", 2)
            if len(parts) != 3:
                raise EvalError(f"--system {spec!r}: use NAME:GPT:SOVITS")
            systems.append(dict(name=parts[0], gpt=str(Path(parts[1]).resolve()),
                                sovits=str(Path(parts[2]).resolve()),
                                ref_audio=str(Path(args.ref).resolve()) if args.ref else "", ref_text=args.ref_text))
        data["systems"] = systems
    reroll = dict(data.get("reroll") or {})
    for flag, key in (("reroll_cer", "max_error_rate"), ("reroll_sim", "min_similarity"), ("max_tries", "max_tries")):
        if getattr(args, flag) is not None:
            reroll[key] = getattr(args, flag)
    if reroll:
        data["reroll"] = reroll
    if args.run_dir:
        data["run_dir"] = str(args.run_dir.resolve())
    return RunConfig.from_dict(data, base=base)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "asr":
        from gsv_core.asr.__main__ import main as asr_main

        sys.argv[0] = "python -m eval asr"
        return asr_main(argv[1:])
    ap = _parser()
    args = ap.parse_args(argv)
    if not args.command:
        ap.print_help()
        return 2
    try:
        if args.command == "report":
            from eval.report import write_report

            print(write_report(args.run_dir))
            return 0
        from config import settings
        from eval.report import write_report
        from eval.run import EvalCancelled, EvalRunner
        from gsv_core.api import Engine
        from gsv_core.asr import ASRService

        config = _config_from_args(args)
        engine = Engine.open(settings)
        for system in config.systems:  # the app's model-folder rule, as in the Eval tab
            engine.check_model_path(system.gpt, "GPT")
            engine.check_model_path(system.sovits, "SoVITS")
        runner = EvalRunner(engine, ASRService.from_settings(settings), settings)

        def progress(fraction: float, message: str) -> None:
            print(f"[{fraction * 100:5.1f}%] {message}", file=sys.stderr, flush=True)

        try:
            run_dir = runner.run(config, progress=progress)
        except KeyboardInterrupt:
            print("interrupted: run the same command again to resume", file=sys.stderr)
            return 130
        except EvalCancelled as exc:
            print(str(exc), file=sys.stderr)
            return 130
        print(run_dir)
        if not args.no_report:
            print(write_report(run_dir))
        return 0
    except GSVError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
