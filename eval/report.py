"""Reports of a run folder: per-system corpus metrics, pairwise comparisons with bootstrap 95% CIs, a paired
per-sentence table, CSV + JSON of everything and a self-contained HTML page.

Files written into RUN_DIR (the HTML links the audio as ``audio/...``, relative, so the folder can be moved)::

    report.html  report.json  utterances.csv  summary.csv  pairwise.csv  sentences.csv

Corpus error rates are (S + D + I) / N summed over utterances (seed-tts-eval's corpus WER), not a mean of rates.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
from itertools import combinations
from pathlib import Path
from typing import Any, Optional

from eval.run import EvalError, load_results

#: per-utterance numbers compared between systems (higher_is_better)
COMPARED = {"error_rate": False, "similarity": True, "rtf": False, "duration": None}
#: paired sentences needed before the report calls one system better (the bootstrap is meaningless below)
MIN_PAIRS_FOR_VERDICT = 5


def _num(v) -> Optional[float]:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def build_report(run_dir: str | os.PathLike) -> dict:
    """Everything the report shows, as plain data (also saved as report.json)."""
    from eval.metrics import ErrorCounts, corpus_score
    from eval.stats import bootstrap_ci, paired_bootstrap_diff

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise EvalError(f"{run_dir} is not an evaluation run folder (no config.json)")
    config = json.loads(cfg_path.read_text(encoding="utf-8"))
    rows = load_results(run_dir)
    if not rows:
        raise EvalError(f"{run_dir} has no finished utterances yet (results.jsonl is empty)")
    systems = [s["name"] for s in config["systems"] if any(r["system"] == s["name"] for r in rows)]
    summary = []
    for name in systems:
        rs = [r for r in rows if r["system"] == name]
        scored = [r for r in rs if r.get("error_rate") is not None]
        counts = [ErrorCounts(substitutions=r["substitutions"], deletions=r["deletions"],
                              insertions=r["insertions"], hits=r["hits"], ref_len=r["ref_len"]) for r in scored]
        corpus = corpus_score(counts) if counts else None
        entry: dict[str, Any] = dict(system=name, utterances=len(rs), asr_failed=len(rs) - len(scored),
                                     tries=sum(r.get("n_tries", 1) for r in rs),
                                     rerolled=sum(1 for r in rs if r.get("n_tries", 1) > 1),
                                     failed_threshold=sum(1 for r in rs if not r.get("passed", True)))
        if corpus is not None:
            entry.update(error_rate=float(corpus.rate), substitutions=int(corpus.substitutions),
                         deletions=int(corpus.deletions), insertions=int(corpus.insertions),
                         ref_len=int(corpus.ref_len))
            n = max(1, int(corpus.ref_len))
            entry.update(sub_rate=corpus.substitutions / n, del_rate=corpus.deletions / n,
                         ins_rate=corpus.insertions / n)
        for key in ("error_rate", "similarity", "rtf", "duration"):
            vals = [v for v in (_num(r.get(key)) for r in rs) if v is not None]
            if vals:
                m, lo, hi = bootstrap_ci(vals)
                entry[f"{key}_mean"], entry[f"{key}_ci"] = float(m), [float(lo), float(hi)]
        entry["flags"] = {}
        for r in rs:
            for f in r.get("flags") or []:
                entry["flags"][f] = entry["flags"].get(f, 0) + 1
        summary.append(entry)

    by_key = {(r["system"], r["id"], r["sample"]): r for r in rows}
    pairwise = []
    for a, b in combinations(systems, 2):
        for metric, higher in COMPARED.items():
            pa, pb = [], []
            for (s, i, k), r in by_key.items():
                if s != a or (b, i, k) not in by_key:
                    continue
                va, vb = _num(r.get(metric)), _num(by_key[(b, i, k)].get(metric))
                if va is not None and vb is not None:
                    pa.append(va)
                    pb.append(vb)
            if not pa:
                continue
            m, lo, hi = paired_bootstrap_diff(pb, pa)
            verdict = "no clear difference"
            if len(pa) < MIN_PAIRS_FOR_VERDICT:
                # a bootstrap over a handful of sentences collapses to (nearly) a point: no claim either way
                verdict = f"too few sentences for a verdict (n={len(pa)} < {MIN_PAIRS_FOR_VERDICT})"
            elif higher is not None and (lo > 0 or hi < 0):
                verdict = f"{b} better" if (lo > 0) == higher else f"{a} better"
            pairwise.append(dict(a=a, b=b, metric=metric, n=len(pa), diff_b_minus_a=float(m), ci_low=float(lo),
                                 ci_high=float(hi), verdict=verdict))

    sentences = []
    ids = list(dict.fromkeys((r["id"], r["sample"]) for r in rows))
    for item_id, sample in ids:
        entry = dict(id=item_id, sample=sample, text=None)
        for s in systems:
            r = by_key.get((s, item_id, sample))
            if r is None:
                continue
            entry["text"] = r["text"]
            entry[s] = dict(asr=r.get("asr"), error_rate=r.get("error_rate"), similarity=r.get("similarity"),
                            substitutions=r.get("substitutions"), deletions=r.get("deletions"),
                            insertions=r.get("insertions"), duration=r.get("duration"), audio=r.get("audio"),
                            seed=r.get("seed"), n_tries=r.get("n_tries"), flags=r.get("flags") or [])
        sentences.append(entry)
    return dict(run_dir=str(run_dir.resolve()), config=config, systems=systems, summary=summary,
                pairwise=pairwise, sentences=sentences, utterances=rows)


# ----------------------------------------------------------------------------------------------------------------
# files

_UTT_COLUMNS = ("system", "id", "sample", "text", "lang", "seed", "chosen", "n_tries", "passed", "asr", "asr_error",
                "error_rate", "substitutions", "deletions", "insertions", "hits", "ref_len", "similarity", "rtf",
                "wall", "duration", "tokens", "flags", "audio")


def _write_csv(path: Path, rows: list[dict], columns: Optional[list] = None) -> None:
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (";".join(map(str, v)) if isinstance(v, list) else json.dumps(v, ensure_ascii=False)
                            if isinstance(v, dict) else v) for k, v in r.items()})


def write_report(run_dir: str | os.PathLike) -> Path:
    """Build and write every report file into ``run_dir``; returns the HTML path."""
    run_dir = Path(run_dir)
    data = build_report(run_dir)
    (run_dir / "report.json").write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    utt_cols = list(_UTT_COLUMNS) + sorted({k for r in data["utterances"] for k in r
                                            if k not in _UTT_COLUMNS and k != "tries"
                                            and not isinstance(r[k], (list, dict))})
    _write_csv(run_dir / "utterances.csv", data["utterances"], utt_cols)
    _write_csv(run_dir / "summary.csv", data["summary"])
    _write_csv(run_dir / "pairwise.csv", data["pairwise"],
               ["a", "b", "metric", "n", "diff_b_minus_a", "ci_low", "ci_high", "verdict"])
    flat = []
    for s in data["sentences"]:
        row = dict(id=s["id"], sample=s["sample"], text=s["text"])
        for name in data["systems"]:
            for k, v in (s.get(name) or {}).items():
                row[f"{name}.{k}"] = v
        if len(data["systems"]) >= 2:
            a, b = data["systems"][:2]
            ea, eb = _num((s.get(a) or {}).get("error_rate")), _num((s.get(b) or {}).get("error_rate"))
            row["error_rate_delta"] = None if ea is None or eb is None else eb - ea
        flat.append(row)
    _write_csv(run_dir / "sentences.csv", flat)
    from .listening import write_listening_summary  # listening tests live in RUN_DIR/listening/, if any

    listening = write_listening_summary(run_dir)
    data["listening"] = None if listening is None else str(Path(listening).relative_to(run_dir))
    out = run_dir / "report.html"
    out.write_text(render_html(data), encoding="utf-8")
    return out


# ----------------------------------------------------------------------------------------------------------------
# HTML

def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


#: sentences whose F0 contours are drawn (each plot decodes every system's audio once)
MAX_F0_PLOTS = 6


def _f0_plots(data: dict, plt) -> list[tuple[str, str]]:
    from eval.audio_metrics import f0_contour
    from gsv_core.audio import load_audio
    from gsv_core.errors import GSVError

    run_dir = Path(data["run_dir"])
    plots = []
    for s in data["sentences"][:MAX_F0_PLOTS]:
        fig, ax = plt.subplots(figsize=(5, 2.5))
        drawn = False
        for name in data["systems"]:
            audio = (s.get(name) or {}).get("audio")
            if not audio or not (run_dir / audio).is_file():
                continue
            try:
                wav, sr = load_audio(run_dir / audio)
            except GSVError:
                continue
            t, f0 = f0_contour(wav, sr)
            ax.plot(t, f0, label=name, lw=1)
            drawn = True
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xlabel("s")
        ax.set_ylabel("F0 (Hz)")
        ax.set_title(f"F0 contour {s['id']}#{s['sample']}")
        ax.legend(fontsize=7)
        plots.append((f"F0 contour {s['id']}#{s['sample']}", _png(fig)))
    return plots


def _plots(data: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plots = []
    for metric in ("error_rate", "similarity", "rtf", "duration"):
        series = {s: [v for v in (_num(r.get(metric)) for r in data["utterances"] if r["system"] == s)
                      if v is not None] for s in data["systems"]}
        if not any(series.values()):
            continue
        fig, ax = plt.subplots(figsize=(5, 3))
        for s, vals in series.items():
            if vals:
                ax.hist(vals, bins=min(20, max(3, len(vals))), alpha=0.5, label=s)
        ax.set_title(f"{metric} distribution")
        ax.set_xlabel(metric)
        ax.legend()
        plots.append((f"{metric} distribution", _png(fig)))
    if len(data["systems"]) >= 2:
        a, b = data["systems"][:2]
        labels, deltas = [], []
        for s in data["sentences"]:
            ea, eb = _num((s.get(a) or {}).get("error_rate")), _num((s.get(b) or {}).get("error_rate"))
            if ea is not None and eb is not None:
                labels.append(f"{s['id']}#{s['sample']}")
                deltas.append(eb - ea)
        if deltas:
            fig, ax = plt.subplots(figsize=(max(5, 0.3 * len(deltas)), 3))
            ax.bar(range(len(deltas)), deltas, color=["#c44" if d > 0 else "#4a4" for d in deltas])
            ax.set_xticks(range(len(deltas)), labels, rotation=90, fontsize=7)
            ax.axhline(0, color="k", lw=0.5)
            ax.set_title(f"per-sentence error rate delta ({b} - {a}; below 0: {b} better)")
            plots.append(("per-sentence deltas", _png(fig)))
    return plots + _f0_plots(data, plt)


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}: {x}" for k, x in v.items()) or "–"
    return str(v)


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(data: dict) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>Evaluation report</title><style>",
             "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top}th{background:#eee}"
             "img{max-width:100%}audio{width:220px}.flags{color:#b00}",
             "</style></head><body><h1>Evaluation report</h1>",
             f"<p>Run folder: <code>{e(data['run_dir'])}</code>; systems: {e(', '.join(data['systems']))}; "
             f"ASR: <code>{e(str(data['config'].get('asr_model')))}</code> ({e(str(data['config'].get('asr_language')))})."
             " Error rate = CER for Chinese, WER for English: (S + D + I) / N over the corpus; deletions are "
             "swallowed words, insertions repetition.</p>",
             "<h2>Per system</h2>",
             _table(data["summary"], ["system", "utterances", "error_rate", "substitutions", "deletions",
                                      "insertions", "ref_len", "error_rate_ci", "similarity_mean", "similarity_ci",
                                      "rtf_mean", "duration_mean", "tries", "rerolled", "failed_threshold",
                                      "asr_failed", "flags"])]
    if data["pairwise"]:
        parts += ["<h2>Pairwise comparison (bootstrap 95% CI of the paired mean difference)</h2>",
                  _table(data["pairwise"], ["a", "b", "metric", "n", "diff_b_minus_a", "ci_low", "ci_high",
                                            "verdict"])]
    parts.append("<h2>Plots</h2>")
    for title, uri in _plots(data):
        parts.append(f"<figure><img alt='{e(title)}' src='{uri}'><figcaption>{e(title)}</figcaption></figure>")
    parts.append("<h2>Per sentence</h2><table><thead><tr><th>id</th><th>text</th>")
    parts += [f"<th>{e(s)}</th>" for s in data["systems"]]
    parts.append("</tr></thead><tbody>")
    for s in data["sentences"]:
        parts.append(f"<tr><td>{e(s['id'])}#{s['sample']}</td><td>{e(s['text'] or '')}</td>")
        for name in data["systems"]:
            r = s.get(name)
            if not r:
                parts.append("<td>–</td>")
                continue
            audio = e(r["audio"] or "")
            flags = f"<div class='flags'>{e(', '.join(r['flags']))}</div>" if r["flags"] else ""
            parts.append(f"<td><audio controls preload='none' src='{audio}'></audio><div>{e(r['asr'] or '')}</div>"
                         f"<div>err {e(_fmt(_num(r['error_rate'])))} (S{_fmt(r['substitutions'])} "
                         f"D{_fmt(r['deletions'])} I{_fmt(r['insertions'])}), sim {e(_fmt(_num(r['similarity'])))}"
                         f", seed {r['seed']}, tries {r['n_tries']}</div>{flags}</td>")
        parts.append("</tr>")
    parts.append("</tbody></table>")
    if data.get("listening"):
        parts.append(f"<h2>Listening tests</h2><p><a href='{e(data['listening'])}'>MOS / A-B / CMOS results</a> "
                     "(blind tests run on this folder's audio).</p>")
    parts.append("<p>Files: report.json, utterances.csv, summary.csv, pairwise.csv, sentences.csv, "
                 "config.json (rerun with <code>python -m eval run --config config.json</code>).</p></body></html>")
    return "".join(parts)
