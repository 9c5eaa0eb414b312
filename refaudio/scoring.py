"""Results of comparison tasks: automatic metrics, user scores, queries with filters and sorting, A/B compare.

Metrics per finished result
    cer           ASR transcript vs the text (eval.metrics normalisation; corpus tokenisation per language)
    sim_ref       speaker similarity to the reference clip used (cosine of ERes2NetV2's 192-d speaker-verification
                  embeddings, the default of eval.similarity; refaudio.grouping.SpeakerIndex caches them per kind)
    sim_centroid  speaker similarity to the role's centroid (mean vector of its valid clips: the target speaker)
    sec_per_char  seconds of audio per spoken unit (CJK character or digit; Latin letters / 3)
    duration_z    robust z-score of sec_per_char against the task's median (1.4826 x MAD; std when MAD is 0)
    flags         likely_repetition / likely_truncation (eval.audio_metrics) and duration_outlier (|z| > 2.5)
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from gsv_core import languages
from gsv_core.errors import GSVError

from .db import Database, NotFound, in_list, order_by
from .files import PathGuard
from .sweeps import Sweeps

Progress = Callable[[float, str], None]
#: transcriber(paths, language) -> texts (one per path; None for a failed file)
Transcriber = Callable[[Sequence[str], str], Sequence[Optional[str]]]
OUTLIER_Z = 2.5

RESULT_SORTS = {
    "duration": "i.duration", "cer": "i.cer", "sim_ref": "i.sim_ref", "sim_centroid": "i.sim_centroid",
    "duration_z": "abs(i.duration_z)", "score": "i.user_score", "id": "i.id", "cell": "c.position",
    "seed": "i.seed", "text": "t.position", "reference": "r.position", "sample": "i.sample",
}


class ScoringError(GSVError):
    """A score or a result query that cannot be used."""


def speech_units(text: str) -> float:
    from eval.audio_metrics import text_units

    cjk, latin = text_units(text)
    return cjk + latin / 3.0


def robust_z(values: Sequence[float]) -> list[Optional[float]]:
    if not values:
        return []
    med = statistics.median(values)
    mad = statistics.median([abs(v - med) for v in values]) * 1.4826
    scale = mad if mad > 1e-9 else (statistics.pstdev(values) if len(values) > 1 else 0.0)
    if scale <= 1e-9:
        return [0.0 for _ in values]
    return [(v - med) / scale for v in values]


def asr_transcriber(asr_service: Any) -> Optional[Transcriber]:
    """A transcriber over gsv_core.asr.ASRService with its first model, or None when no Whisper model is installed."""
    if asr_service is None or not asr_service.list_models():
        return None
    from gsv_core.asr import ASROptions

    model = asr_service.default_model()

    def run(paths: Sequence[str], lang: str) -> list[Optional[str]]:
        language = languages.whisper_language(lang)
        rows = asr_service.transcribe(list(paths), ASROptions(model_dir=model, language=language, t2s=True))
        by_path = {str(Path(r.path).resolve()): r for r in rows}
        out = []
        for p in paths:
            r = by_path.get(str(Path(p).resolve()))
            out.append(r.text if r is not None and r.ok else None)
        return out

    return run


class Results:
    def __init__(self, db: Database, sweeps: Sweeps, out_root: Path, guard: PathGuard,
                 transcriber: Optional[Transcriber] = None, speaker_index: Any = None):
        self.db = db
        self.sweeps = sweeps
        self.library = sweeps.library
        self.out_root = Path(out_root).resolve()
        self.guard = guard
        self.transcriber = transcriber
        self.speaker_index = speaker_index

    # -- files -------------------------------------------------------------------------------------------------

    def audio_path(self, item_id: int) -> Path:
        row = self.item(item_id)
        if not row["audio_file"]:
            raise ScoringError(f"Result {item_id} has no audio ({row['status']}).")
        return self.guard.resolve(row["audio_file"], base=self.out_root, what=f"audio of result {item_id}")

    def spectrogram_path(self, item_id: int) -> Path:
        row = self.item(item_id)
        if not row["spectrogram_file"]:
            raise ScoringError(f"Result {item_id} has no spectrogram ({row['status']}).")
        return self.guard.resolve(row["spectrogram_file"], base=self.out_root, what=f"spectrogram of {item_id}")

    # -- metrics -----------------------------------------------------------------------------------------------

    def score_task(self, task_id: int, progress: Optional[Progress] = None,
                   cancel: Optional[Callable[[], bool]] = None, rescore: bool = False) -> dict:
        """Compute the metrics of every finished, not yet scored result; returns what was measured and notes
        on what could not be (no ASR model, no speaker model)."""
        from gsv_core.audio import load_audio

        from eval.audio_metrics import analyze

        task = self.sweeps.task(task_id)
        if rescore:
            with self.db.transaction() as conn:
                conn.execute("UPDATE items SET scored = 0 WHERE task_id = ?", (int(task_id),))
        rows = self.db.all(
            "SELECT i.*, t.text, t.language AS text_lang, r.clip_id FROM items i JOIN task_texts t ON t.id = "
            "i.text_id JOIN task_refs r ON r.id = i.ref_id WHERE i.task_id = ? AND i.status = 'done' AND "
            "i.scored = 0 ORDER BY i.id", (int(task_id),))
        notes = []
        asr: dict[int, Optional[str]] = {}
        if self.transcriber is None:
            notes.append("no ASR model: CER not measured (put a faster-whisper model in WHISPER_DIR)")
        elif rows:
            by_lang: dict[str, list[dict]] = {}
            for r in rows:
                by_lang.setdefault(r["text_lang"], []).append(r)
            for lang, group in by_lang.items():
                if cancel is not None and cancel():
                    break
                if progress is not None:
                    progress(0.1, f"transcribing {len(group)} result(s)")
                texts = self.transcriber([str(self.audio_path(r["id"])) for r in group], lang)
                asr.update({r["id"]: t for r, t in zip(group, texts)})
        centroid = None
        ref_vecs: dict[int, Any] = {}
        if self.speaker_index is None:
            notes.append("no speaker model: similarity not measured")
        else:
            try:
                centroid = self.speaker_index.centroid(task["role_id"])
                ref_vecs = self.speaker_index.embeddings(sorted({r["clip_id"] for r in rows if r["clip_id"]}))
            except GSVError as exc:
                notes.append(f"speaker similarity unavailable: {exc}")
                self.speaker_index_error = str(exc)
        from eval.metrics import score_utterance

        import numpy as np

        for n, r in enumerate(rows):
            if cancel is not None and cancel():
                break
            if progress is not None:
                progress(0.2 + 0.7 * n / max(1, len(rows)), f"measuring result {r['id']}")
            wav, sr = load_audio(self.audio_path(r["id"]))
            text_asr = asr.get(r["id"])
            cer = None
            if text_asr is not None:
                rate = score_utterance(r["text"], text_asr, r["text_lang"]).rate
                cer = rate if np.isfinite(rate) else None
            m = analyze(wav, sr, r["text"], text_asr, r["text_lang"])
            flags = [f for f, on in (("likely_repetition", m.likely_repetition),
                                     ("likely_truncation", m.likely_truncation)) if on]
            sim_ref = sim_cen = None
            if self.speaker_index is not None and (ref_vecs or centroid is not None):
                try:
                    vec = self.speaker_index.embedding_of_wav(wav, sr)
                    unit = vec / max(float(np.linalg.norm(vec)), 1e-12)
                    if r["clip_id"] in ref_vecs:
                        ref = ref_vecs[r["clip_id"]]
                        sim_ref = float(np.dot(unit, ref / max(float(np.linalg.norm(ref)), 1e-12)))
                    if centroid is not None:
                        sim_cen = float(np.dot(unit, centroid))
                except GSVError as exc:
                    flags.append(f"similarity_failed: {exc}"[:200])
            units = speech_units(r["text"])
            spc = r["duration"] / units if units > 0 and r["duration"] else None
            with self.db.transaction() as conn:
                conn.execute("UPDATE items SET asr_text = ?, cer = ?, sim_ref = ?, sim_centroid = ?, sec_per_char = ?, "
                             "flags = ?, scored = 1 WHERE id = ?",
                             (text_asr, cer, sim_ref, sim_cen, spc, ",".join(flags), r["id"]))
        self._duration_anomaly(int(task_id))
        if progress is not None:
            progress(1.0, f"measured {len(rows)} result(s)" + (f"; {'; '.join(notes)}" if notes else ""))
        return {"scored": len(rows), "notes": notes}

    def _duration_anomaly(self, task_id: int) -> None:
        rows = self.db.all("SELECT id, sec_per_char, flags FROM items WHERE task_id = ? AND status = 'done' AND "
                           "sec_per_char IS NOT NULL", (task_id,))
        zs = robust_z([r["sec_per_char"] for r in rows])
        with self.db.transaction() as conn:
            for r, z in zip(rows, zs):
                flags = [f for f in r["flags"].split(",") if f and f != "duration_outlier"]
                if z is not None and abs(z) > OUTLIER_Z:
                    flags.append("duration_outlier")
                conn.execute("UPDATE items SET duration_z = ?, flags = ? WHERE id = ?", (z, ",".join(flags), r["id"]))

    # -- user scores -------------------------------------------------------------------------------------------

    def set_score(self, item_id: int, score: Optional[int] = None, remark: Optional[str] = None) -> dict:
        """Save a 0-5 score (None clears it) and/or a remark at once."""
        self.item(item_id)
        if score is not None:
            try:
                value = int(score)
            except (TypeError, ValueError):
                raise ScoringError(f"A score must be a whole number 0-5, not {score!r}.") from None
            if value != score or not 0 <= value <= 5:
                raise ScoringError(f"A score must be a whole number 0-5, not {score!r}.")
        with self.db.transaction() as conn:
            conn.execute("UPDATE items SET user_score = ? WHERE id = ?", (score, int(item_id)))
            if remark is not None:
                conn.execute("UPDATE items SET remark = ? WHERE id = ?", (str(remark), int(item_id)))
        return self.item(item_id)

    # -- queries -----------------------------------------------------------------------------------------------

    def item(self, item_id: int) -> dict:
        row = self.db.one(
            "SELECT i.*, c.label AS cell_label, c.params, c.position AS cell_position, t.text, "
            "t.language AS text_lang, r.clip_id, k.name AS ref_name, k.transcript AS ref_text, "
            "k.category AS ref_category FROM items i JOIN task_cells c ON c.id = i.cell_id "
            "JOIN task_texts t ON t.id = i.text_id JOIN task_refs r ON r.id = i.ref_id "
            "LEFT JOIN clips k ON k.id = r.clip_id WHERE i.id = ?", (int(item_id),))
        if row is None:
            raise NotFound(f"There is no result with id {item_id}.")
        row["params"] = json.loads(row["params"])
        return row

    def results(self, task_id: int, *, status: Optional[str] = "done", cell_ids: Sequence[int] = (),
                clip_ids: Sequence[int] = (), text_ids: Sequence[int] = (), ref_categories: Sequence[str] = (),
                min_duration: Optional[float] = None, max_duration: Optional[float] = None,
                min_score: Optional[int] = None, max_score: Optional[int] = None, max_cer: Optional[float] = None,
                min_sim: Optional[float] = None, remark: str = "", flagged: Optional[bool] = None,
                sort: Optional[str] = None, descending: Optional[bool] = None, limit: int = 500,
                offset: int = 0) -> list[dict]:
        """Results of a task; every filter optional; default order: duration, longest first."""
        self.sweeps.task(task_id)
        where, params = ["i.task_id = ?"], [int(task_id)]
        if status:
            if status not in ("pending", "running", "done", "failed"):
                raise ScoringError(f"Unknown status {status!r}.")
            where.append("i.status = ?")
            params.append(status)
        for column, values, cast in (("i.cell_id", cell_ids, int), ("r.clip_id", clip_ids, int),
                                     ("i.text_id", text_ids, int), ("k.category", ref_categories, str)):
            if values:
                marks, vals = in_list([cast(v) for v in values])
                where.append(f"{column} IN ({marks})")
                params += vals
        for cond, value, cast in (("i.duration >= ?", min_duration, float), ("i.duration <= ?", max_duration, float),
                                  ("i.user_score >= ?", min_score, int), ("i.user_score <= ?", max_score, int),
                                  ("i.cer <= ?", max_cer, float), ("i.sim_ref >= ?", min_sim, float)):
            if value is not None:
                where.append(cond)
                params.append(cast(value))
        if remark:
            where.append("instr(lower(i.remark), lower(?)) > 0")
            params.append(str(remark))
        if flagged is not None:
            where.append("i.flags <> ''" if flagged else "i.flags = ''")
        order = order_by(sort, descending, RESULT_SORTS, "duration", True, "i.id")
        sql = ("SELECT i.*, c.label AS cell_label, c.position AS cell_position, t.text, t.language AS text_lang, "
               "r.clip_id, k.name AS ref_name, k.category AS ref_category FROM items i "
               "JOIN task_cells c ON c.id = i.cell_id JOIN task_texts t ON t.id = i.text_id "
               "JOIN task_refs r ON r.id = i.ref_id LEFT JOIN clips k ON k.id = r.clip_id "
               f"WHERE {' AND '.join(where)} {order} LIMIT ? OFFSET ?")
        return self.db.all(sql, [*params, max(1, min(int(limit), 20000)), max(0, int(offset))])

    def compare(self, a_id: int, b_id: int) -> dict:
        """Two results side by side with the settings that differ."""
        a, b = self.item(a_id), self.item(b_id)
        keys = sorted(set(a["params"]) | set(b["params"]))
        diff = {k: (a["params"].get(k), b["params"].get(k)) for k in keys if a["params"].get(k) != b["params"].get(k)}
        for k in ("seed", "clip_id", "text"):
            if a[k] != b[k]:
                diff[k] = (a[k], b[k])
        metrics = {k: (a[k], b[k]) for k in ("duration", "cer", "sim_ref", "sim_centroid", "duration_z",
                                             "user_score")}
        return {"a": a, "b": b, "differences": diff, "metrics": metrics}

    def best(self, task_id: int, limit: int = 1) -> list[dict]:
        """The best-scored results: user score first, then lowest CER, then highest similarity."""
        rows = self.db.all(
            "SELECT i.id FROM items i WHERE i.task_id = ? AND i.status = 'done' ORDER BY i.user_score IS NULL, "
            "i.user_score DESC, i.cer IS NULL, i.cer ASC, i.sim_ref IS NULL, i.sim_ref DESC, i.id LIMIT ?",
            (int(task_id), max(1, int(limit))))
        return [self.item(r["id"]) for r in rows]
