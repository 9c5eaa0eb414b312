"""From raw recordings to a clean training list: one flow, each step optional and resumable, every step writing
into the dataset's folder ``DATASETS_DIR/<name>/``::

    dataset.json         the settings, the inputs and what each step has done (per recording / per clip)
    source/              uploaded recordings (recordings named by path are read where they are)
    separated/           the voice of each recording (audio-separator), 44.1 kHz      step "separate"
    background/          ... and what was removed (music, effects)
    denoised/            each recording after noisereduce                               step "denoise"
    sliced/              clips cut at silences by the slicer, 32 kHz                    step "slice"
    normalized/          the clips at the target loudness (pyloudnorm)                  step "normalize"
    transcripts.jsonl    one ASR result per clip (faster-whisper), reused on re-runs    step "transcribe"
    proofread.json       the user's corrections: edited cells, deleted and merged rows
    merged/              the audio of merged rows
    <name>.list          path|speaker|LANG|text of every usable clip (+ <name>.csv with every row and error)
    cleaning/data/       the finetune data stage's cleaning report, train/val/test split and the reference
                         pool refpool.list (clean clips of 3-5 s by default; from 2 s)       step "report"

Resume: every step skips the recordings or clips whose output exists and was made from the same input with the
same settings (a fingerprint per item in ``dataset.json``), so after a cancel, a crash or a restart the same call
continues; long recordings also resume inside a file (:func:`gsv_core.dataset.audiostream.process_windows`).
Changing a step's settings redoes that step's items and everything after them. Proofreading edits are kept apart
from the transcripts, so re-running the flow never loses them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from gsv_core.errors import AudioError, GSVError
from gsv_core.fileio import write_json_atomic, write_text_atomic
from gsv_core.finetune.slicer import AUDIO_EXTENSIONS, SlicerParams

from .audiostream import AudioStream, StreamCancelled, process_windows
from .cleanup import DenoiseParams, LoudnessParams, denoise_window, normalize_loudness

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]

STEPS = ("separate", "denoise", "slice", "normalize", "transcribe", "report")
STEP_LABELS = {"separate": "vocal separation", "denoise": "denoising", "slice": "slicing",
               "normalize": "loudness normalisation", "transcribe": "transcription", "report": "cleaning report"}
DEFAULT_STEPS = ("slice", "normalize", "transcribe", "report")
_NAME_RE = re.compile(r"^[\w\u4e00-\u9fff][\w\u4e00-\u9fff.\-]{0,79}$")
MIN_REFPOOL_S = 2.0


class DatasetFlowError(GSVError):
    """A dataset flow that cannot run as asked (name, inputs, settings, order of steps)."""


class DatasetCancelled(DatasetFlowError):
    """The user stopped the flow; everything finished so far is kept and the next run continues from there."""


def check_dataset_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME_RE.match(name) or ".." in name:
        raise DatasetFlowError(f"dataset name {name!r} is not usable: use 1-80 letters, digits, Chinese characters, "
                               "'_', '-' or '.' (no spaces or path separators)")
    return name


def _safe(name: str) -> str:
    return re.sub(r"[^\w\-.]+", "_", name, flags=re.UNICODE).strip("._") or "audio"


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class FlowConfig:
    """What the flow does; saved in ``dataset.json`` (a run with no settings given reuses the saved ones)."""

    steps: tuple[str, ...] = DEFAULT_STEPS
    separation_model: str = "bs-roformer"
    separation_window_s: float = 30.0
    denoise: DenoiseParams = field(default_factory=DenoiseParams)
    slicer: SlicerParams = field(default_factory=SlicerParams)
    loudness: LoudnessParams = field(default_factory=LoudnessParams)
    asr_model: str = ""  # a CTranslate2 Whisper folder (the caller resolves names under WHISPER_DIR)
    language: str = "zh"  # a Whisper language code or "auto"
    speaker: str = ""  # every row's speaker; default: the dataset's name
    beam_size: int = 5
    vad_filter: bool = True
    t2s: bool = False
    punctuation: str = "keep"
    device: str = "auto"
    refpool_seconds: tuple[float, float] = (3.0, 5.0)
    min_seconds: float = 1.2
    max_seconds: float = 15.0
    #: ASR decoding cap per 30 s window (None = Whisper's own); tests keep random models cheap with it
    max_new_tokens: Optional[int] = None

    def validate(self) -> "FlowConfig":
        unknown = [s for s in self.steps if s not in STEPS]
        if unknown:
            raise DatasetFlowError(f"unknown step(s) {', '.join(unknown)} (choose from {', '.join(STEPS)})")
        if not self.steps:
            raise DatasetFlowError("choose at least one step")
        self.steps = tuple(s for s in STEPS if s in self.steps)
        self.denoise.validate()
        self.loudness.validate()
        try:
            self.slicer.validate()
        except GSVError as exc:
            raise DatasetFlowError(str(exc)) from None
        if not 5.0 <= float(self.separation_window_s) <= 600.0:
            raise DatasetFlowError(f"separation window must be 5-600 s, got {self.separation_window_s}")
        lo, hi = (float(v) for v in self.refpool_seconds)
        if lo < MIN_REFPOOL_S or hi <= lo:
            raise DatasetFlowError(f"the reference pool range must start at {MIN_REFPOOL_S:g} s or later and end "
                                   f"after it, got {lo:g}-{hi:g} s")
        self.refpool_seconds = (lo, hi)
        if not 0 < float(self.min_seconds) < float(self.max_seconds):
            raise DatasetFlowError(f"clip length bounds need 0 < shortest < longest, got {self.min_seconds} and "
                                   f"{self.max_seconds}")
        if "transcribe" in self.steps and not str(self.asr_model).strip():
            raise DatasetFlowError("transcription needs an ASR model: download one with "
                                   "`python -m gsv_core.download --asr large-v3` (or small, medium...) and pick it")
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["steps"] = list(self.steps)
        d["refpool_seconds"] = list(self.refpool_seconds)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FlowConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in (d or {}).items() if k in known}
        nested = {"denoise": DenoiseParams, "slicer": SlicerParams, "loudness": LoudnessParams}
        for name, kind in nested.items():
            if isinstance(values.get(name), dict):
                fields = {f.name for f in dataclasses.fields(kind)}
                values[name] = kind(**{k: v for k, v in values[name].items() if k in fields})
        if "steps" in values:
            values["steps"] = tuple(values["steps"])
        if "refpool_seconds" in values:
            values["refpool_seconds"] = tuple(values["refpool_seconds"])
        return cls(**values)


@dataclass
class ProofRow:
    """One row of the proofreading table: ``clip`` is relative to the dataset folder."""

    clip: str
    seconds: float
    speaker: str
    lang: str
    text: str
    status: str = "ok"

    def cells(self) -> list[Any]:
        return [self.clip, round(self.seconds, 2), self.speaker, self.lang, self.text, self.status]


PROOF_COLUMNS = ["clip", "seconds", "speaker", "lang", "text", "status"]


class DatasetFlow:
    """One dataset folder and the steps that fill it (see the module docstring)."""

    def __init__(self, settings: Any, name: str):
        self.settings = settings
        self.name = check_dataset_name(name)
        self.root = Path(settings.datasets_dir) / self.name
        self._lock = threading.RLock()

    # -- layout ------------------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.root / "dataset.json"

    def folder(self, kind: str) -> Path:
        return self.root / kind

    @property
    def transcripts_path(self) -> Path:
        return self.root / "transcripts.jsonl"

    @property
    def proofread_path(self) -> Path:
        return self.root / "proofread.json"

    @property
    def list_path(self) -> Path:
        return self.root / f"{self.name}.list"

    @property
    def csv_path(self) -> Path:
        return self.root / f"{self.name}.csv"

    @property
    def cleaning_layout(self):
        from gsv_core.finetune.layout import ExperimentLayout

        return ExperimentLayout(self.root / "cleaning")

    @property
    def refpool_list(self) -> Path:
        return self.cleaning_layout.split_list("refpool")

    @staticmethod
    def list_names(settings: Any) -> list[str]:
        root = Path(settings.datasets_dir)
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / "dataset.json").is_file())

    # -- state -------------------------------------------------------------------------------------------------
    def load_state(self) -> dict:
        if not self.state_path.is_file():
            return {"name": self.name, "inputs": [], "config": None, "items": {}, "steps": {}}
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetFlowError(f"{self.state_path.name} of dataset {self.name} is damaged ({exc}); move it away "
                                   "to start the dataset over") from None
        data.setdefault("items", {})
        data.setdefault("steps", {})
        data.setdefault("inputs", [])
        return data

    def save_state(self, state: dict) -> None:
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.state_path, state)

    def config(self) -> FlowConfig:
        saved = self.load_state().get("config")
        return FlowConfig.from_dict(saved) if saved else FlowConfig()

    def inputs(self) -> list[str]:
        return list(self.load_state().get("inputs") or [])

    def set_inputs(self, paths: Iterable[str | os.PathLike]) -> list[str]:
        """Record the recordings (files or folders) the flow reads; checked by the caller's path policy."""
        items = []
        for p in paths:
            text = str(p).strip()
            if text and text not in items:
                items.append(str(Path(text).expanduser().resolve()))
        state = self.load_state()
        state["inputs"] = items
        self.save_state(state)
        return items

    def add_uploads(self, files: Sequence[str | os.PathLike]) -> list[Path]:
        """Copy uploaded recordings (Gradio's temporary files) into ``source/``; the folder becomes an input."""
        from gsv_core.fileio import copy_atomic

        src_dir = self.folder("source")
        kept = []
        for f in files:
            if f in (None, ""):
                continue
            p = Path(str(f))
            if not p.is_file():
                continue
            target = src_dir / (_safe(p.stem) + p.suffix.lower())
            if target.exists() and target.stat().st_size == p.stat().st_size:
                kept.append(target)
                continue
            n = 2
            while target.exists():
                target = src_dir / f"{_safe(p.stem)}-{n}{p.suffix.lower()}"
                n += 1
            copy_atomic(p, target)
            kept.append(target)
        if kept:
            state = self.load_state()
            folder = str(src_dir.resolve())
            if folder not in state["inputs"]:
                state["inputs"].append(folder)
                self.save_state(state)
        return kept

    def recordings(self) -> list[tuple[str, Path]]:
        """``(stem, file)`` of every input recording (folders searched recursively, sorted); stems are unique."""
        files: list[Path] = []
        seen: set[Path] = set()
        for raw in self.inputs():
            p = Path(raw)
            if p.is_dir():
                found = sorted((f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS
                                and ".part." not in f.name), key=lambda f: str(f.relative_to(p)).lower())
            elif p.is_file():
                found = [p]
            else:
                raise DatasetFlowError(f"input {p.name!r} does not exist any more (remove it from the inputs)")
            for f in found:
                if f.resolve() not in seen:
                    seen.add(f.resolve())
                    files.append(f)
        if not files:
            raise DatasetFlowError("no recordings: add audio files or folders (any format PyAV reads: wav, mp3, "
                                   "m4a, flac, ogg, opus, mp4, mkv ...)")
        out: list[tuple[str, Path]] = []
        used: set[str] = set()
        for f in files:
            stem = _safe(f.stem)
            base, n = stem, 2
            while stem in used:
                stem = f"{base}-{n}"
                n += 1
            used.add(stem)
            out.append((stem, f))
        return out

    def slicer_input(self, config: Optional[FlowConfig] = None, index: int = 0) -> tuple[str, Path, str]:
        """``(stem, file, stage)`` of what the slicer reads for recording ``index``: the denoised or separated
        audio when those steps are part of the flow and have run, else the recording itself (for the preview)."""
        cfg = config or self.config()
        recs = self.recordings()
        stem, path = recs[min(max(0, index), len(recs) - 1)]
        for step, kind in (("denoise", "denoised"), ("separate", "separated")):
            candidate = self.folder(kind) / f"{stem}.wav"
            if step in cfg.steps and candidate.is_file():
                return stem, candidate, kind
        pending = [STEP_LABELS[s] for s in ("separate", "denoise") if s in cfg.steps]
        return stem, path, "raw recording" + (f" ({' and '.join(pending)} not run yet)" if pending else "")

    # -- running -----------------------------------------------------------------------------------------------
    def run(self, config: Optional[FlowConfig] = None, *, asr: Any = None, progress: Optional[ProgressFn] = None,
            cancel: Optional[CancelFn] = None) -> dict:
        """Run the configured steps in order (each resuming where it stopped); returns a summary. Raises
        :class:`DatasetCancelled` on a cancel request and a :class:`GSVError` naming the problem otherwise."""
        cfg = (config or self.config()).validate()
        state = self.load_state()
        state["config"] = cfg.to_dict()
        state["name"] = self.name
        state.setdefault("created", time.strftime("%Y-%m-%d %H:%M:%S"))
        self.save_state(state)
        recordings = self.recordings()
        steps = list(cfg.steps)
        summary: dict[str, Any] = {"steps": {}, "recordings": len(recordings)}
        started = time.perf_counter()

        def step_progress(i: int) -> ProgressFn:
            def report(f: float, msg: str) -> None:
                if progress is not None:
                    progress((i + max(0.0, min(1.0, f))) / len(steps), f"{STEP_LABELS[steps[i]]}: {msg}")
            return report

        def cancelled() -> bool:
            return bool(cancel is not None and cancel())

        audio = {stem: path for stem, path in recordings}
        clips: Optional[list[Path]] = None
        try:
            for i, step in enumerate(steps):
                if cancelled():
                    raise DatasetCancelled(self._cancel_message(step))
                rep = step_progress(i)
                rep(0.0, "starting")
                if step == "separate":
                    audio, info = self._separate(cfg, audio, state, rep, cancelled)
                elif step == "denoise":
                    audio, info = self._denoise(cfg, audio, state, rep, cancelled)
                elif step == "slice":
                    clips, info = self._slice(cfg, audio, state, rep, cancelled)
                elif step == "normalize":
                    clips, info = self._normalize(cfg, clips if clips is not None else list(audio.values()), state,
                                                  rep, cancelled)
                elif step == "transcribe":
                    info = self._transcribe(cfg, clips if clips is not None else list(audio.values()), asr, rep,
                                            cancelled)
                else:
                    info = self._report(cfg, rep, cancelled)
                state = self.load_state()
                state["steps"][step] = {"done": True, "at": time.strftime("%Y-%m-%d %H:%M:%S"), **info}
                self.save_state(state)
                summary["steps"][step] = info
                rep(1.0, "done")
        except StreamCancelled as exc:
            raise DatasetCancelled(f"{exc}; everything finished so far is kept: run again to continue") from None
        summary["seconds"] = round(time.perf_counter() - started, 1)
        summary["list"] = str(self.list_path) if self.list_path.is_file() else ""
        return summary

    def _cancel_message(self, step: str) -> str:
        return f"stopped before {STEP_LABELS[step]}; everything finished so far is kept: run again to continue"

    def _max_seconds(self) -> Optional[float]:
        minutes = getattr(self.settings, "max_audio_minutes", None)
        return float(minutes) * 60 if minutes else None

    def _items(self, state: dict, step: str) -> dict:
        return state.setdefault("items", {}).setdefault(step, {})

    def _record(self, step: str, item: str, value: Any) -> None:
        with self._lock:
            state = self.load_state()
            self._items(state, step)[item] = value
            self.save_state(state)

    def _separate(self, cfg, audio, state, rep, cancelled):
        from . import separation
        from .separation import SEPARATION_SR, VocalSeparator

        out_dir, bg_dir = self.folder("separated"), self.folder("background")
        done_items = self._items(state, "separate")
        todo = []
        result = {}
        for stem, src in audio.items():
            out = out_dir / f"{stem}.wav"
            key = _key(_fingerprint(src), separation.resolve_filename(cfg.separation_model), cfg.separation_window_s)
            result[stem] = out
            if done_items.get(stem) == key and out.is_file():
                continue
            todo.append((stem, src, out, key))
        if todo:
            sep = VocalSeparator(separation.model_dir(self.settings), cfg.separation_model,
                                 self.root / "tmp" / "separation",
                                 shown_dir=f"{Path(self.settings.pretrained_dir).name}/uvr")
            try:
                for n, (stem, src, out, key) in enumerate(todo):
                    if cancelled():
                        raise DatasetCancelled(f"separation stopped after {n} of {len(todo)} recordings; "
                                               "run again to continue")
                    stream = AudioStream(src, SEPARATION_SR, max_seconds=self._max_seconds())
                    process_windows(stream, sep.separate_window, [out, bg_dir / f"{stem}.wav"], key=key,
                                    block=cfg.separation_window_s, context=2.0, crossfade=1.0,
                                    progress=lambda f, m, n=n: rep((n + f) / len(todo), m), cancel=cancelled,
                                    what="separating")
                    self._record("separate", stem, key)
            finally:
                sep.close()
        return result, {"recordings": len(result), "processed": len(todo), "model": cfg.separation_model}

    def _denoise(self, cfg, audio, state, rep, cancelled):
        out_dir = self.folder("denoised")
        done_items = self._items(state, "denoise")
        result = {}
        todo = []
        for stem, src in audio.items():
            out = out_dir / f"{stem}.wav"
            key = _key(_fingerprint(src), cfg.denoise.as_dict())
            result[stem] = out
            if done_items.get(stem) == key and out.is_file():
                continue
            todo.append((stem, src, out, key))
        for n, (stem, src, out, key) in enumerate(todo):
            if cancelled():
                raise DatasetCancelled(f"denoising stopped after {n} of {len(todo)} recordings; run again to continue")
            rate = _native_rate(src)
            stream = AudioStream(src, min(48000, max(16000, rate)), max_seconds=self._max_seconds())
            process_windows(stream, lambda w, sr=stream.sr: (denoise_window(w, sr, cfg.denoise),), [out], key=key,
                            block=30.0, context=1.0, crossfade=0.5,
                            progress=lambda f, m, n=n: rep((n + f) / len(todo), m), cancel=cancelled,
                            what="denoising")
            self._record("denoise", stem, key)
        return result, {"recordings": len(result), "processed": len(todo), **cfg.denoise.as_dict()}

    def _slice(self, cfg, audio, state, rep, cancelled):
        from .slicing import slice_stream

        out_dir = self.folder("sliced")
        done_items = self._items(state, "slice")
        clips: list[Path] = []
        processed = 0
        stems = list(audio.items())
        for n, (stem, src) in enumerate(stems):
            key = _key(_fingerprint(src), cfg.slicer.as_dict())
            prev = done_items.get(stem) or {}
            names = prev.get("clips") or []
            if prev.get("key") == key and names and all((out_dir / c).is_file() for c in names):
                clips.extend(out_dir / c for c in names)
                continue
            if cancelled():
                raise DatasetCancelled(f"slicing stopped after {n} of {len(stems)} recordings; run again to continue")
            for old in names:  # the clips of older settings go
                (out_dir / old).unlink(missing_ok=True)
            written = slice_stream(src, out_dir, cfg.slicer, stem=stem, max_seconds=self._max_seconds(),
                                   progress=lambda f, m, n=n: rep((n + f) / len(stems), m), cancel=cancelled)
            self._record("slice", stem, {"key": key, "clips": [p.name for p in written]})
            clips.extend(written)
            processed += 1
        if not clips:
            raise DatasetFlowError("the slicer found no clip in the recordings (are they silent? lower the "
                                   "threshold)")
        secs = [_seconds(p) for p in clips]
        return clips, {"clips": len(clips), "processed": processed, "seconds": round(sum(secs), 1),
                       "shortest": round(min(secs), 2), "longest": round(max(secs), 2)}

    def _normalize(self, cfg, clips, state, rep, cancelled):
        out_dir = self.folder("normalized")
        done_items = self._items(state, "normalize")
        result, processed, notes = [], 0, 0
        params = cfg.loudness
        pending: dict[str, str] = {}
        last_save = time.monotonic()
        for n, src in enumerate(clips):
            out = out_dir / src.name
            key = _key(_fingerprint(src), params.as_dict())
            result.append(out)
            if done_items.get(src.name) == key and out.is_file():
                continue
            if cancelled():
                self._record_many("normalize", pending)
                raise DatasetCancelled(f"loudness normalisation stopped after {n} of {len(clips)} clips; run "
                                       "again to continue")
            rep(n / len(clips), f"{n + 1}/{len(clips)}: {src.name}")
            info = normalize_loudness(src, out, params)
            notes += bool(info["note"])
            pending[src.name] = key
            processed += 1
            if time.monotonic() - last_save > 2.0:
                self._record_many("normalize", pending)
                pending, last_save = {}, time.monotonic()
        self._record_many("normalize", pending)
        return result, {"clips": len(result), "processed": processed, "unchanged": notes, **params.as_dict()}

    def _record_many(self, step: str, items: dict) -> None:
        if not items:
            return
        with self._lock:
            state = self.load_state()
            self._items(state, step).update(items)
            self.save_state(state)

    # -- transcription and the list ----------------------------------------------------------------------------
    def _rel(self, p: Path) -> str:
        try:
            return Path(p).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(Path(p).resolve())

    def _abs(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    def transcripts(self) -> dict[str, dict]:
        """The cached ASR rows by clip (relative path); a damaged line is skipped."""
        out: dict[str, dict] = {}
        if self.transcripts_path.is_file():
            for line in self.transcripts_path.read_text(encoding="utf-8").splitlines():
                try:
                    d = json.loads(line)
                    out[d["clip"]] = d
                except (ValueError, KeyError, TypeError):
                    continue
        return out

    def _asr_options(self, cfg: FlowConfig):
        from gsv_core.asr import ASROptions

        return ASROptions(model_dir=cfg.asr_model, language=cfg.language, vad_filter=cfg.vad_filter,
                          beam_size=cfg.beam_size, device=cfg.device, t2s=cfg.t2s, punctuation=cfg.punctuation,
                          speaker=cfg.speaker or self.name, max_new_tokens=cfg.max_new_tokens,
                          temperature=0.0 if cfg.max_new_tokens else None)

    def _transcribe(self, cfg, clips, asr, rep, cancelled):
        from gsv_core.asr import ASRService, check_model_dir

        opts = self._asr_options(cfg)
        try:
            model_dir = check_model_dir(cfg.asr_model)
        except GSVError as exc:
            raise DatasetFlowError(f"{exc}. Download a Whisper model with `python -m gsv_core.download --asr "
                                   "large-v3` (or tiny, base, small, medium)") from None
        service = asr or ASRService.from_settings(self.settings)
        known = self.transcripts()
        opt_key = _key(str(model_dir), cfg.language, cfg.beam_size, cfg.vad_filter, cfg.t2s, cfg.punctuation,
                       cfg.max_new_tokens)
        new = 0
        event = threading.Event()
        for n, clip in enumerate(clips):
            rel = self._rel(clip)
            fp = _key(_fingerprint(clip), opt_key)
            if known.get(rel, {}).get("key") == fp:
                continue
            if cancelled():
                raise DatasetCancelled(f"transcription stopped after {n} of {len(clips)} clips; the transcripts "
                                       "so far are kept: run again to continue")
            rep(n / len(clips), f"{n + 1}/{len(clips)}: {clip.name}")
            rows = service.transcribe([clip], opts, cancel=event)
            row = rows[0]
            d = {"clip": rel, "key": fp, "text": row.text, "lang": row.lang or cfg.language, "speaker": row.speaker,
                 "seconds": row.duration, "error": row.error,
                 "segments": [dataclasses.asdict(s) for s in row.segments]}
            with open(self.transcripts_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(d, ensure_ascii=False) + "\n")
            known[rel] = d
            new += 1
        order = [self._rel(c) for c in clips]
        state = self.load_state()
        state["clips"] = order
        self.save_state(state)
        if new or not self.list_path.is_file():
            self.write_list()
        rows = self.rows()
        failed = sum(1 for r in rows if r.status != "ok")
        return {"clips": len(order), "transcribed": new, "rows": len(rows) - failed, "failed": failed,
                "model": model_dir.name, "language": cfg.language}

    def _load_proofread(self) -> dict:
        if self.proofread_path.is_file():
            try:
                data = json.loads(self.proofread_path.read_text(encoding="utf-8"))
                data.setdefault("edits", {})
                data.setdefault("deleted", [])
                data.setdefault("merged", [])
                return data
            except (OSError, ValueError):
                pass
        return {"edits": {}, "deleted": [], "merged": []}

    def rows(self) -> list[ProofRow]:
        """The proofreading table: every clip's transcript with the user's corrections (deleted rows left out,
        merged rows in place of their parts)."""
        known = self.transcripts()
        order = self.load_state().get("clips") or list(known)
        proof = self._load_proofread()
        merged_parts = {}
        for m in proof["merged"]:
            for part in m["parts"]:
                merged_parts[part] = m
        deleted = set(proof["deleted"])
        out: list[ProofRow] = []
        emitted: set[str] = set()
        default_lang = (self.config().language if self.config().language != "auto" else "zh")
        for rel in order:
            m = merged_parts.get(rel)
            if m is not None:
                if m["clip"] in emitted or m["clip"] in deleted:
                    continue
                emitted.add(m["clip"])
                row = ProofRow(m["clip"], float(m.get("seconds") or 0.0), m.get("speaker") or self.name,
                               m.get("lang") or default_lang, m.get("text") or "")
            else:
                d = known.get(rel)
                if d is None or rel in deleted:
                    continue
                row = ProofRow(rel, float(d.get("seconds") or 0.0), d.get("speaker") or self.name,
                               d.get("lang") or default_lang, d.get("text") or "",
                               "ok" if not d.get("error") else f"error: {d['error']}")
            edit = proof["edits"].get(row.clip)
            if edit:
                row.text = edit.get("text", row.text)
                row.speaker = edit.get("speaker", row.speaker)
                row.lang = edit.get("lang", row.lang)
                if edit.get("text", "").strip() and row.status.startswith("error"):
                    row.status = "ok"  # the user typed what the clip says
            if row.status == "ok" and not row.text.strip():
                row.status = "empty: no speech recognised"
            out.append(row)
        return out

    def write_list(self) -> Optional[Path]:
        """Write ``<name>.list`` (usable rows, absolute paths) and ``<name>.csv`` (every row with its status)."""
        import csv
        import io

        from gsv_core.formats import listfile

        rows = self.rows()
        lines = [listfile.format_line(str(self._abs(r.clip).resolve()), r.speaker, r.lang or "zh", r.text)
                 for r in rows if r.status == "ok" and r.text.strip()]
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["path", "speaker", "lang", "text", "seconds", "status"])
        for r in rows:
            w.writerow([str(self._abs(r.clip).resolve()), r.speaker, r.lang, r.text, r.seconds, r.status])
        write_text_atomic(self.csv_path, "\ufeff" + buf.getvalue())
        if not lines:
            self.list_path.unlink(missing_ok=True)
            return None
        write_text_atomic(self.list_path, "\n".join(lines) + "\n")
        return self.list_path

    # -- proofreading --------------------------------------------------------------------------------------------
    def clip_path(self, clip: str) -> Path:
        """The audio of a table row (a path inside the dataset folder only)."""
        from gsv_core.paths import check_inside

        return check_inside(self.root, clip, "clip", kind="any")

    def save_edits(self, table: Sequence[Sequence[Any]]) -> list[ProofRow]:
        """Apply the table's speaker/lang/text cells (rows matched by their clip); rows missing from the table
        are not deleted (use :meth:`delete`). Rewrites the .list."""
        from gsv_core import languages

        current = {r.clip: r for r in self.rows()}
        proof = self._load_proofread()
        for cells in table:
            cells = list(cells) + [""] * (len(PROOF_COLUMNS) - len(cells))
            clip = str(cells[0] or "").strip()
            if clip not in current:
                continue
            speaker, lang, text = (str(c if c is not None else "").strip() for c in (cells[2], cells[3], cells[4]))
            r = current[clip]
            if lang and lang.lower() not in languages.text_modes():
                raise DatasetFlowError(f"row {clip}: language {lang!r} is not one of "
                                       f"{', '.join(languages.text_modes())}")
            edit = proof["edits"].get(clip, {})
            for name, new, old in (("text", text, r.text), ("speaker", speaker, r.speaker),
                                   ("lang", lang.lower(), r.lang)):
                if new != old:
                    edit[name] = new
            if edit:
                proof["edits"][clip] = edit
        write_json_atomic(self.proofread_path, proof)
        self.write_list()
        return self.rows()

    def delete(self, clips: Iterable[str]) -> list[ProofRow]:
        proof = self._load_proofread()
        names = {r.clip for r in self.rows()}
        for c in clips:
            c = str(c).strip()
            if c in names and c not in proof["deleted"]:
                proof["deleted"].append(c)
        write_json_atomic(self.proofread_path, proof)
        self.write_list()
        return self.rows()

    def restore(self) -> list[ProofRow]:
        """Undo every deletion."""
        proof = self._load_proofread()
        proof["deleted"] = []
        write_json_atomic(self.proofread_path, proof)
        self.write_list()
        return self.rows()

    def merge(self, first: str, second: str) -> list[ProofRow]:
        """Join two rows (audio one after the other, texts joined) into one new clip in ``merged/``."""
        import soundfile as sf

        from gsv_core.audio import load_audio, resample

        rows = self.rows()
        names = [r.clip for r in rows]
        if first not in names or second not in names:
            raise DatasetFlowError("choose two rows of the table to merge")
        i, j = sorted((names.index(first), names.index(second)))
        a, b = rows[i], rows[j]
        wa, sra = load_audio(self._abs(a.clip))
        wb, srb = load_audio(self._abs(b.clip))
        if srb != sra:
            wb = resample(wb, srb, sra)
        gap = np.zeros(int(0.15 * sra), dtype=np.float32)
        joined = np.concatenate([wa, gap, wb])
        target = self.folder("merged") / f"{Path(a.clip).stem}+{Path(b.clip).stem}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        from gsv_core.fileio import atomic_path

        with atomic_path(target, fsync=False) as tmp:
            sf.write(str(tmp), np.clip(joined, -1.0, 32767 / 32768), sra, subtype="PCM_16", format="WAV")
        sep = "" if a.lang in ("zh", "ja", "yue", "all_zh", "all_ja", "all_yue") else " "
        proof = self._load_proofread()
        parts = []
        for r in (a, b):  # a merged row merged again: its own parts are taken over
            old = next((m for m in proof["merged"] if m["clip"] == r.clip), None)
            if old is not None:
                proof["merged"].remove(old)
                parts.extend(old["parts"])
            else:
                parts.append(r.clip)
        rel = self._rel(target)
        proof["merged"].append({"clip": rel, "parts": parts, "text": (a.text.rstrip() + sep + b.text.lstrip()),
                                "speaker": a.speaker, "lang": a.lang,
                                "seconds": round(joined.shape[0] / sra, 3)})
        proof["edits"].pop(rel, None)
        write_json_atomic(self.proofread_path, proof)
        self.write_list()
        return self.rows()

    # -- report ------------------------------------------------------------------------------------------------
    def _report(self, cfg, rep, cancelled):
        from gsv_core.finetune.data import CleaningConfig, SplitConfig, prepare_dataset

        if not self.list_path.is_file():
            raise DatasetFlowError(f"the cleaning report needs the dataset's list {self.list_path.name}: run the "
                                   "transcription step first")
        cleaning = CleaningConfig(min_seconds=cfg.min_seconds, max_seconds=cfg.max_seconds,
                                  refpool_seconds=tuple(cfg.refpool_seconds))
        lang = cfg.language if cfg.language not in ("auto", "") else "zh"
        try:
            result = prepare_dataset(self.list_path, self.cleaning_layout, default_lang=lang,
                                     default_speaker=cfg.speaker or self.name, cleaning=cleaning, split=SplitConfig(),
                                     progress=rep, cancel=cancelled)
        except GSVError as exc:
            if type(exc).__name__ == "DataCancelled":
                raise DatasetCancelled(f"{exc}") from None
            raise
        counts = result.counts
        return {"kept": counts.get("kept", 0), "dropped": counts.get("dropped", 0),
                "refpool": counts.get("refpool", 0), "refpool_seconds": list(cfg.refpool_seconds),
                "report": self._rel(self.cleaning_layout.cleaning_report_csv)}

    def report_rows(self) -> list[list[Any]]:
        """Kept / dropped / pool totals and the clips each cleaning rule failed (as the Finetune tab shows)."""
        path = self.cleaning_layout.cleaning_report_json
        if not path.is_file():
            return []
        data = json.loads(path.read_text(encoding="utf-8"))
        counts, seconds = data.get("counts", {}), data.get("seconds", {})
        rows = [[f"= {k}", counts.get(k), round(float(seconds.get(k) or 0), 2), ""]
                for k in ("kept", "dropped", "train", "val", "test", "refpool") if k in counts]
        for rule, r in (data.get("rules") or {}).items():
            if r.get("failed"):
                rows.append([rule, r.get("failed"), round(float(r.get("failed_seconds") or 0), 2),
                             r.get("only_reason")])
        return rows

    def status(self) -> dict:
        """What the dataset folder holds, for the page and ``--status``."""
        state = self.load_state()
        def count(kind: str) -> int:
            d = self.folder(kind)
            return sum(1 for f in d.glob("*.wav") if ".part." not in f.name) if d.is_dir() else 0
        return {"name": self.name, "inputs": len(state.get("inputs") or []),
                "steps": {s: bool((state.get("steps") or {}).get(s, {}).get("done")) for s in STEPS},
                "separated": count("separated"), "denoised": count("denoised"), "sliced": count("sliced"),
                "normalized": count("normalized"), "transcribed": len(self.transcripts()),
                "list_rows": (sum(1 for line in self.list_path.read_text(encoding="utf-8").splitlines() if line)
                              if self.list_path.is_file() else 0),
                "refpool": (sum(1 for line in self.refpool_list.read_text(encoding="utf-8").splitlines() if line)
                            if self.refpool_list.is_file() else 0)}


def _native_rate(path: Path) -> int:
    import soundfile as sf

    try:
        return int(sf.info(str(path)).samplerate)
    except Exception:  # noqa: BLE001 - not a soundfile format: ask PyAV
        import av

        try:
            with av.open(str(path)) as c:
                s = c.streams.audio[0]
                return int(s.codec_context.sample_rate or s.rate or 44100)
        except Exception as exc:  # noqa: BLE001
            raise AudioError(f"{path.name}: cannot read the sample rate ({exc})") from None


def _seconds(path: Path) -> float:
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except Exception:  # noqa: BLE001
        return 0.0


__all__ = ["DEFAULT_STEPS", "MIN_REFPOOL_S", "PROOF_COLUMNS", "STEPS", "STEP_LABELS", "DatasetCancelled",
           "DatasetFlow", "DatasetFlowError", "FlowConfig", "ProofRow", "check_dataset_name"]
