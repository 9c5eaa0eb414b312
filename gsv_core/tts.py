"""``python -m gsv_core.tts``: synthesise one text, or a whole CSV, from the command line.

One utterance:

    python -m gsv_core.tts --gpt G.ckpt --sovits S.pth --ref ref.wav --ref-text "参考文本" --text "要合成的文本" -o out.wav

A batch (CSV with the columns id,text; any synthesis parameter may be a column, e.g. ref, ref_text, ref_lang, lang,
split_method, top_k, noise_scale, speed, seed; an empty cell keeps the flag's value):

    python -m gsv_core.tts --gpt G.ckpt --sovits S.pth --ref ref.wav --ref-text "…" --csv lines.csv --out-dir out/

writes ``out/<id>.wav`` and ``out/results.csv`` (id, text, file, duration, rtf, seed, models, status, error,
warning). A rerun skips ids already done (resume after an interruption); one failing row is recorded and never stops
the batch. Every synthesis parameter has a flag (``--help``); the model files must lie in the model folders of the
settings (GPT_WEIGHT_DIRS, SOVITS_WEIGHT_DIRS, PRETRAINED_DIR), as in the app.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Optional

from tqdm import tqdm

from .engine.request import PARAMETERS, SynthesisRequest
from .errors import GSVError

#: flags whose name differs from the request field (kept from the first version of this CLI)
_FLAG_NAMES = {"ref_audio": "--ref", "text_lang": "--lang", "split_method": "--split", "gpt_path": "--gpt",
               "sovits_path": "--sovits", "aux_refs": "--aux-ref"}
_NOT_FLAGS = ("text", "id")  # --text is part of the text/csv choice; ids come from CSV rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gsv_core.tts", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="text to synthesise")
    src.add_argument("--csv", help="CSV of lines to synthesise (batch mode)")
    defaults = SynthesisRequest.defaults()
    for name, spec in PARAMETERS.items():  # one flag per synthesis parameter, from the request schema
        if name in _NOT_FLAGS:
            continue
        flag = _FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
        kwargs: dict[str, Any] = dict(dest=name, default=None, help=f"{spec.help} (default {defaults[name]!r})")
        if name == "aux_refs":
            kwargs.update(action="append", help=spec.help.replace("(';'-separated in a CSV)", "(repeat the flag)"))
        p.add_argument(flag, **kwargs)
    p.add_argument("-o", "--output", default="out.wav", help="output wav (single mode)")
    p.add_argument("--out-dir", default="tts_out", help="output folder (batch mode)")
    p.add_argument("--stream", action="store_true",
                   help="stream: audio every few semantic tokens while the GPT decodes; reports the first-audio "
                        "latency and writes the joined audio")
    p.add_argument("--stream-mode", choices=("tokens", "fragments"), default="tokens",
                   help="tokens (default): pieces of a fragment as its tokens come; fragments: whole fragments")
    p.add_argument("--stream-chunk", type=int, default=24, metavar="N",
                   help="token mode: decode every N semantic tokens (25 per second of speech; the first piece after "
                        "N/2). Smaller = earlier first audio, more work")
    p.add_argument("--tokens-out", metavar="FILE",
                   help="single mode: also write the take's semantic tokens (JSON, one list per fragment) to FILE")
    p.add_argument("--tokens-in", metavar="FILE",
                   help="freeze: re-synthesise the semantic tokens of FILE (written by --tokens-out) without the GPT, "
                        "e.g. with another --speed, --ref or --sovits (same text and --split)")
    p.add_argument("--bert", help="BERT folder (default from config)")
    p.add_argument("--hubert", help="HuBERT folder (default from config)")
    p.add_argument("--sv", help="speaker-verification model (v2Pro/v2ProPlus; default from config)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (default from config)")
    p.add_argument("--precision", help="auto, fp32, fp16, bf16 (default from config)")
    return p


def make_engine(args: argparse.Namespace):
    from config import settings  # the CLI is a composition root: it reads the application's settings

    from .api import Engine

    return Engine.open(settings, device=args.device, precision=args.precision, bert_dir=args.bert,
                       hubert_dir=args.hubert, sv_path=args.sv)


def base_request(args: argparse.Namespace) -> SynthesisRequest:
    """The request the flags describe (unset flags keep the schema's defaults)."""
    values = {name: getattr(args, name) for name in PARAMETERS if name not in _NOT_FLAGS}
    values["text"] = args.text or ""
    if getattr(args, "tokens_in", None):
        if values.get("semantic_tokens"):
            raise GSVError("give the frozen tokens once: --tokens-in FILE or --semantic-tokens JSON")
        try:
            values["semantic_tokens"] = Path(args.tokens_in).read_text(encoding="utf-8")
        except OSError as exc:
            raise GSVError(f"--tokens-in: cannot read {args.tokens_in} ({exc.strerror or exc})") from None
    return SynthesisRequest.from_mapping(values, where="flags")


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        engine = make_engine(args)
        warning = engine.precision_warning()
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        base = engine.check_request_models(base_request(args))
        if args.csv:
            import csv

            from .batch import run_batch

            results = run_batch(engine, base, Path(args.csv), Path(args.out_dir),
                                check_row=engine.check_request_models)
            with open(results, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            failed = [r for r in rows if r["status"] != "ok"]
            print(f"{len(rows) - len(failed)} ok, {len(failed)} failed -> {results}")
            for r in failed:
                print(f"  {r['id']}: {r['error']}", file=sys.stderr)
            for r in rows:
                if r.get("warning"):
                    print(f"  warning {r['id']}: {r['warning']}", file=sys.stderr)
            return 1 if failed else 0
        if args.stream:
            import numpy as np

            from .audio import save_wav

            if args.stream_chunk < 1:
                raise GSVError("--stream-chunk must be at least 1 token")
            t0, pieces, rate = time.perf_counter(), [], 32000
            chunks = engine.stream(base, mode=args.stream_mode, chunk_tokens=args.stream_chunk)
            for chunk in tqdm(chunks, desc="streaming", unit="piece", disable=None):
                if chunk.index == 0:
                    print(f"first audio after {time.perf_counter() - t0:.3f} s")
                pieces.append(chunk.audio)
                rate = chunk.sample_rate
            save_wav(args.output, np.concatenate(pieces), rate)
            print(f"wrote {args.output}")
            return 0
        result = engine.synthesize(base)
        result.save(args.output)
        if args.tokens_out:
            import json

            Path(args.tokens_out).write_text(json.dumps(result.semantic_tokens), encoding="utf-8")
            print(f"wrote the semantic tokens of {len(result.fragments)} fragment(s) to {args.tokens_out}")
        t = result.timings
        print(f"wrote {args.output}: {result.duration:.2f} s, RTF {result.rtf:.3f}, seed {result.seed}, "
              f"{result.version} ({result.gpt} + {result.sovits})")
        print("stages: " + ", ".join(f"{k} {v:.3f}s" for k, v in t.items()))
        for w in result.warnings:
            print(f"warning: {w}", file=sys.stderr)
        return 0
    except GSVError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
