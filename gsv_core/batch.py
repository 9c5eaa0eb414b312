"""Batch synthesis from a CSV: one row per line to synthesise, results in ``results.csv`` beside the wavs.

The CSV has the columns ``id`` and ``text`` and may carry any synthesis parameter per row (the names of
:data:`gsv_core.engine.request.PARAMETERS` or their aliases: ``ref``, ``ref_text``, ``ref_lang``, ``lang``,
``split_method``, ``top_k``, ``noise_scale``, ``aux_refs`` (``;``-separated), ...); an empty cell takes the base
request's value. ``out/<id>.wav`` and ``out/results.csv`` (id, text, file, duration, rtf, seed, models, status,
error, warning) are written; a rerun skips ids already done (resume), and a failing row is recorded without
stopping the batch. Structural problems (no id/text header, duplicate or unusable ids, unknown columns) refuse the
whole file before anything is synthesised. Used by the TTS tab and ``python -m gsv_core.tts --csv``.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable, Optional

from .engine.request import ALIASES, PARAMETERS, SynthesisRequest
from .errors import GSVError
from .fileio import atomic_path

RESULT_COLUMNS = ["id", "text", "file", "duration_s", "rtf", "seed", "gpt", "sovits", "version", "status", "error",
                  "warning"]
#: columns a row may set besides id and text
ROW_COLUMNS = tuple(n for n in (*PARAMETERS, *ALIASES) if n not in ("id", "text"))


def read_batch_csv(path: Path, shown: Optional[str] = None) -> list[tuple[int, dict[str, str]]]:
    """Rows of a batch CSV with their line numbers; clear errors for missing or unknown columns, bad encoding,
    duplicate or unusable ids (they would overwrite each other's files). A row with an empty text is kept: the
    batch records it as failed and goes on. ``shown`` names the file in messages (an upload's own name, not its
    temporary path)."""
    from .formats.csvtable import CSVError, read_csv_rows

    shown = shown or str(path)
    try:
        header, records = read_csv_rows(path, shown)
    except CSVError as exc:
        raise GSVError(str(exc)) from None
    if "id" not in header or "text" not in header:
        raise GSVError(f"{shown}: the header must contain the columns id and text (found: {', '.join(header) or 'none'})")
    unknown = [h for h in header if h and h not in ("id", "text") and h not in ROW_COLUMNS]
    if unknown:
        raise GSVError(f"{shown}: unknown column(s) {', '.join(unknown)} (a row may set: {', '.join(ROW_COLUMNS)})")
    rows, seen, problems = [], set(), []
    for line, row in records:
        rid = row.get("id", "").strip()
        if not rid and not row.get("text", "").strip() and not any(v.strip() for v in row.values()):
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


def row_request(base: SynthesisRequest, row: dict[str, str], line: int) -> SynthesisRequest:
    """``base`` with the row's non-empty cells applied (the row's text always)."""
    values = {k: v for k, v in row.items() if k and k != "id"}
    req = SynthesisRequest.from_mapping(values, base, where=f"line {line}")
    return req.replace(text=(row.get("text") or "").strip(), id=(row.get("id") or "").strip())


def run_batch(engine, base: SynthesisRequest, csv_path: Path, out_dir: Path,
              progress: Optional[Callable[[float, str], Any]] = None, cancel: Optional[Any] = None,
              shown: Optional[str] = None, check_row: Optional[Callable[[SynthesisRequest], Any]] = None) -> Path:
    """Synthesise every row with ``engine`` (a :class:`gsv_core.api.Engine`); write wavs + results.csv; skip rows
    already done. ``check_row`` vets each row's request first (the app applies its path rules there). Returns
    the results path."""
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
            req = row_request(base, row, line)
            if check_row is not None:
                check_row(req)
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
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in records:
            writer.writerow({k: r.get(k, "") for k in RESULT_COLUMNS})


__all__ = ["RESULT_COLUMNS", "ROW_COLUMNS", "read_batch_csv", "row_request", "run_batch"]
