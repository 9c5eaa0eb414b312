"""``python -m gsv_core.tts``: synthesise one text, or a whole CSV, from the command line.

One utterance:

    python -m gsv_core.tts --gpt G.ckpt --sovits S.pth --ref ref.wav --ref-text "参考文本" --text "要合成的文本" -o out.wav

A batch (CSV with columns id,text and optionally ref,ref_text,ref_lang,lang,top_k,top_p,temperature,
repetition_penalty,speed,seed; per-row values override the flags):

    python -m gsv_core.tts --gpt G.ckpt --sovits S.pth --ref ref.wav --ref-text "…" --csv lines.csv --out-dir out/

writes ``out/<id>.wav`` and ``out/results.csv`` (id, text, file, duration, rtf, seed, models, status, error). A rerun
skips ids already done (resume after an interruption); one failing row is recorded and never stops the batch.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Optional

from .errors import GSVError

ROW_FIELDS = ("ref", "ref_text", "ref_lang", "lang", "top_k", "top_p", "temperature", "repetition_penalty", "speed",
              "seed")
RESULT_COLUMNS = ["id", "text", "file", "duration_s", "rtf", "seed", "gpt", "sovits", "version", "status", "error",
                  "warning"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gsv_core.tts", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--gpt", required=True, help="GPT weights (.ckpt)")
    p.add_argument("--sovits", required=True, help="SoVITS weights (.pth)")
    p.add_argument("--ref", help="reference audio (3-10 s)")
    p.add_argument("--ref-text", default="", help="transcript of the reference (empty: reference-free, v2+)")
    p.add_argument("--ref-lang", default="zh")
    p.add_argument("--aux-ref", action="append", default=[], help="extra reference whose timbre is averaged in")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="text to synthesise")
    src.add_argument("--csv", help="CSV of lines to synthesise (batch mode)")
    p.add_argument("--lang", default="zh", help="text language: zh, en, all_zh, auto")
    p.add_argument("-o", "--output", default="out.wav", help="output wav (single mode)")
    p.add_argument("--out-dir", default="tts_out", help="output folder (batch mode)")
    p.add_argument("--split", default="cut1", help="text split method cut0..cut5")
    p.add_argument("--top-k", type=int, default=15)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--repetition-penalty", type=float, default=1.35)
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--noise-scale", type=float, default=0.5)
    p.add_argument("--pause", type=float, default=0.3, help="seconds of silence between fragments")
    p.add_argument("--seed", type=int, default=-1, help="-1: random (the seed used is printed)")
    p.add_argument("--batch-size", type=int, default=8, help="fragments decoded together by the GPT")
    p.add_argument("--stream", action="store_true", help="write fragments as they are ready and report latency")
    p.add_argument("--bert", help="BERT folder (default from config)")
    p.add_argument("--hubert", help="HuBERT folder (default from config)")
    p.add_argument("--sv", help="speaker-verification model (v2Pro/v2ProPlus; default from config)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (default from config)")
    p.add_argument("--precision", help="auto, fp32, fp16, bf16 (default from config)")
    return p


def make_engine(args: argparse.Namespace):
    from config import settings
    from .engine import ModelRegistry, TTSEngine

    registry = ModelRegistry(settings, device=args.device, precision=args.precision)
    return TTSEngine(registry, bert_dir=args.bert, hubert_dir=args.hubert, sv_path=args.sv)


def base_request(args: argparse.Namespace):
    from .engine import SynthesisRequest

    return SynthesisRequest(
        text=args.text or "", ref_audio=args.ref, ref_text=args.ref_text, ref_lang=args.ref_lang, text_lang=args.lang,
        gpt_path=args.gpt, sovits_path=args.sovits, aux_refs=tuple(args.aux_ref), split_method=args.split,
        top_k=args.top_k, top_p=args.top_p, temperature=args.temperature, repetition_penalty=args.repetition_penalty,
        speed=args.speed, noise_scale=args.noise_scale, pause=args.pause, seed=args.seed, batch_size=args.batch_size,
    )


def _row_request(base, row: dict[str, str], line: int):
    changes: dict[str, Any] = {"text": (row.get("text") or "").strip(), "id": (row.get("id") or "").strip()}
    conv = {"top_k": int, "top_p": float, "temperature": float, "repetition_penalty": float, "speed": float,
            "seed": int}
    names = {"ref": "ref_audio", "lang": "text_lang"}
    for key in ROW_FIELDS:
        value = (row.get(key) or "").strip()
        if value:
            try:
                changes[names.get(key, key)] = conv.get(key, str)(value)
            except ValueError:
                raise GSVError(f"line {line}: {key}={value!r} is not a valid value") from None
    return dataclasses.replace(base, **changes)


def read_batch_csv(path: Path, shown: Optional[str] = None) -> list[tuple[int, dict[str, str]]]:
    """Rows of a batch CSV with their line numbers; clear errors for missing columns, bad encoding, duplicate or
    unusable ids (they would overwrite each other's files). A row with an empty text is kept: the batch records it
    as failed and goes on. ``shown`` names the file in messages (an upload's own name, not its temporary path)."""
    shown = shown or str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise GSVError(f"CSV not found: {shown}") from None
    except UnicodeDecodeError:
        raise GSVError(f"{shown} is not UTF-8 text; save it as UTF-8 CSV") from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    if "id" not in header or "text" not in header:
        raise GSVError(f"{shown}: the header must contain the columns id and text (found: {', '.join(header) or 'none'})")
    rows, seen, problems = [], set(), []
    for line, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "") for k, v in row.items()}
        rid = row.get("id", "").strip()
        if not rid and not row.get("text", "").strip():
            continue  # blank line
        if not rid:
            problems.append(f"line {line}: empty id")
        elif rid in seen:
            problems.append(f"line {line}: duplicate id {rid!r}")
        elif any(c in rid for c in '/\\:*?"<>|') or rid in (".", ".."):
            problems.append(f"line {line}: id {rid!r} cannot be a file name")
        seen.add(rid)
        rows.append((line, row))
    if problems:
        raise GSVError(f"{shown} has bad rows:\n  " + "\n  ".join(problems))
    if not rows:
        raise GSVError(f"{shown} has no rows to synthesise")
    return rows


def run_batch(engine, base, csv_path: Path, out_dir: Path, progress: Optional[Any] = None,
              cancel: Optional[Any] = None, shown: Optional[str] = None) -> Path:
    """Synthesise every row; write wavs + results.csv; skip rows already done. Returns the results path."""
    rows = read_batch_csv(csv_path, shown)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.csv"
    done: dict[str, dict[str, str]] = {}
    if results_path.exists():
        with open(results_path, newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                if r.get("status") == "ok" and (out_dir / r.get("file", "")).is_file():
                    done[r["id"]] = r
    records = []
    from tqdm import tqdm

    bar = tqdm(rows, desc="synthesising", unit="line", disable=progress is not None)
    for n, (line, row) in enumerate(bar):
        if cancel is not None and cancel.is_set():
            break
        rid = row["id"].strip()
        if progress is not None:
            progress(n / len(rows), f"line {n + 1}/{len(rows)}: {rid}")
        if rid in done:
            records.append(done[rid])
            continue
        rec = {"id": rid, "text": row.get("text", ""), "status": "error"}
        try:
            if not row.get("text", "").strip():
                raise GSVError(f"line {line}: the text is empty")
            req = _row_request(base, row, line)
            result = engine.synthesize(req)
            fname = f"{rid}.wav"
            result.save(out_dir / fname)
            rec.update(file=fname, duration_s=f"{result.duration:.3f}", rtf=f"{result.rtf:.4f}", seed=result.seed,
                       gpt=result.gpt, sovits=result.sovits, version=result.version, status="ok", error="",
                       warning="; ".join(result.warnings))
        except GSVError as exc:
            rec["error"] = str(exc)
        records.append(rec)
        _write_results(results_path, records)
    _write_results(results_path, records)
    return results_path


def _write_results(path: Path, records: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in records:
            writer.writerow({k: r.get(k, "") for k in RESULT_COLUMNS})
    tmp.replace(path)


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        engine = make_engine(args)
        base = base_request(args)
        if args.csv:
            results = run_batch(engine, base, Path(args.csv), Path(args.out_dir))
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

            t0, pieces = time.perf_counter(), []
            for chunk in engine.stream(base):
                if chunk.index == 0:
                    print(f"first audio after {time.perf_counter() - t0:.3f} s")
                pieces.append(chunk.audio)
            save_wav(args.output, np.concatenate(pieces), 32000)
            print(f"wrote {args.output}")
            return 0
        result = engine.synthesize(base)
        result.save(args.output)
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
