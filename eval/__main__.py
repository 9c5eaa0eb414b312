"""``python -m eval``: run an evaluation, write its report, or transcribe audio.

    python -m eval run --config run.yaml [--run-dir DIR]
    python -m eval run --csv tests.csv --system base:s1.ckpt:s2.pth --system ft:s1ft.ckpt:s2ft.pth \\
        --ref ref.wav --ref-text "..." --asr-model pretrained_models/faster-whisper/large-v3 [--samples 2 ...]
    python -m eval run --csv outputs.csv --asr-model ...   (a CSV with audio:NAME columns: existing audio is scored)
    python -m eval run --config run.yaml --numerals digits --seed-tts-eval --bucket-by chars --bucket-edges 20,60
    python -m eval run --config run.yaml --variants all --run-dir reports/punct   (punctuation sensitivity)
    python -m eval run --config run.yaml --devices all     (one engine per local GPU; resume is unchanged)
    python -m eval report RUN_DIR [--bucket-by seconds --bucket-edges 4,10]
    python -m eval asr ...            (the options of python -m gsv_core.asr)

Every flag has a YAML key of the same name (numerals, seed_compatible, drop_interjections, similarity_model,
wavlm_dir, baseline, buckets: {by, edges, labels}, variants, asr_cache, devices); a flag overrides the file. Every
``audio:NAME`` column of the test CSV that names no system becomes an external system (scored, not synthesised).

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
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="an engine parameter of the --system entries (repeat; any of: "
                          + ", ".join(_system_params()) + ")")
    run.add_argument("--run-dir", type=Path, help="run folder (default: reports_dir/eval_TIMESTAMP)")
    run.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    run.add_argument("--devices", help="spread the synthesis over local devices, one engine process each: all (every "
                                       "GPU when there are two or more), cuda:0,cuda:1, or default (one engine; "
                                       "default: the JOB_DEVICES setting)")
    score = run.add_argument_group("scoring")
    score.add_argument("--numerals", choices=("off", "zh", "digits"),
                       help="unify numbers before scoring: zh = digits to Chinese numerals, digits = Chinese numerals "
                            "to digits (both texts; default off: 25 vs 二十五 is an error)")
    score.add_argument("--seed-tts-eval", dest="seed_compatible", action="store_const", const=True,
                       help="also score with seed-tts-eval's procedure (seed_wer_percent next to ours)")
    score.add_argument("--drop-interjections", action="store_const", const=True,
                       help="drop interjections (嗯, 啊, uh, um ...) from both texts before scoring")
    score.add_argument("--similarity-model", choices=_similarity_models(),
                       help="speaker similarity scorer (default eres2netv2: the 192-d verification embedding)")
    score.add_argument("--wavlm-dir", help="WavLMForXVector model folder for --similarity-model wavlm-sv")
    score.add_argument("--sv-path", help="ERes2NetV2 speaker model (default: the settings' SV_PATH; '' = no "
                                         "similarity)")
    score.add_argument("--baseline", help="system the others are compared with (F0/energy vs_base_*; default: "
                                          "the first)")
    score.add_argument("--variants", help="punctuation variants of every sentence: 'all' or a comma list of "
                                          "no_punct, no_commas, extra_commas, fullwidth, halfwidth")
    score.add_argument("--asr-cache", help="ASR transcript cache file (default REPORTS_DIR/asr_cache.jsonl; '' = "
                                           "none)")
    _bucket_args(run)
    rep = sub.add_parser("report", help="write report.html/json and CSVs of a run folder")
    rep.add_argument("run_dir", type=Path)
    _bucket_args(rep)
    sub.add_parser("asr", help="speech recognition (python -m eval asr --help)", add_help=False)
    return ap


def _system_params() -> tuple:
    from eval.run import SYSTEM_PARAMS

    return SYSTEM_PARAMS


def _similarity_models() -> tuple:
    from eval.similarity import SIMILARITY_MODELS

    return tuple(SIMILARITY_MODELS)


def _bucket_args(parser) -> None:
    g = parser.add_argument_group("length buckets (report only: changing them never reruns anything)")
    g.add_argument("--bucket-by", choices=("tokens", "chars", "seconds"),
                   help="what the length of a sentence is (default tokens: CJK characters + words)")
    g.add_argument("--bucket-edges", help="comma-separated edges, e.g. 15,40 (short <= 15 < medium <= 40 < long)")
    g.add_argument("--bucket-labels", help="comma-separated labels, one more than the edges (default "
                                           "short,medium,long)")


def _buckets_from_args(args, current: Optional[dict] = None) -> Optional[dict]:
    from eval.run import EvalError

    if not (args.bucket_by or args.bucket_edges or args.bucket_labels):
        return None
    out = dict(current or {})
    if args.bucket_by:
        out["by"] = args.bucket_by
        if not args.bucket_edges and (current or {}).get("by") != args.bucket_by:
            out.pop("edges", None)  # the unit's own default edges
    if args.bucket_edges:
        try:
            out["edges"] = [float(x) for x in args.bucket_edges.split(",") if x.strip()]
        except ValueError:
            raise EvalError(f"--bucket-edges {args.bucket_edges!r}: use numbers separated by commas") from None
    if args.bucket_labels:
        out["labels"] = [x.strip() for x in args.bucket_labels.split(",") if x.strip()]
    return out


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
    params = {}
    for spec in args.param:
        name, sep, value = spec.partition("=")
        if not sep or not name.strip():
            raise EvalError(f"--param {spec!r}: use NAME=VALUE")
        params[name.strip()] = value
    if args.system:
        systems = []
        for spec in args.system:
            parts = spec.split(":", 2)
            if len(parts) != 3:
                raise EvalError(f"--system {spec!r}: use NAME:GPT:SOVITS")
            systems.append(dict(name=parts[0], gpt=str(Path(parts[1]).resolve()),
                                sovits=str(Path(parts[2]).resolve()),
                                ref_audio=str(Path(args.ref).resolve()) if args.ref else "", ref_text=args.ref_text,
                                **params))
        data["systems"] = systems
    elif params:
        raise EvalError("--param sets parameters of --system entries; give the systems with --system")
    for key in ("numerals", "seed_compatible", "drop_interjections", "similarity_model", "baseline", "variants",
                "devices"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    for key in ("wavlm_dir", "sv_path", "asr_cache"):
        value = getattr(args, key)
        if value is not None:
            data[key] = str(Path(value).resolve()) if value else ""
    buckets = _buckets_from_args(args, data.get("buckets"))
    if buckets is not None:
        data["buckets"] = buckets
    if data.get("test_csv"):
        from eval.run import external_systems

        csv_path = Path(str(data["test_csv"])).expanduser()
        if not csv_path.is_absolute() and base is not None:
            csv_path = base / csv_path
        systems = list(data.get("systems") or [])
        names = [s.get("name") for s in systems if isinstance(s, dict)]
        ref = next((s.get("ref_audio") for s in systems if isinstance(s, dict) and s.get("ref_audio")), "")
        if args.ref:
            ref = str(Path(args.ref).resolve())
        for ext in external_systems(csv_path, names):
            # the reference the external audio is compared with (similarity, vs_ref): --ref or the first system's
            if ref:
                ext["ref_audio"] = str(ref) if Path(str(ref)).is_absolute() or base is None else str(base / ref)
            systems.append(ext)
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
            import json

            from eval.report import write_report

            current = None
            cfg = args.run_dir / "config.json"
            if cfg.is_file():
                current = json.loads(cfg.read_text(encoding="utf-8")).get("buckets")
            print(write_report(args.run_dir, buckets=_buckets_from_args(args, current)))
            return 0
        from config import settings
        from eval.report import write_report
        from eval.run import EvalCancelled, EvalRunner
        from gsv_core.api import Engine
        from gsv_core.asr import ASRService

        config = _config_from_args(args)
        engine = Engine.open(settings)
        for system in config.systems:  # the app's model-folder rule, as in the Eval tab
            if system.external:
                continue
            engine.check_model_path(system.gpt, "GPT")
            engine.check_model_path(system.sovits, "SoVITS")
        runner = EvalRunner(engine, ASRService.from_settings(settings), settings)

        from gsv_core.cli import ProgressBar

        bar = ProgressBar("eval")
        try:
            run_dir = runner.run(config, progress=bar)
        except KeyboardInterrupt:
            print("interrupted: run the same command again to resume", file=sys.stderr)
            return 130
        except EvalCancelled as exc:
            print(str(exc), file=sys.stderr)
            return 130
        finally:
            bar.close()
        print(run_dir)
        if not args.no_report:
            print(write_report(run_dir))
        return 0
    except GSVError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
