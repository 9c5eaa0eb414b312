"""``python -m gsv_core.finetune``: finetune a voice from the command line (the Finetune tab runs the same code).

    python -m gsv_core.finetune all --name myvoice --list data/myvoice.list --version v2Pro
    python -m gsv_core.finetune status --name myvoice
    python -m gsv_core.finetune select --name myvoice          # rank the saved epochs on the held-out sentences

Every stage resumes: run the same command again after an interruption (Ctrl-C saves the training state first).
Settings given once are stored in the experiment (``experiment.json``); later commands only need ``--name``.
Multi-GPU training: launch a training stage under torchrun, one process per GPU, e.g.

    torchrun --nproc_per_node 2 -m gsv_core.finetune train-s2 --name myvoice

(on a machine without GPUs the processes use the gloo backend on the CPU)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, Optional, Sequence

from gsv_core.cli import ProgressBar, stop_on_ctrl_c
from gsv_core.errors import GSVError
from gsv_core.versions import finetune_versions

COMMANDS = ("slice", "data", "features", "train-s2", "train-s1", "all", "select", "status")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gsv_core.finetune", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Finetune GPT-SoVITS (v1/v2/v2Pro/v2ProPlus/v3/v4): data cleaning and split, feature extraction, "
                    "SoVITS training (full; LoRA for v3/v4) and GPT training (full or LoRA, optionally DPO), "
                    "official-format exports, checkpoint selection.",
        epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sl = sub.add_parser("slice", help="cut long recordings in a folder into clips at silences (upstream's slicer)")
    sl.add_argument("src", help="a recording or a folder of recordings")
    sl.add_argument("out", help="folder for the clips")
    sl.add_argument("--threshold", type=float, default=-34.0, help="silence threshold in dB (default -34)")
    sl.add_argument("--min-length", type=int, default=4000, help="shortest clip in ms (default 4000)")
    sl.add_argument("--min-interval", type=int, default=300, help="shortest silence to cut at, ms (default 300)")
    sl.add_argument("--hop-size", type=int, default=10, help="RMS hop in ms (default 10)")
    sl.add_argument("--max-sil-kept", type=int, default=500, help="silence kept around a cut, ms (default 500)")
    sl.add_argument("--max-amp", type=float, default=0.9, help="normalisation peak (default 0.9)")
    sl.add_argument("--alpha", type=float, default=0.25, help="normalisation mix (default 0.25)")

    def exp_args(sp: argparse.ArgumentParser, full: bool = True) -> None:
        sp.add_argument("--name", required=True, help="experiment name (folder under EXPERIMENTS_DIR)")
        if not full:
            return
        sp.add_argument("--version", choices=finetune_versions(), help="model version (default v2Pro)")
        sp.add_argument("--list", dest="source", help="GPT-SoVITS .list (path|speaker|lang|text) or CSV (audio, text)")
        sp.add_argument("--audio-dir", help="look audio files up here by base name")
        sp.add_argument("--lang", dest="default_lang", help="language of CSV rows without one (default zh)")
        sp.add_argument("--device", help="auto, cpu, cuda, cuda:1 ... (default auto)")
        sp.add_argument("--precision", help="auto, fp32, fp16, bf16 (default auto: fp16 on CUDA, fp32 on CPU)")
        for key in ("pretrained-s1", "pretrained-s2g", "pretrained-s2d", "bert-dir", "hubert-dir", "sv-path"):
            sp.add_argument(f"--{key}", help="default: the pretrained file of the version under PRETRAINED_DIR")
        sp.add_argument("--asr-check", metavar="MODEL_DIR", help="data stage: transcribe every clean clip with this "
                        "faster-whisper model and drop clips whose transcript disagrees (CER above "
                        "cleaning.max_cer, default 0.3); 'off' to disable")
        sp.add_argument("--s2-batch-size", type=int, help="SoVITS batch size")
        sp.add_argument("--s2-epochs", type=int, help="SoVITS epochs (default 8; v3/v4 LoRA: 2)")
        sp.add_argument("--s2-save-every", type=int, help="export SoVITS every N epochs (default 4; v3/v4: 1)")
        sp.add_argument("--s2-text-lr", type=float, help="learning-rate weight of the text modules (default 0.4; "
                        "not for v3/v4)")
        sp.add_argument("--s2-lora-rank", type=int, choices=(16, 32, 64, 128),
                        help="v3/v4: rank of the SoVITS LoRA adapters (default 32)")
        sp.add_argument("--s1-batch-size", type=int, help="GPT batch size")
        sp.add_argument("--s1-epochs", type=int, help="GPT epochs (default 15)")
        sp.add_argument("--s1-save-every", type=int, help="export GPT every N epochs (default 5)")
        sp.add_argument("--lora", action=argparse.BooleanOptionalAction, default=None, help="GPT LoRA instead of "
                        "full finetuning")
        sp.add_argument("--lora-rank", type=int, help="GPT LoRA rank (default 32)")
        sp.add_argument("--dpo", action=argparse.BooleanOptionalAction, default=None,
                        help="GPT: add upstream's DPO loss (rejected = a span repeated or skipped; halves the batch)")
        sp.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="any other option, e.g. cleaning.max_seconds=12, split.seed=7, s2.lr=5e-5, "
                             "features.batch_size=4 (VALUE is JSON, else a string)")

    for name, helptext in (("data", "read the .list/CSV, clean with a report, split train/val/test, reference pool"),
                           ("features", "phones + BERT, HuBERT + 32 kHz audio, speaker vectors, semantic tokens"),
                           ("train-s2", "finetune SoVITS (s2) and export checkpoints"),
                           ("train-s1", "finetune GPT (s1), full or LoRA, and export checkpoints"),
                           ("all", "every stage in order (then checkpoint selection unless --no-select)")):
        sp = sub.add_parser(name, help=helptext)
        exp_args(sp)
        if name == "all":
            sp.add_argument("--no-select", action="store_true", help="skip the checkpoint selection at the end")
            _select_args(sp)

    se = sub.add_parser("select", help="rank every exported epoch on the held-out sentences (CER, similarity)")
    exp_args(se, full=False)
    _select_args(se)
    st = sub.add_parser("status", help="the experiment's settings, stage records, exports and last losses")
    exp_args(st, full=False)
    de = sub.add_parser("delete", help="delete an experiment's folder (its exported weights only with --exports)")
    exp_args(de, full=False)
    de.add_argument("--exports", action="store_true", help="also delete its exported weights from the weight folders")
    de.add_argument("--yes", "-y", action="store_true", help="delete without asking")
    return p


def _select_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--asr-model", help="faster-whisper model folder (default: the first under WHISPER_DIR)")
    sp.add_argument("--asr-language", default=None, help="ASR language (default: the experiment's language)")
    sp.add_argument("--samples", type=int, default=1, help="samples per sentence and pair (default 1)")
    sp.add_argument("--max-sentences", type=int, default=50, help="held-out sentences used (default 50)")
    sp.add_argument("--no-baseline", action="store_true", help="do not evaluate the pretrained pair")


def _parse_set(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise GSVError(f"--set {item!r}: use SECTION.KEY=VALUE, e.g. s2.lr=5e-5")
        key, raw = item.split("=", 1)
        section, opt = key.split(".", 1)
        if section not in ("cleaning", "split", "features", "s2", "s1"):
            raise GSVError(f"--set {item!r}: SECTION is one of cleaning, split, features, s2, s1")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out.setdefault(section, {})[opt] = value
    return out


def _config_from_args(settings, args) -> "FinetuneConfig":
    from .pipeline import Experiment, FinetuneConfig

    layout_json = Path(settings.experiments_dir) / args.name / "experiment.json"
    cfg = Experiment.open(settings, args.name).config if layout_json.is_file() else FinetuneConfig(name=args.name)
    for key in ("version", "source", "audio_dir", "default_lang", "device", "precision"):
        v = getattr(args, key, None)
        if v is not None:
            setattr(cfg, key, str(Path(v).expanduser().resolve()) if key in ("source", "audio_dir") else v)
    if getattr(args, "asr_check", None) is not None:
        cfg.asr_check = "" if args.asr_check.lower() in ("off", "none", "") else str(Path(args.asr_check).expanduser().resolve())
    for key in ("pretrained_s1", "pretrained_s2g", "pretrained_s2d", "bert_dir", "hubert_dir", "sv_path"):
        v = getattr(args, key, None)
        if v is not None:
            setattr(cfg, key, str(Path(v).expanduser().resolve()))
    shortcuts = dict(s2_batch_size=("s2", "batch_size"), s2_epochs=("s2", "epochs"),
                     s2_save_every=("s2", "save_every_epochs"), s2_text_lr=("s2", "text_low_lr_rate"),
                     s1_batch_size=("s1", "batch_size"), s1_epochs=("s1", "epochs"),
                     s1_save_every=("s1", "save_every_epochs"), lora=("s1", "lora"), lora_rank=("s1", "lora_rank"),
                     s2_lora_rank=("s2", "lora_rank"), dpo=("s1", "dpo"))
    for attr, (section, opt) in shortcuts.items():
        v = getattr(args, attr, None)
        if v is not None:
            getattr(cfg, section)[opt] = v
    for section, opts in _parse_set(getattr(args, "set", []) or []).items():
        getattr(cfg, section).update(opts)
    return cfg.validate()


def _install_interrupt(stop: threading.Event) -> None:
    stop_on_ctrl_c(stop, "stopping after the current step (the state is saved)")


def _select(settings, *args, **kwargs):
    # the CLI is a composition root: selection needs eval's ASR and metrics, which gsv_core itself never imports
    from eval.selection import select_for_experiment

    return select_for_experiment(settings, *args, **kwargs)


def _print_ranking(result) -> None:
    print(f"selection run: {result.run_dir}")
    if result.warning:
        print(f"warning: {result.warning}")
    print(f"{'rank':>4}  {'CER':>7}  {'sim':>6}  system")
    for r in result.ranking:
        cer = "-" if r["cer"] is None else f"{r['cer']:.4f}"
        sim = "-" if r["similarity"] is None else f"{r['similarity']:.3f}"
        mark = "  <- best" if r.get("best") else ""
        print(f"{r['rank'] if r['rank'] is not None else 'base':>4}  {cer:>7}  {sim:>6}  {r['system']}{mark}")
    if result.report_html:
        print(f"report: {result.report_html}")


def _status(settings, name: str) -> int:
    from .pipeline import Experiment

    exp = Experiment.open(settings, name)
    print(json.dumps(dict(config=exp.config.to_dict(), stages=exp.stage_records(), exports=exp.exports(),
                          folder=str(exp.layout.root)), ensure_ascii=False, indent=2))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    from config import load_settings

    settings = load_settings()
    stop = threading.Event()
    _install_interrupt(stop)
    bar = None
    try:
        if args.command == "slice":
            from .slicer import SlicerParams, slice_folder

            params = SlicerParams(threshold_db=args.threshold, min_length_ms=args.min_length,
                                  min_interval_ms=args.min_interval, hop_size_ms=args.hop_size,
                                  max_sil_kept_ms=args.max_sil_kept, normalize_max=args.max_amp, alpha=args.alpha)
            params.validate()
            bar = ProgressBar("slice")
            out = slice_folder(args.src, args.out, params, progress=bar, cancel=stop.is_set)
            bar.close()
            bar = None
            for path, reason in getattr(out, "failed", []):
                print(f"skipped {path}: {reason}", file=sys.stderr)
            print(f"{len(out)} clips written to {args.out} (transcribe them in the ASR tab or with python -m gsv_core.asr)")
            return 0
        if args.command == "status":
            return _status(settings, args.name)
        if args.command == "delete":
            from .manage import delete_experiment

            ok = args.yes or (sys.stdin.isatty() and input(f"Delete experiment {args.name}"
                                                           f"{' and its exported weights' if args.exports else ''}? "
                                                           "[y/N] ").strip().lower() in ("y", "yes"))
            if not ok:
                print(f"error: not deleted: experiment {args.name} (answer y, or pass --yes)", file=sys.stderr)
                return 2
            out = delete_experiment(settings, args.name, confirm=True, with_exports=args.exports)
            print(f"deleted experiment {out['name']} ({out['bytes'] / 2**20:.1f} MB)"
                  + (f"; removed {len(out['exports_removed'])} exported weight file(s)" if args.exports else
                     f"; kept {len(out['exports_kept'])} exported weight file(s)"))
            return 0
        if args.command == "select":
            bar = ProgressBar("select")
            res = _select(settings, args.name, args.asr_model, args.asr_language, args.samples,
                                args.max_sentences, baseline=not args.no_baseline, progress=bar, cancel=stop)
            bar.close()
            bar = None
            _print_ranking(res)
            return 0
        from .pipeline import Experiment

        cfg = _config_from_args(settings, args)
        exp = Experiment(settings, cfg)
        stages = {"data": ["data"], "features": ["features"], "train-s2": ["s2"], "train-s1": ["s1"],
                  "all": ["data", "features", "s2", "s1"]}[args.command]
        transcribe = None
        if "data" in stages and cfg.asr_check:
            from gsv_core.asr import ASRService, transcriber  # composition root: the check uses eval's ASR service

            transcribe = transcriber(ASRService.from_settings(settings), cfg.asr_check)
        bar = ProgressBar(args.command)
        results = exp.run(stages, progress=bar, cancel=stop.is_set, log=lambda m: bar.bar.write(str(m)),
                          transcribe=transcribe)
        bar.close()
        bar = None
        from .pipeline import describe

        for stage in stages:
            if stage in results:
                print(describe(stage, results[stage]))
        if "cancelled" in results:
            print(f"stopped during {results['cancelled']}: run the same command again to continue", file=sys.stderr)
            return 130
        if args.command == "all" and not args.no_select:
            bar = ProgressBar("select")
            res = _select(settings, args.name, args.asr_model, args.asr_language, args.samples,
                                args.max_sentences, baseline=not args.no_baseline, progress=bar, cancel=stop)
            bar.close()
            bar = None
            _print_ranking(res)
        return 0
    except GSVError as exc:
        if bar is not None:
            bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print("aborted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    from gsv_core.finetune.common import exit_process

    exit_process(main())
