"""Checkpoint selection after finetuning: every saved epoch (GPT × SoVITS pairs, plus the pretrained baseline)
synthesises the experiment's held-out test sentences through the eval loop; the pairs are ranked by corpus CER and
speaker similarity.

Ranking rule: each finetuned pair gets its rank by CER (ascending) and its rank by similarity (descending); the
pairs are ordered by the mean of the two ranks, ties broken by CER then similarity. The best pair is the first
finetuned one; the baseline is shown for comparison and never marked. With fewer than
:data:`eval.report.MIN_PAIRS_FOR_VERDICT` test sentences the table is shown with a warning that the ranking is
weak. The run folder is an ordinary eval run: it resumes after an interruption and has its own report.html."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from eval.run import EvalError, RunConfig, SystemConfig
from gsv_core import languages
from gsv_core.fileio import write_text_atomic
from gsv_core.formats import listfile

ProgressFn = Callable[[float, str], None]

#: the most pairs one selection evaluates; beyond it the latest GPT is paired with every SoVITS and vice versa
MAX_PAIRS = 16


@dataclass(frozen=True)
class Candidate:
    name: str
    gpt: str
    sovits: str
    baseline: bool = False


@dataclass
class SelectionResult:
    run_dir: Path
    ranking: list[dict]
    best: Optional[dict]
    warning: str = ""
    report_html: Optional[Path] = None

    def to_dict(self) -> dict:
        return dict(run_dir=str(self.run_dir), ranking=self.ranking, best=self.best, warning=self.warning,
                    report_html=str(self.report_html) if self.report_html else None)


def _epoch_of(path: str) -> int:
    """Epoch number in an export name (``x_e8_s120.pth``, ``x-e15.ckpt``); -1 if none."""
    m = re.search(r"[-_]e(\d+)(?:[_.-]|$)", Path(path).name)
    return int(m.group(1)) if m else -1


def _label(path: str) -> str:
    e = _epoch_of(path)
    return f"e{e}" if e >= 0 else re.sub(r"[^\w\-.]", "_", Path(path).stem)


def candidate_pairs(gpts: Sequence[str], sovits: Sequence[str], baseline: Optional[tuple[str, str]] = None,
                    max_pairs: int = MAX_PAIRS) -> list[Candidate]:
    """All GPT × SoVITS pairs of the saved epochs (or, beyond ``max_pairs``, the latest GPT with every SoVITS and
    the latest SoVITS with every GPT), then the pretrained baseline."""
    gpts = sorted(dict.fromkeys(map(str, gpts)), key=_epoch_of)
    sovits = sorted(dict.fromkeys(map(str, sovits)), key=_epoch_of)
    if not gpts and not sovits:
        raise EvalError("no finetuned checkpoints to compare: train SoVITS and/or GPT first")
    if baseline is not None:
        gpts = gpts or [baseline[0]]
        sovits = sovits or [baseline[1]]
    elif not gpts or not sovits:
        raise EvalError("a finetuned model needs a partner: give the pretrained GPT/SoVITS as the baseline")
    pairs = [(g, s) for g in gpts for s in sovits]
    if len(pairs) > max_pairs:
        pairs = list(dict.fromkeys([(gpts[-1], s) for s in sovits] + [(g, sovits[-1]) for g in gpts]))[:max_pairs]
    out = []
    for g, s in pairs:
        gl = "gpt-base" if baseline is not None and g == baseline[0] else f"gpt-{_label(g)}"
        sl = "sovits-base" if baseline is not None and s == baseline[1] else f"sovits-{_label(s)}"
        out.append(Candidate(f"{gl}__{sl}", g, s))
    if baseline is not None and tuple(baseline) not in pairs:
        out.append(Candidate("baseline", baseline[0], baseline[1], baseline=True))
    return out


def _read_list(path: Path) -> list[tuple[str, str, str, str]]:
    """(audio, speaker, language, text) of the usable rows of a split list the data stage wrote."""
    if not path.is_file():
        return []
    parsed = listfile.read_list(path, strict=False)
    return [(r.audio, r.speaker, r.lang, r.text) for r in parsed.rows if r.lang is not None]


def write_test_csv(test_list: str | os.PathLike, out_csv: str | os.PathLike, max_sentences: int = 50) -> Path:
    """The held-out ``test.list`` as an eval test CSV (id, text, lang), at most ``max_sentences`` rows."""
    rows = _read_list(Path(test_list))
    if not rows:
        raise EvalError(f"{test_list} has no test sentences: prepare the data first (its split writes test.list)")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "text", "lang"])
    for i, (path, _spk, lang, text) in enumerate(rows[:max_sentences]):
        stem = re.sub(r"[^\w\-.]", "_", Path(path).stem)[:60] or "utt"
        w.writerow([f"{i:03d}_{stem}", text, lang])
    return write_text_atomic(out_csv, buf.getvalue())


def pick_reference(refpool_list: str | os.PathLike, fallback_list: str | os.PathLike | None = None
                   ) -> tuple[str, str, str]:
    """(audio, text, lang) of the reference used for every candidate: the first clip of the reference pool (clean,
    2-5 s), else the first clip of the fallback list (the training split)."""
    for src in (refpool_list, fallback_list):
        if src is None:
            continue
        for path, _spk, lang, text in _read_list(Path(src)):
            if Path(path).is_file():
                return path, text, lang
    raise EvalError("no reference clip: the reference pool and the training list are empty or their audio is gone")


def _same(a: float, b: float) -> bool:
    return a == b or abs(a - b) < 5e-5


def _rank(summary: list[dict], candidates: Sequence[Candidate]) -> list[dict]:
    by_name = {c.name: c for c in candidates}
    rows = []
    for s in summary:
        c = by_name.get(s["system"])
        if c is None:
            continue
        rows.append(dict(system=c.name, gpt=c.gpt, sovits=c.sovits, baseline=c.baseline,
                         cer=s.get("error_rate_corpus", s.get("error_rate")), similarity=s.get("similarity_mean"),
                         cer_ci=s.get("error_rate_corpus_ci", s.get("error_rate_ci")),
                         similarity_ci=s.get("similarity_ci"),
                         utterances=s.get("utterances"), flags=s.get("flags") or {}))
    finetuned = [r for r in rows if not r["baseline"]]
    inf = float("inf")

    def cer_key(r):
        return r["cer"] if r["cer"] is not None else inf

    def sim_key(r):
        return -r["similarity"] if r["similarity"] is not None else inf

    for key, field_name in ((cer_key, "rank_cer"), (sim_key, "rank_similarity")):
        # equal values (to 4 decimals) share their mean rank, so a tie never decides the order on its own
        ordered = sorted(finetuned, key=key)
        i = 0
        while i < len(ordered):
            j = i
            value = key(ordered[i])
            while j + 1 < len(ordered) and _same(key(ordered[j + 1]), value):
                j += 1
            for r in ordered[i:j + 1]:
                r[field_name] = (i + j) / 2 + 1
            i = j + 1
    for r in finetuned:
        r["score"] = (r["rank_cer"] + r["rank_similarity"]) / 2.0
    finetuned.sort(key=lambda r: (r["score"], cer_key(r), sim_key(r)))
    for i, r in enumerate(finetuned, start=1):
        r["rank"] = i
        r["best"] = i == 1
    base = [dict(r, rank=None, best=False, score=None, rank_cer=None, rank_similarity=None)
            for r in rows if r["baseline"]]
    return finetuned + base


def select_checkpoints(engine, asr_service, *, test_list: str | os.PathLike, candidates: Sequence[Candidate],
                       ref_audio: str, ref_text: str, ref_lang: str = "zh", asr_model: str,
                       asr_language: str = "zh", run_dir: str | os.PathLike, sv_path: Optional[str] = None,
                       samples: int = 1, seed: int = 1234, max_sentences: int = 50, params: Optional[dict] = None,
                       progress: Optional[ProgressFn] = None, cancel: Optional[threading.Event] = None
                       ) -> SelectionResult:
    """Evaluate ``candidates`` on the held-out sentences into ``run_dir`` (resumable), rank, write selection.json,
    ranking.csv and the run's report.html."""
    from eval.report import MIN_PAIRS_FOR_VERDICT, build_report, write_report
    from eval.run import EvalRunner

    if not candidates:
        raise EvalError("no candidates to evaluate")
    run_dir = Path(run_dir)
    test_csv = write_test_csv(test_list, run_dir.parent / f"{run_dir.name}_test.csv", max_sentences)
    sys_params = dict(params or {})
    sys_params.setdefault("ref_lang", ref_lang)
    config = RunConfig(test_csv=str(test_csv), asr_model=str(asr_model), asr_language=asr_language,
                       samples=samples, seed=seed, sv_path=sv_path, run_dir=str(run_dir),
                       systems=[SystemConfig(name=c.name, gpt=c.gpt, sovits=c.sovits, ref_audio=ref_audio,
                                             ref_text=ref_text, params=dict(sys_params)) for c in candidates],
                       baseline=next((c.name for c in candidates if c.baseline), None))  # F0/energy vs_base_*
    EvalRunner(engine, asr_service).run(config, run_dir, progress=progress, cancel=cancel)
    data = build_report(run_dir)
    ranking = _rank(data["summary"], candidates)
    n_sent = len({s["id"] for s in data["sentences"]})
    warning = ""
    if n_sent < MIN_PAIRS_FOR_VERDICT:
        warning = (f"only {n_sent} held-out sentence(s): the ranking is weak (a verdict needs at least "
                   f"{MIN_PAIRS_FOR_VERDICT}); add test sentences or listen before choosing")
    best = next((r for r in ranking if r.get("best")), None)
    html = write_report(run_dir)
    result = SelectionResult(run_dir=run_dir, ranking=ranking, best=best, warning=warning, report_html=html)
    (run_dir / "selection.json").write_text(json.dumps(result.to_dict(), ensure_ascii=False, indent=2),
                                            encoding="utf-8")
    with open(run_dir / "ranking.csv", "w", newline="", encoding="utf-8") as fh:
        cols = ["rank", "best", "system", "cer", "similarity", "rank_cer", "rank_similarity", "score", "gpt", "sovits",
                "baseline", "utterances"]
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(ranking)
    return result


def load_selection(run_dir: str | os.PathLike) -> Optional[dict]:
    p = Path(run_dir) / "selection.json"
    if not p.is_file():
        return None
    return json.loads(p.read_text(encoding="utf-8"))


def select_for_experiment(settings, name: str, asr_model: Optional[str] = None, asr_language: Optional[str] = None,
                          samples: int = 1, max_sentences: int = 50, baseline: bool = True, engine=None, asr=None,
                          progress=None, cancel: Optional[threading.Event] = None) -> SelectionResult:
    """Checkpoint selection for experiment ``name`` (used by the CLI and the Finetune tab)."""
    from gsv_core.api import Engine
    from gsv_core.asr import ASRService
    from gsv_core.errors import GSVError
    from gsv_core.finetune.pipeline import Experiment

    exp = Experiment.open(settings, name)
    ex = exp.exports()
    base = None
    if baseline:
        p = exp.pretrained()
        if p["s1"] is not None and Path(p["s1"]).is_file() and Path(p["s2g"]).is_file():
            base = (str(p["s1"]), str(p["s2g"]))
    cands = candidate_pairs(ex["gpt"], ex["sovits"], baseline=base)
    ref_audio, ref_text, ref_lang = pick_reference(exp.layout.split_list("refpool"), exp.layout.split_list("train"))
    asr = asr or ASRService.from_settings(settings)
    model = asr_model or asr.default_model()  # raises a clear ASRError when there is none
    engine = engine or Engine.open(settings)
    lang = asr_language or languages.whisper_language(exp.config.default_lang)
    sv = str(exp.pretrained()["sv"]) if Path(exp.pretrained()["sv"]).is_file() else ""
    import time as _t

    run_dir = exp.layout.selection_dir / _t.strftime("run_%Y%m%d_%H%M%S")
    previous = sorted(exp.layout.selection_dir.glob("run_*/config.json")) if exp.layout.selection_dir.is_dir() else []
    if previous:  # resume the last run when it evaluated the same candidates
        last = previous[-1].parent
        try:
            names = [s["name"] for s in json.loads(previous[-1].read_text(encoding="utf-8"))["systems"]]
        except (ValueError, KeyError):
            names = []
        if names == [c.name for c in cands] and not (last / "selection.json").is_file():
            run_dir = last
    return select_checkpoints(engine, asr, test_list=exp.layout.split_list("test"), candidates=cands,
                              ref_audio=ref_audio, ref_text=ref_text, ref_lang=ref_lang, asr_model=model,
                              asr_language=lang, run_dir=run_dir, sv_path=sv, samples=samples,
                              max_sentences=max_sentences, progress=progress, cancel=cancel)
