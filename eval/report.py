"""Reports of a run folder: per-system metrics, length buckets, F0/energy alignment, punctuation variants,
pairwise comparisons with bootstrap 95% CIs, a paired per-sentence table, CSV + JSON of everything and a
self-contained HTML page.

Files written into RUN_DIR (the HTML links the audio as ``audio/...``, relative, so the folder can be moved)::

    report.html  report.json  utterances.csv  summary.csv  pairwise.csv  sentences.csv  buckets.csv  prosody.csv
    variants.csv  variant_deltas.csv  (the last two for runs with punctuation variants)

Error rates are reported twice, named apart (:func:`eval.metrics.aggregate_fields`): ``error_rate_corpus`` pools
the counts ((S + D + I) / N summed over utterances, the ASR convention) and ``error_rate_utt_mean`` is the mean of
per-utterance rates (what seed-tts-eval reports as WER); a run scored with ``seed_compatible`` adds
``seed_wer_percent`` (seed-tts-eval's own procedure). Similarity numbers carry the scorer's name
(``similarity_model``): numbers of different scorers are not comparable.
"""
from __future__ import annotations

import base64
import csv
import html
import json
import math
import os
from itertools import combinations
from pathlib import Path
from typing import Any, Optional

from eval.run import EvalError, load_results

#: per-utterance numbers compared between systems (higher_is_better; None: no better/worse)
COMPARED = {"error_rate": False, "similarity": True, "rtf": False, "duration": None, "pause_s": None}
#: the name a compared per-utterance metric has in the pairwise table (the paired mean of per-utterance error rates
#: is the difference of the utterance means)
COMPARED_NAMES = {"error_rate": "error_rate_utt_mean"}
#: paired sentences needed before the report calls one system better (the bootstrap is meaningless below)
MIN_PAIRS_FOR_VERDICT = 5
#: per-utterance values summarised per system as mean, std and bootstrap CI
SUMMARY_MEANS = ("similarity", "rtf", "duration", "speaking_rate", "pause_s", "n_pauses", "vs_ref_f0_mean_diff_st",
                 "vs_ref_f0_std_diff_st", "vs_ref_energy_w1_db", "vs_base_f0_mean_diff_st", "vs_base_f0_contour_dtw_st",
                 "vs_base_voicing_agreement", "vs_base_energy_w1_db")
#: per-utterance metrics of the length-bucket tables (present ones only)
BUCKET_METRICS = ("error_rate", "seed_wer", "similarity", "duration", "speaking_rate", "pause_s", "rtf")
#: the comparison fields shown in the HTML prosody tables (report.json and prosody.csv hold all of them)
PROSODY_SHOWN = ("f0_mean_diff_st", "f0_std_diff_st", "f0_var_ratio", "f0_contour_dtw_st", "f0_aligned_rmse_st",
                 "voicing_agreement", "energy_w1_db", "energy_w1_centered_db")
_COUNT_KEYS = ("substitutions", "deletions", "insertions", "hits", "ref_len")


def _num(v) -> Optional[float]:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _json_safe(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalars
        try:
            return _json_safe(v.item())
        except (TypeError, ValueError):
            return str(v)
    return v


def _records(df) -> list[dict]:
    """A pandas table as JSON-safe dicts (NaN -> None, categories -> strings)."""
    if df is None or len(df) == 0:
        return []
    return [_json_safe({k: (str(v) if k == "bucket" else v) for k, v in r.items()}) for r in df.to_dict("records")]


def similarity_model_of(config: dict, rows: list[dict]) -> Optional[str]:
    """The scorer the run's similarity numbers come from (runs written before scorers existed used forward3)."""
    names = {r.get("similarity_model") for r in rows if r.get("similarity_model")}
    if len(names) == 1:
        return names.pop()
    if names:
        return "mixed: " + ", ".join(sorted(names))
    info = config.get("similarity_scorer") or {}
    return info.get("similarity_model") or (config.get("similarity_model") if "similarity_model" in config
                                            else "eres2netv2-forward3")


def _flat_rows(rows: list[dict]) -> list[dict]:
    """results.jsonl rows without their nested tries/flags (what the pandas tables need)."""
    return [{k: v for k, v in r.items() if not isinstance(v, (list, dict))} for r in rows]


def _buckets_from(config: dict, override: Optional[dict]):
    from eval.buckets import LengthBuckets

    spec = dict(override if override is not None else (config.get("buckets") or {}))
    if "edges" in spec and spec["edges"] is not None:
        spec["edges"] = tuple(spec["edges"])
    if "labels" in spec:
        spec["labels"] = tuple(spec["labels"])
    return LengthBuckets(**spec)


def _system_entry(name: str, rs: list[dict], config: dict) -> dict:
    from eval.metrics import aggregate_fields, corpus_score, ErrorCounts
    from eval.stats import StatsError, bootstrap_ci, mean_std, rate_cis

    scored = [r for r in rs if r.get("error_rate") is not None and all(r.get(k) is not None for k in _COUNT_KEYS)]
    entry: dict[str, Any] = dict(system=name, external=any(r.get("external") for r in rs), utterances=len(rs),
                                 asr_failed=sum(1 for r in rs if r.get("asr_error")),
                                 tries=sum(r.get("n_tries", 1) for r in rs),
                                 rerolled=sum(1 for r in rs if r.get("n_tries", 1) > 1),
                                 failed_threshold=sum(1 for r in rs if not r.get("passed", True)))
    metrics = sorted({r.get("metric") for r in scored if r.get("metric")})
    entry["metric"] = "/".join(metrics) or None
    if scored:
        entry.update(aggregate_fields(scored))
        counts = [ErrorCounts(substitutions=int(r["substitutions"]), deletions=int(r["deletions"]),
                              insertions=int(r["insertions"]), hits=int(r["hits"]), ref_len=int(r["ref_len"]))
                  for r in scored]
        corpus = corpus_score(counts)
        entry.update(substitutions=int(corpus.substitutions), deletions=int(corpus.deletions),
                     insertions=int(corpus.insertions), ref_len=int(corpus.ref_len))
        ms = mean_std([c.rate for c in counts if c.ref_len > 0])
        entry["error_rate_utt"] = ms.format()
        try:
            cis = rate_cis(counts)
            entry["error_rate_corpus_ci"] = [float(cis["corpus"].lo), float(cis["corpus"].hi)]
            entry["error_rate_utt_mean_ci"] = [float(cis["utterance_mean"].lo), float(cis["utterance_mean"].hi)]
        except StatsError:
            pass
        seed = [float(r["seed_wer"]) for r in scored if _num(r.get("seed_wer")) is not None]
        if seed:
            ci = bootstrap_ci(seed)
            entry["seed_wer_percent_ci"] = [round(ci.lo * 100, 3), round(ci.hi * 100, 3)]
    for key in SUMMARY_MEANS:
        vals = [v for v in (_num(r.get(key)) for r in rs) if v is not None]
        if vals:
            ci = bootstrap_ci(vals)
            ms = mean_std(vals)
            entry[f"{key}_mean"], entry[f"{key}_ci"] = float(ci.mean), [float(ci.lo), float(ci.hi)]
            entry[f"{key}_std"] = None if not math.isfinite(ms.std) else float(ms.std)
    if entry.get("similarity_mean") is not None:
        entry["similarity_model"] = similarity_model_of(config, rs)
    entry["flags"] = {}
    for r in rs:
        for f in r.get("flags") or []:
            f = f.split(":")[0]
            entry["flags"][f] = entry["flags"].get(f, 0) + 1
    return _json_safe(entry)


def _pairwise(systems: list[str], by_key: dict) -> list[dict]:
    from eval.stats import StatsError, paired_bootstrap_corpus_diff, paired_bootstrap_diff

    out = []

    def verdict(n, lo, hi, higher, a, b):
        if n < MIN_PAIRS_FOR_VERDICT:
            # a bootstrap over a handful of sentences collapses to (nearly) a point: no claim either way
            return f"too few sentences for a verdict (n={n} < {MIN_PAIRS_FOR_VERDICT})"
        if higher is not None and (lo > 0 or hi < 0):
            return f"{b} better" if (lo > 0) == higher else f"{a} better"
        return "no clear difference"

    for a, b in combinations(systems, 2):
        pairs = [(r, by_key[(b, i, k)]) for (s, i, k), r in by_key.items() if s == a and (b, i, k) in by_key]
        ca = [(r, q) for r, q in pairs if all(_num(r.get(k)) is not None and _num(q.get(k)) is not None
                                              for k in _COUNT_KEYS) and r.get("error_rate") is not None
              and q.get("error_rate") is not None]
        if ca:
            err = lambda r: int(r["substitutions"]) + int(r["deletions"]) + int(r["insertions"])  # noqa: E731
            try:
                m, lo, hi = paired_bootstrap_corpus_diff([(err(q), int(q["ref_len"])) for _, q in ca],
                                                         [(err(r), int(r["ref_len"])) for r, _ in ca])
                out.append(dict(a=a, b=b, metric="error_rate_corpus", n=len(ca), diff_b_minus_a=float(m),
                                ci_low=float(lo), ci_high=float(hi), verdict=verdict(len(ca), lo, hi, False, a, b)))
            except StatsError:
                pass
        for metric, higher in COMPARED.items():
            pa, pb = [], []
            for r, q in pairs:
                va, vb = _num(r.get(metric)), _num(q.get(metric))
                if va is not None and vb is not None:
                    pa.append(va)
                    pb.append(vb)
            if not pa:
                continue
            m, lo, hi = paired_bootstrap_diff(pb, pa)
            out.append(dict(a=a, b=b, metric=COMPARED_NAMES.get(metric, metric), n=len(pa), diff_b_minus_a=float(m),
                            ci_low=float(lo), ci_high=float(hi), verdict=verdict(len(pa), lo, hi, higher, a, b)))
    return out


def build_report(run_dir: str | os.PathLike, buckets: Optional[dict] = None) -> dict:
    """Everything the report shows, as plain data (also saved as report.json). ``buckets`` (by, edges, labels)
    replaces the run's length-bucket definition (buckets are a view: the run itself does not depend on them)."""
    from eval.buckets import bucket_counts, bucket_table
    from eval.metrics import MetricsError
    from eval.prosody import PROSODY_FIELDS, prosody_summary

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise EvalError(f"{run_dir} is not an evaluation run folder (no config.json)")
    config = json.loads(cfg_path.read_text(encoding="utf-8"))
    rows = load_results(run_dir)
    if not rows:
        raise EvalError(f"{run_dir} has no finished utterances yet (results.jsonl is empty)")
    systems = [s["name"] for s in config["systems"] if any(r["system"] == s["name"] for r in rows)]
    summary = [_system_entry(name, [r for r in rows if r["system"] == name], config) for name in systems]
    by_key = {(r["system"], r["id"], r["sample"]): r for r in rows}
    pairwise = _pairwise(systems, by_key)

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
                            seed=r.get("seed"), n_tries=r.get("n_tries"), flags=r.get("flags") or [],
                            pause_s=r.get("pause_s"), vs_ref_f0_mean_diff_st=r.get("vs_ref_f0_mean_diff_st"),
                            vs_base_f0_contour_dtw_st=r.get("vs_base_f0_contour_dtw_st"))
        sentences.append(entry)

    flat = _flat_rows(rows)
    try:
        lb = _buckets_from(config, buckets)
    except (MetricsError, TypeError, ValueError) as exc:
        raise EvalError(f"length buckets: {exc}") from None
    present = [m for m in BUCKET_METRICS if any(_num(r.get(m)) is not None for r in flat)]
    table = bucket_table(flat, metrics=present, buckets=lb)
    bucket_data = dict(definition=lb.as_dict(), sentences=bucket_counts(flat, lb), table=_records(table))

    prosody: dict[str, Any] = {}
    for prefix, label in (("vs_ref_", "vs_ref"), ("vs_base_", "vs_base")):
        fields = [f for f in PROSODY_FIELDS if any(_num(r.get(prefix + f)) is not None for r in flat)]
        if not fields:
            continue
        sub = [r for r in flat if any(_num(r.get(prefix + f)) is not None for f in fields)]
        prosody[label] = _records(prosody_summary(sub, fields=fields, prefix=prefix, buckets=lb))

    variants = None
    if any(r.get("variant") for r in flat):
        from eval.variants import variant_deltas, variant_summary

        deltas = variant_deltas([r for r in flat if r.get("variant")], keys=("system", "base_id", "sample"))
        variants = dict(kinds=config.get("variants") or sorted({r["variant"] for r in flat if r.get("variant")}),
                        summary=_records(variant_summary(deltas)),
                        deltas=_records(deltas[[c for c in deltas.columns if c in (
                            "system", "base_id", "sample", "variant", "id", "text") or c.startswith(("delta_",
                                                                                                 "ratio_"))]]))
    return _json_safe(dict(run_dir=str(run_dir.resolve()), config=config, systems=systems, summary=summary,
                           pairwise=pairwise, sentences=sentences, buckets=bucket_data, prosody=prosody,
                           variants=variants, similarity_model=similarity_model_of(config, rows),
                           baseline=_baseline_of(config, systems), utterances=rows))


def _baseline_of(config: dict, systems: list[str]) -> Optional[str]:
    if len(config.get("systems") or []) < 2:
        return None
    return config.get("baseline") or config["systems"][0]["name"]


# ----------------------------------------------------------------------------------------------------------------
# files

_UTT_COLUMNS = ("system", "id", "sample", "text", "lang", "seed", "chosen", "n_tries", "passed", "asr", "asr_error",
                "metric", "error_rate", "substitutions", "deletions", "insertions", "hits", "ref_len", "seed_wer",
                "similarity", "similarity_model", "rtf", "wall", "duration", "tokens", "pause_s", "n_pauses", "flags",
                "audio")
_SUMMARY_COLUMNS = ("system", "external", "metric", "utterances", "error_rate_corpus", "error_rate_corpus_ci",
                    "error_rate_utt_mean", "error_rate_utt_std", "error_rate_utt_mean_ci", "seed_wer_percent",
                    "seed_wer_percent_ci", "substitutions", "deletions", "insertions", "ref_len", "similarity_model",
                    "similarity_mean", "similarity_ci")


def _cell(v):
    if isinstance(v, list):
        return ";".join(map(str, v))
    if isinstance(v, dict):
        return json.dumps(v, ensure_ascii=False)
    return v


def _write_csv(path: Path, rows: list[dict], columns: Optional[list] = None) -> None:
    import io

    from gsv_core.fileio import write_text_atomic

    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: _cell(v) for k, v in r.items()})
    write_text_atomic(path, "\ufeff" + buf.getvalue(), fsync=False)


def write_report(run_dir: str | os.PathLike, buckets: Optional[dict] = None) -> Path:
    """Build and write every report file into ``run_dir``; returns the HTML path. ``buckets``: see
    :func:`build_report`."""
    from gsv_core.fileio import write_text_atomic

    run_dir = Path(run_dir)
    data = build_report(run_dir, buckets=buckets)
    utt_cols = list(_UTT_COLUMNS) + sorted({k for r in data["utterances"] for k in r
                                            if k not in _UTT_COLUMNS and k != "tries"
                                            and not isinstance(r[k], (list, dict))})
    _write_csv(run_dir / "utterances.csv", data["utterances"], utt_cols)
    sum_cols = list(_SUMMARY_COLUMNS) + [k for k in dict.fromkeys(k for r in data["summary"] for k in r)
                                         if k not in _SUMMARY_COLUMNS]
    _write_csv(run_dir / "summary.csv", data["summary"], sum_cols)
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
    _write_csv(run_dir / "buckets.csv", data["buckets"]["table"],
               ["system", "bucket", "metric", "n", "mean", "std", "ci_low", "ci_high", "mean_std"])
    prosody_rows = [dict(against=k, **r) for k, rs in data["prosody"].items() for r in rs]
    _write_csv(run_dir / "prosody.csv", prosody_rows,
               ["against", "system", "bucket", "metric", "n", "mean", "std", "ci_low", "ci_high", "mean_std"])
    if data.get("variants"):
        _write_csv(run_dir / "variants.csv", data["variants"]["summary"])
        _write_csv(run_dir / "variant_deltas.csv", data["variants"]["deltas"])
    from .listening import write_listening_summary  # listening tests live in RUN_DIR/listening/, if any

    listening = write_listening_summary(run_dir)
    data["listening"] = None if listening is None else str(Path(listening).relative_to(run_dir))
    write_text_atomic(run_dir / "report.json", json.dumps(data, ensure_ascii=False, indent=1), fsync=False)
    out = run_dir / "report.html"
    write_text_atomic(out, render_html(data), fsync=False)
    return out


# ----------------------------------------------------------------------------------------------------------------
# HTML

def _png(fig) -> str:
    import io

    from eval.prosody import _pyplot

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")  # tight: long titles and labels are not cut
    _pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


#: sentences whose F0 contours and energy distributions are drawn (each analyses every system's audio once)
MAX_F0_PLOTS = 6


def _load_track(path: Path):
    from eval.prosody import analyze_prosody
    from gsv_core.audio import load_audio
    from gsv_core.errors import GSVError

    if not path.is_file():
        return None
    try:
        wav, sr = load_audio(path)
    except GSVError:
        return None
    return analyze_prosody(wav, sr)


def _sentence_plots(data: dict) -> list[tuple[str, str]]:
    """F0 contours (semitones, every system) and frame-energy distributions (every system and the reference
    audio) of the first :data:`MAX_F0_PLOTS` sentences."""
    from eval.prosody import plot_energy_distributions, plot_f0_contours

    run_dir = Path(data["run_dir"])
    utt = {(r["system"], r["id"], r["sample"]): r for r in data["utterances"]}
    ref_tracks: dict[str, Any] = {}
    plots = []
    for s in data["sentences"][:MAX_F0_PLOTS]:
        tracks = {}
        ref = None
        for name in data["systems"]:
            audio = (s.get(name) or {}).get("audio")
            if audio:
                t = _load_track(run_dir / audio)
                if t is not None:
                    tracks[name] = t
            r = utt.get((name, s["id"], s["sample"])) or {}
            ref = ref or _reference_of(data["config"], name, r)
        if not tracks:
            continue
        label = f"{s['id']}#{s['sample']}"
        voiced = any(t.voiced.any() for t in tracks.values())
        fig = plot_f0_contours(tracks, semitones=True,
                               title=f"F0 contour {label}" + ("" if voiced else " (no voiced frames)"))
        fig.axes[0].set_xlim(0, max(t.duration for t in tracks.values()))
        plots.append((f"F0 contour {label}", _png(fig)))
        energy = dict(tracks)
        if ref:
            if ref not in ref_tracks:
                ref_tracks[ref] = _load_track(Path(ref))
            if ref_tracks[ref] is not None:
                energy["reference audio"] = ref_tracks[ref]
        fig = plot_energy_distributions(energy, title=f"Frame energy {label}")
        plots.append((f"Frame energy distribution {label}", _png(fig)))
    return plots


def _reference_of(config: dict, system: str, row: dict) -> Optional[str]:
    for s in config.get("systems") or []:
        if s["name"] == system and s.get("ref_audio"):
            return s["ref_audio"]
    return None


def _bucket_plot(data: dict, plt) -> Optional[tuple[str, str]]:
    """Mean per-utterance error rate per length bucket and system, with bootstrap 95% CIs."""
    rows = [r for r in data["buckets"]["table"] if r["metric"] == "error_rate" and r["bucket"] != "all"
            and r.get("mean") is not None]
    if not rows:
        return None
    labels = [b for b in data["buckets"]["definition"]["labels"] if any(r["bucket"] == b for r in rows)]
    systems = [s for s in data["systems"] if any(r.get("system") == s for r in rows)]
    fig, ax = plt.subplots(figsize=(6, 3))
    width = 0.8 / max(1, len(systems))
    for k, name in enumerate(systems):
        xs, ys, lo, hi = [], [], [], []
        for i, b in enumerate(labels):
            r = next((r for r in rows if r.get("system") == name and r["bucket"] == b), None)
            if r is None:
                continue
            xs.append(i + (k - (len(systems) - 1) / 2) * width)
            ys.append(r["mean"])
            lo.append(r["mean"] - (r["ci_low"] if r.get("ci_low") is not None else r["mean"]))
            hi.append((r["ci_high"] if r.get("ci_high") is not None else r["mean"]) - r["mean"])
        ax.bar(xs, ys, width=width, yerr=[lo, hi], capsize=3, label=name)
    ranges = data["buckets"]["definition"].get("ranges") or {}
    ax.set_xticks(range(len(labels)), [f"{b}\n{ranges.get(b, '')}" for b in labels], fontsize=8)
    ax.set_ylabel("error rate (utterance mean)")
    ax.set_title("error rate by length bucket (95% CI)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return "error rate by length bucket", _png(fig)


def _plots(data: dict) -> list[tuple[str, str]]:
    from eval.prosody import _pyplot, plot_metric_by_system

    plt = _pyplot()
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
        title = f"{metric} distribution"
        if metric == "similarity" and data.get("similarity_model"):
            title += f" ({data['similarity_model']})"
        ax.set_title(title)
        ax.set_xlabel(metric)
        ax.legend()
        plots.append((f"{metric} distribution", _png(fig)))
    bucket = _bucket_plot(data, plt)
    if bucket:
        plots.append(bucket)
    flat = _flat_rows(data["utterances"])
    for metric, title in (("vs_ref_f0_mean_diff_st", "F0 level vs reference audio (semitones)"),
                          ("vs_ref_energy_w1_db", "energy distribution distance vs reference audio (dB)"),
                          ("vs_base_f0_contour_dtw_st", f"F0 contour distance vs {data.get('baseline')} (DTW, st)"),
                          ("vs_base_energy_w1_db", f"energy distribution distance vs {data.get('baseline')} (dB)")):
        if any(_num(r.get(metric)) is not None for r in flat):
            plots.append((title, _png(plot_metric_by_system(flat, metric, title=title))))
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
            fig.tight_layout()
            plots.append(("per-sentence deltas", _png(fig)))
    return plots + _sentence_plots(data)


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]" if all(isinstance(x, float) for x in v) and len(v) == 2 \
            else ", ".join(_fmt(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}: {x}" for k, x in v.items()) or "–"
    return str(v)


def _table(rows: list[dict], columns: list[str], headers: Optional[dict] = None) -> str:
    headers = headers or {}
    head = "".join(f"<th>{html.escape(headers.get(c, c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _stat_cell(r: Optional[dict]) -> str:
    """"mean ± std" with the bootstrap CI beneath (HTML)."""
    if not r or not r.get("n"):
        return "–"
    ci = ""
    if r.get("ci_low") is not None and r.get("ci_high") is not None:
        ci = f"<br><small>[{r['ci_low']:.3f}, {r['ci_high']:.3f}]</small>"
    return f"{html.escape(str(r.get('mean_std') or _fmt(r.get('mean'))))}{ci}<br><small>n={r['n']}</small>"


def _find(rows: list[dict], **match) -> Optional[dict]:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _stat_table(css: str, corner: list[str], keys: list[tuple], heads: list[str], cell) -> str:
    """A table of statistic cells (mean ± std [CI] n): one row per key (its parts as header cells under the
    ``corner`` titles), one column per head (HTML); ``cell(key, i)`` finds the record of column ``i``."""
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in corner) + "".join(f"<th>{h}</th>" for h in heads)
    body = "".join("<tr>" + "".join(f"<th>{e(str(k))}</th>" for k in key)
                   + "".join(f"<td>{_stat_cell(cell(key, i))}</td>" for i in range(len(heads))) + "</tr>"
                   for key in keys)
    return f"<table class='{css}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _bucket_tables(rows: list[dict], systems: list[str], order: list[str], metrics: list[str],
                   ranges: dict) -> str:
    """One small table per metric: systems x buckets, cells mean ± std [CI] n."""
    e = html.escape
    parts = []
    heads = [f"{e(b)}<br><small>{e(ranges.get(b, 'all sentences' if b == 'all' else ''))}</small>" for b in order]
    for metric in metrics:
        sub = [r for r in rows if r["metric"] == metric]
        if sub:
            table = _stat_table("buckets", ["system"], [(name,) for name in systems], heads,
                                lambda key, i: _find(sub, system=key[0], bucket=order[i]))
            parts.append(f"<div><h3>{e(metric)}</h3>{table}</div>")
    return "<div class='grid'>" + "".join(parts) + "</div>"


def _prosody_html(data: dict) -> str:
    e = html.escape
    if not data.get("prosody"):
        return ""
    parts = ["<h2 id='prosody'>F0 and energy alignment</h2>",
             "<p>Every difference is system − comparison audio; semitones re 55 Hz over voiced frames (librosa pYIN). "
             "<b>vs reference audio</b>: the prompt each utterance was made from (another text, so only level, range "
             "and energy-distribution numbers are kept, unless its transcript is the sentence itself); "
             f"<b>vs baseline</b>: {e(str(data.get('baseline')))}'s utterance of the same sentence (also the DTW "
             "contour distance on voiced frames, the F0 difference after MFCC alignment and the voicing agreement). "
             "Cells: mean ± std, bootstrap 95% CI, n. docs/eval-metrics.md defines every field.</p>"]
    labels = list(data["buckets"]["definition"]["labels"]) + ["all"]
    ranges = data["buckets"]["definition"].get("ranges") or {}
    for key, title in (("vs_ref", "vs reference audio"), ("vs_base", f"vs baseline ({data.get('baseline')})")):
        rows = data["prosody"].get(key) or []
        if not rows:
            continue
        prefix = key + "_"
        fields = [prefix + f for f in PROSODY_SHOWN if any(r["metric"] == prefix + f for r in rows)]
        systems = [s for s in data["systems"] if any(r.get("system") == s for r in rows)]
        table = _stat_table("prosody", ["system"], [(name,) for name in systems],
                            [e(f[len(prefix):]) for f in fields],
                            lambda key, i, rows=rows, fields=fields: _find(rows, system=key[0], metric=fields[i],
                                                                          bucket="all"))
        parts.append(f"<h3>{e(title)}: all sentences</h3>{table}")
        key_fields = [f for f in (prefix + "f0_mean_diff_st", prefix + "f0_contour_dtw_st", prefix + "energy_w1_db")
                      if f in fields]
        order = [b for b in labels if any(r["bucket"] == b for r in rows)]
        parts.append(f"<details><summary>{e(title)} by length bucket</summary>"
                     + _bucket_tables(rows, systems, order, key_fields, ranges) + "</details>")
    return "".join(parts)


def _variants_html(data: dict) -> str:
    v = data.get("variants")
    if not v or not v.get("summary"):
        return ""
    e = html.escape
    metrics = list(dict.fromkeys(r["metric"] for r in v["summary"]))
    keys = list(dict.fromkeys((r.get("system"), r.get("variant")) for r in v["summary"]))
    table = _stat_table("variants", ["system", "variant"], keys, [e(m) for m in metrics],
                        lambda key, i: _find(v["summary"], system=key[0], variant=key[1], metric=metrics[i]))
    return ("<h2 id='variants'>Punctuation / pause sensitivity</h2><p>Each sentence was synthesised as written "
            "(<code>original</code>) and in punctuation variants (no_punct: marks removed; no_commas: pause marks "
            "removed; extra_commas: a comma every 5 words; fullwidth / halfwidth: marks converted). Cells: the "
            "variant minus the same sentence's original (ratio_duration: variant / original), mean ± std, "
            "bootstrap 95% CI, n.</p>" + table)


def render_html(data: dict) -> str:
    e = html.escape
    cfg = data["config"]
    numerals = cfg.get("numerals") or "off"
    sim_model = data.get("similarity_model") or "none"
    scoring = (f"numerals: {numerals}; interjections {'dropped' if cfg.get('drop_interjections') else 'scored'}"
               + ("; also scored with seed-tts-eval's procedure (seed_wer_percent)" if cfg.get("seed_compatible")
                  else ""))
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>Evaluation report</title><style>",
             "body{font-family:sans-serif;margin:1.5em;max-width:1500px}table{border-collapse:collapse;margin:.6em 0}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top}th{background:#eee}"
             "tbody th{text-align:left}small{color:#555}img{max-width:100%}audio{width:220px}.flags{color:#b00}"
             "figure{display:inline-block;margin:.4em;vertical-align:top}h3{margin:.8em 0 .2em;font-size:15px}"
             "nav a{margin-right:1em}.grid{display:flex;flex-wrap:wrap;gap:6px 18px;align-items:flex-start}"
             "figure img{max-width:600px}details{margin:.4em 0}summary{cursor:pointer}",
             "</style></head><body><h1>Evaluation report</h1>",
             "<nav><a href='#systems'>Per system</a><a href='#buckets'>Length buckets</a>"
             + ("<a href='#prosody'>F0 / energy</a>" if data.get("prosody") else "")
             + ("<a href='#variants'>Punctuation variants</a>" if data.get("variants") else "")
             + "<a href='#plots'>Plots</a><a href='#sentences'>Per sentence</a></nav>",
             f"<p>Run folder: <code>{e(data['run_dir'])}</code>; systems: {e(', '.join(data['systems']))}"
             + (f"; F0/energy baseline: {e(str(data['baseline']))}" if data.get("baseline") else "")
             + f"; ASR: <code>{e(str(cfg.get('asr_model')))}</code> ({e(str(cfg.get('asr_language')))}).</p>"
             "<p>Error rate = CER for Chinese, WER for English, (S + D + I) / N; deletions are swallowed words, "
             "insertions repetition. Two aggregations, named apart: <b>error_rate_corpus</b> pools the counts over "
             "utterances (long sentences weigh more); <b>error_rate_utt_mean</b> is the mean of per-utterance rates "
             "(seed-tts-eval's WER), shown with its standard deviation. "
             f"Scoring: {e(scoring)}. Speaker similarity: <b>{e(sim_model)}</b> (cosine; numbers of different scorers "
             "are not comparable). Brackets: bootstrap 95% CIs.</p>",
             "<h2 id='systems'>Per system</h2><h3>Intelligibility</h3>",
             _table(data["summary"], ["system", "metric", "utterances", "error_rate_corpus", "error_rate_corpus_ci",
                                      "error_rate_utt", "error_rate_utt_mean_ci"]
                    + (["seed_wer_percent", "seed_wer_percent_ci"] if any("seed_wer_percent" in s
                                                                         for s in data["summary"]) else [])
                    + ["substitutions", "deletions", "insertions", "ref_len", "asr_failed"],
                    {"error_rate_utt": "error_rate_utt_mean ± std", "error_rate_corpus_ci": "corpus CI",
                     "error_rate_utt_mean_ci": "utt mean CI", "seed_wer_percent": "seed-tts-eval WER %",
                     "seed_wer_percent_ci": "seed CI", "substitutions": "S", "deletions": "D (swallowed)",
                     "insertions": "I (repetition)"}),
             "<h3>Similarity, timing, prosody</h3>",
             _table(data["summary"], ["system", "similarity_mean", "similarity_ci", "rtf_mean", "duration_mean",
                                      "pause_s_mean", "vs_ref_f0_mean_diff_st_mean", "vs_base_f0_contour_dtw_st_mean",
                                      "tries", "rerolled", "failed_threshold", "flags"],
                    {"similarity_mean": f"similarity ({sim_model})", "similarity_ci": "similarity CI",
                     "pause_s_mean": "pauses (s)", "vs_ref_f0_mean_diff_st_mean": "F0 level vs ref (st)",
                     "vs_base_f0_contour_dtw_st_mean": "F0 contour vs baseline (st)"})]
    if data["pairwise"]:
        parts += ["<h2>Pairwise comparison (bootstrap 95% CI of the paired difference)</h2>",
                  _table(data["pairwise"], ["a", "b", "metric", "n", "diff_b_minus_a", "ci_low", "ci_high",
                                            "verdict"])]
    b = data["buckets"]
    ranges = b["definition"].get("ranges") or {}
    order = [x for x in list(b["definition"]["labels"]) + ["all"] if any(r["bucket"] == x for r in b["table"])]
    metrics = list(dict.fromkeys(r["metric"] for r in b["table"]))
    counts = ", ".join(f"{k}: {v}" for k, v in (b.get("sentences") or {}).items())
    parts += [f"<h2 id='buckets'>Length buckets</h2><p>Sentences by {e(b['definition']['by'])} "
              f"({e(', '.join(f'{k} {v}' for k, v in ranges.items()))}); sentences per bucket: {e(counts)}. Cells: "
              "mean ± std of per-utterance values, bootstrap 95% CI, n (error_rate_corpus: pooled rate and its "
              "CI).</p>", _bucket_tables(b["table"], data["systems"], order, metrics, ranges)]
    parts.append(_prosody_html(data))
    parts.append(_variants_html(data))
    parts.append("<h2 id='plots'>Plots</h2><div class='grid'>")
    for title, uri in _plots(data):
        parts.append(f"<figure><img alt='{e(title)}' src='{uri}'><figcaption>{e(title)}</figcaption></figure>")
    parts.append("</div>")
    parts.append("<h2 id='sentences'>Per sentence</h2><table><thead><tr><th>id</th><th>text</th>")
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
            seed = f", seed {r['seed']}" if r.get("seed") is not None else ""
            parts.append(f"<td><audio controls preload='none' src='{audio}'></audio><div>{e(r['asr'] or '')}</div>"
                         f"<div>err {e(_fmt(_num(r['error_rate'])))} (S{_fmt(r['substitutions'])} "
                         f"D{_fmt(r['deletions'])} I{_fmt(r['insertions'])}), sim {e(_fmt(_num(r['similarity'])))}"
                         f", pauses {e(_fmt(_num(r.get('pause_s'))))} s{seed}, tries {r['n_tries']}</div>{flags}</td>")
        parts.append("</tr>")
    parts.append("</tbody></table>")
    if data.get("listening"):
        parts.append(f"<h2>Listening tests</h2><p><a href='{e(data['listening'])}'>MOS / A-B / CMOS results</a> "
                     "(blind tests run on this folder's audio).</p>")
    parts.append("<p>Files: report.json, utterances.csv, summary.csv, pairwise.csv, sentences.csv, buckets.csv, "
                 "prosody.csv" + (", variants.csv, variant_deltas.csv" if data.get("variants") else "")
                 + ", config.json (rerun with <code>python -m eval run --config config.json</code>).</p>"
                 "</body></html>")
    return "".join(parts)
