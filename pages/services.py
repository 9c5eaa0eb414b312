"""The services the app's tabs share, created once per app: the TTS engine (one model registry for every tab),
weight-file listing from the config's folders, the generation history and batch jobs.

No gradio here: everything a CLI or a test would need lives in this module; ``pages/tts.py`` only wires it to
widgets. Every user-caused failure is a :class:`gsv_core.errors.GSVError` with a readable message.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import json
import re
import secrets
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from gsv_core import languages, paths, weights
from gsv_core.errors import GSVError
from gsv_core.fileio import write_text_atomic
from gsv_core.messages import keyed


#: split methods with the names the UI shows (upstream's cut0..cut5)
SPLIT_LABELS = OrderedDict(
    [
        ("cut0", "cut0 · no split"),
        ("cut1", "cut1 · every 4 sentences"),
        ("cut2", "cut2 · about 50 characters"),
        ("cut3", "cut3 · at 。 (Chinese full stop)"),
        ("cut4", "cut4 · at . (English full stop)"),
        ("cut5", "cut5 · at every punctuation mark"),
    ]
)
#: the same in Chinese (the pages show the one of the user's language)
SPLIT_LABELS_ZH = OrderedDict(
    [
        ("cut0", "cut0 · 不切分"),
        ("cut1", "cut1 · 每 4 句一切"),
        ("cut2", "cut2 · 约 50 字一切"),
        ("cut3", "cut3 · 按中文句号。切"),
        ("cut4", "cut4 · 按英文句号 . 切"),
        ("cut5", "cut5 · 按所有标点切"),
    ]
)
#: text modes with the names the UI shows, from the one language table
HISTORY_SIZE = 50


# -- weight files -------------------------------------------------------------------------------------------------

_describe_cache: dict[tuple[str, float, int], str] = {}


def weight_version(path: Any) -> str:
    """A one-line description of a GPT/SoVITS file (kind and version), cached by path, size and mtime."""
    from gsv_core.inspect import describe

    p = Path(str(path))
    try:
        st = p.stat()
    except OSError:
        raise GSVError(f"{p} does not exist (refresh the model lists)") from None
    key = (str(p), st.st_mtime, st.st_size)
    if key not in _describe_cache:
        d = describe(p)
        text = f"{d['kind']}, {d['version']}"
        if d.get("official_pretrained"):
            text += f" (official {d['official_pretrained']})"
        _describe_cache[key] = text
    return _describe_cache[key]


# -- history ------------------------------------------------------------------------------------------------------

@dataclass
class HistoryEntry:
    id: str
    time: str
    file: str
    seed: int
    duration: float
    rtf: float
    gpt: str
    sovits: str
    version: str
    params: dict[str, Any]
    label: str = ""

    def row(self) -> list[Any]:
        p = self.params
        text = p.get("text", "")
        return [self.id, self.time, (text[:40] + "…") if len(text) > 40 else text, f"{self.gpt} + {self.sovits}",
                self.seed, round(self.duration, 2), round(self.rtf, 3),
                f"k={p.get('top_k')} p={p.get('top_p')} T={p.get('temperature')} rep={p.get('repetition_penalty')} "
                f"speed={p.get('speed')} {p.get('split_method')} {p.get('text_lang')}"]


HISTORY_COLUMNS = ["id", "time", "text", "models", "seed", "duration s", "RTF", "parameters"]


class HistoryStore:
    """The last generations with their parameters, kept in ``history.jsonl`` beside the audio files."""

    def __init__(self, folder: Path, size: int = HISTORY_SIZE):
        self.folder = Path(folder)
        self.size = size
        self.path = self.folder / "history.jsonl"
        self._lock = threading.Lock()
        self._entries: list[HistoryEntry] = []
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                self._entries.append(HistoryEntry(**json.loads(line)))
            except (ValueError, TypeError):
                continue  # a damaged line is skipped, the rest of the history stays usable
        self._entries = self._entries[-self.size:]

    def add(self, entry: HistoryEntry) -> HistoryEntry:
        with self._lock:
            self._entries.append(entry)
            self._entries = self._entries[-self.size:]
            write_text_atomic(self.path, "".join(json.dumps(dataclasses.asdict(e), ensure_ascii=False) + "\n"
                                                 for e in self._entries), fsync=False)
        return entry

    def entries(self) -> list[HistoryEntry]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._entries))

    def get(self, entry_id: str) -> HistoryEntry:
        for e in self.entries():
            if e.id == entry_id:
                if not Path(e.file).is_file():
                    raise GSVError(f"The audio of history entry {entry_id} is gone ({e.file}).")
                return e
        raise GSVError(f"There is no history entry {entry_id!r}; pick one from the list.")


# -- the services -------------------------------------------------------------------------------------------------

@dataclass
class Generated:
    """One synthesis as the UI shows it."""

    entry: HistoryEntry
    result: Any  # SynthesisResult

    def summary(self, lang: str = "en") -> str:
        """One status line (``lang`` "zh": in Chinese) and one line per warning."""
        r = self.result
        zh = lang == "zh"
        ref_free = r.request is not None and r.request.ref_free
        frozen = r.request is not None and getattr(r.request, "semantic_tokens", None) is not None
        if zh:
            mode = "无参考文本模式" if ref_free else "使用参考文本"
            text = (f"种子 {r.seed} · {r.duration:.2f} 秒 · RTF {r.rtf:.3f} · {len(r.fragments)} 个片段，"
                    f"{r.tokens} 个 token · {r.version}，{mode} · {r.gpt} + {r.sovits}")
            text += " · 冻结的 token（未运行 GPT）" if frozen else ""
        else:
            mode = "reference-free" if ref_free else "with reference text"
            text = (f"seed {r.seed} · {r.duration:.2f} s · RTF {r.rtf:.3f} · {len(r.fragments)} fragment(s), "
                    f"{r.tokens} tokens · {r.version}, {mode} · {r.gpt} + {r.sovits}")
            text += " · frozen tokens (no GPT run)" if frozen else ""
        return text + "".join(f"\n⚠ {w}" for w in self.warnings)

    @property
    def warnings(self) -> list[str]:
        return list(getattr(self.result, "warnings", []) or [])


@dataclass
class PreviewOutcome:
    """:meth:`Services.text_preview`'s answer: the preview (None for an empty text or a problem) or the problem."""

    preview: Any  # gsv_core.engine.preview.TextPreview
    problem: Optional[BaseException]

    @property
    def message(self) -> str:
        return "" if self.problem is None else str(self.problem)


@dataclass
class BatchOutcome:
    results_csv: Path
    zip_path: Path
    rows: list[dict[str, str]]
    cancelled: bool

    def summary(self, lang: str = "en") -> str:
        """What the batch did (``lang`` "zh": in Chinese; the rows' own errors stay as the engine wrote them)."""
        zh = lang == "zh"
        ok = sum(1 for r in self.rows if r.get("status") == "ok")
        text = (f"{len(self.rows)} 行中已合成 {ok} 行，输出到 {self.results_csv.parent}" if zh else
                f"{ok} of {len(self.rows)} line(s) synthesised into {self.results_csv.parent}")
        failed = [r for r in self.rows if r.get("status") != "ok"]
        if failed:
            text += ("；失败：" if zh else "; failed: ") + "; ".join(f"{r['id']}: {r.get('error', '')}"
                                                                  for r in failed[:5])
        warned = [r for r in self.rows if r.get("warning")]
        if warned:
            text += ("；⚠ 请检查：" if zh else "; ⚠ check: ") + "; ".join(f"{r['id']}: {r['warning']}"
                                                                      for r in warned[:5])
        if self.cancelled:
            text += "（已取消；再次运行即可继续）" if zh else " (cancelled; run it again to resume)"
        return text


class Services:
    """Created once by the app; every tab receives the same instance."""

    def __init__(self, settings: Any, engine: Any = None, asr: Any = None):
        self.settings = settings
        self._engine = engine
        self._engine_lock = threading.Lock()
        self.asr = asr
        self.tts_dir = Path(settings.output_dir) / "tts"
        self.history = HistoryStore(self.tts_dir)
        self._cancels: dict[str, threading.Event] = {}
        self._cancel_lock = threading.Lock()
        self._refaudio = None
        self._refaudio_lock = threading.Lock()

    # engine --------------------------------------------------------------------------------------------------

    @property
    def engine(self):
        """The TTS engine, created on first use so the app starts fast and starts even without models."""
        with self._engine_lock:
            if self._engine is None:
                from gsv_core.api import Engine

                self._engine = Engine.open(self.settings)
            return self._engine

    def precision_warning(self) -> Optional[str]:
        """The slow-precision warning of gsv_core.device for the configured device and precision (without opening
        the engine); None when the setting is fine or the device is not available (the engine names that)."""
        from gsv_core.device import reduced_precision_warning, resolve_device
        from gsv_core.errors import GSVError

        try:
            device = resolve_device(self.settings.device)
        except (GSVError, RuntimeError, ValueError):
            return None
        return reduced_precision_warning(str(self.settings.precision), bool(getattr(self.settings, "gpt_int8", False)),
                                         device)

    def refaudio_error(self) -> str:
        """'' when the RefAudio library opens, else why not (a damaged database file)."""
        try:
            self.refaudio
            return ""
        except GSVError as exc:
            return str(exc)

    def move_refaudio_db_aside(self) -> str:
        """Rename the damaged library database so the next start creates a new one; returns the new name."""
        from refaudio.db import move_aside

        with self._refaudio_lock:
            if self._refaudio is not None:
                self._refaudio.close()
                self._refaudio = None
            return str(move_aside(self.settings.refaudio_db))

    @property
    def refaudio(self):
        """The RefAudio workbench (refaudio.service.RefAudioService), created on first use with this app's engine
        (taken lazily, so the app still starts fast) and ASR service; one per app."""
        with self._refaudio_lock:
            if self._refaudio is None:
                from refaudio.service import RefAudioService

                self._refaudio = RefAudioService(self.settings, engine_factory=lambda: self.engine,
                                                 asr_service=self.asr)
            return self._refaudio

    # models --------------------------------------------------------------------------------------------------

    def gpt_choices(self) -> list[tuple[str, str]]:
        return [w.choice() for w in weights.list_weights(self.settings, "GPT")]

    def sovits_choices(self) -> list[tuple[str, str]]:
        return [w.choice() for w in weights.list_weights(self.settings, "SoVITS")]

    def no_models_message(self) -> str:
        """'' when GPT and SoVITS models are listed, else a pointer to the Models tab (the request's language)."""
        from gsv_core.messages import CATALOG

        from .i18n import say

        missing = [k for k in weights.KINDS if not weights.list_weights(self.settings, k)]
        if not missing:
            return ""
        key, params = ("models.none", {}) if len(missing) == 2 else ("models.none_kind", {"kind": missing[0]})
        return say(*CATALOG[key], **params)

    def model_roots(self) -> list[Path]:
        return weights.model_roots(self.settings)

    def check_model_path(self, path: Any, what: str) -> str:
        """The absolute path of a model chosen in a list (its label) or named by an allowed path."""
        return weights.check_model_path(self.settings, path, what, extra_roots=self._library_roots())

    def model_choice(self, path: Any, kind: str) -> Any:
        """The dropdown value (label) of a model file, or the path itself when it is not listed."""
        return weights.label_for(self.settings, path, kind) or path

    def models_info(self, gpt: Optional[str], sovits: Optional[str], lang: str = "en") -> str:
        """One line per chosen model: its file name, kind and version (``lang`` "zh": the Chinese wording)."""
        lines = []
        for what, value in (("GPT", gpt), ("SoVITS", sovits)):
            if not value:
                continue
            try:
                path = self.check_model_path(value, what)
                lines.append(f"{what}: {Path(path).name} — {weight_version(path)}")
            except GSVError as exc:
                unreadable = "无法读取" if lang == "zh" else "cannot be read"
                lines.append(f"{what}: {Path(str(value)).name} — {unreadable}: {exc}")
        return "\n".join(lines)

    # text preview --------------------------------------------------------------------------------------------

    def symbol_version(self, sovits: Any) -> str:
        """The text symbol set a SoVITS choice reads ("v1" or its version, e.g. "v2ProPlus"); "v2" when none is
        chosen or it cannot be read (cached by the file's size and time)."""
        if not sovits:
            return "v2"
        try:
            path = Path(self.check_model_path(sovits, "SoVITS"))
            st = path.stat()
            key = ("version", str(path), st.st_mtime, st.st_size)
            if key not in _describe_cache:
                _describe_cache[key] = weights.sovits_options(self.settings, path)["version"]
            return _describe_cache[key]
        except (GSVError, OSError, KeyError, ValueError):
            return "v2"

    def text_preview(self, text: Any, lang: Any = "zh", split_method: Any = "cut1", sovits: Any = None,
                     pause: Any = None) -> "PreviewOutcome":
        """How the TTS tab's text will be cut and read (pieces after ``split_method``, language per segment,
        phones, Mandarin pinyin, pauses) by the engine's own front end for the chosen SoVITS model's symbol set.
        Never raises: unreadable text (a bad tag, a script the language mode cannot read) comes back as
        ``problem`` with a readable message."""
        text = "" if text is None else str(text)
        if not text.strip():
            return PreviewOutcome(None, None)
        version = self.symbol_version(sovits)
        try:
            preview = self.engine.preview_text(text, lang or "zh", split_method or "cut1", version,
                                               None if pause in (None, "") else float(pause))
            return PreviewOutcome(preview, None)
        except GSVError as exc:
            return PreviewOutcome(None, exc)
        except Exception as exc:  # noqa: BLE001 - a live preview never breaks the page; the log has the details
            import logging

            logging.getLogger("gsv.pages").exception("text preview failed")
            return PreviewOutcome(None, GSVError(f"The text front end failed on this text ({type(exc).__name__}: "
                                                 f"{exc})."))

    # requests ------------------------------------------------------------------------------------------------

    def make_request(self, values: Optional[dict] = None, *, random_seed: bool = False, for_batch: bool = False,
                     **fields: Any):
        """A validated SynthesisRequest from UI/API values (a mapping and/or keyword fields named like
        :data:`gsv_core.engine.request.PARAMETERS`; numbers may arrive as floats or strings, bad ones are named).

        The models must be listed ones (the model-folder rule). ``random_seed`` (or seed -1) draws the seed here,
        so A and B (and the history) share it. ``for_batch``: the base request of a CSV batch, whose rows bring the
        text and may bring the reference."""
        from gsv_core.api import Engine

        values = {**dict(values or {}), **fields}
        if not values.get("gpt_path") or not values.get("sovits_path"):
            message = self.no_models_message()
            raise GSVError(message) if message else keyed(GSVError, "models.pick_both")
        # a missing text or reference is reported by the request's validation, both at once and in the user's
        # language ("Cannot synthesise: the text is empty; no reference audio was given.")
        if random_seed:
            values["seed"] = -1
        if "text" in values and values["text"] is None:
            values["text"] = ""
        req = self.vet_request(Engine.request(values))
        if req.seed < 0:
            req = req.replace(seed=secrets.randbelow(2**31))
        if for_batch:
            return req  # each row is validated by the engine; a bad row is recorded, the batch goes on
        return req.validate()

    def vet_request(self, req):
        """The request if every server file it names is allowed: models in the model folders, reference and
        auxiliary audio in the folders the app may read (uploads included) — gsv_core.weights / gsv_core.paths.
        Used for the form, the API and every row of a batch CSV (whose ``ref`` column names server files)."""
        req = req.replace(gpt_path=self.check_model_path(req.gpt_path, "GPT"),
                          sovits_path=self.check_model_path(req.sovits_path, "SoVITS"))
        refs = [("reference audio", req.ref_audio), *(("auxiliary reference", a) for a in req.aux_refs),
                ("speaker reference", req.sv_ref)]
        for what, audio in refs:
            if isinstance(audio, (str, Path)) and str(audio).strip():
                paths.check_readable(self.settings, audio, what, extra_roots=self._library_roots())
        return req

    def _library_roots(self) -> list[Path]:
        # product references and models live in the library; a product zip loaded by the TTS tab is unpacked in
        # the RefAudio upload staging folder (refaudio.uploads)
        return [Path(self.settings.refaudio_db).parent / "library", Path(self.settings.output_dir) / "refaudio" / "uploads"]

    @staticmethod
    def request_params(req) -> dict[str, Any]:
        """What a history entry keeps of a request (everything :meth:`make_request` can take back)."""
        return req.to_mapping()

    # synthesis -----------------------------------------------------------------------------------------------

    def _record(self, result, label: str = "") -> Generated:
        now = _dt.datetime.now()
        stem = re.sub(r"[^\w.-]+", "_", Path(result.sovits).name.split(".")[0])[:40]
        # the request's id (the TTS tab's "take name", a batch row's id) names the entry and its file
        name = re.sub(r"[^\w.-]+", "_", str(getattr(result.request, "id", "") or "")).strip("._")[:40]
        label = "-".join(x for x in (name, label) if x)
        eid = now.strftime("%Y%m%d-%H%M%S-%f")[:-3] + (f"-{label}" if label else "")
        path = self.tts_dir / f"{eid}_{stem}_seed{result.seed}.wav"
        result.save(path)
        entry = HistoryEntry(id=eid, time=now.strftime("%H:%M:%S"), file=str(path), seed=int(result.seed),
                             duration=float(result.duration), rtf=float(result.rtf), gpt=Path(result.gpt).name,
                             sovits=Path(result.sovits).name, version=result.version,
                             params=self.request_params(result.request) if result.request is not None else {},
                             label=label)
        return Generated(self.history.add(entry), result)

    def synthesize(self, req, progress: Optional[Callable[[float, str], None]] = None,
                   cancel: Optional[threading.Event] = None) -> Generated:
        result = self.engine.synthesize(req, progress=progress, cancel=cancel)
        result.request = result.request or req
        return self._record(result)

    def synthesize_ab(self, req_a, gpt_b: Optional[str], sovits_b: Optional[str],
                      progress: Optional[Callable[[float, str], None]] = None) -> tuple[Generated, Generated]:
        """The same text, reference and seed through two model pairs (A = the request's, B = the given pair)."""
        if not gpt_b or not sovits_b:
            raise GSVError("Choose the B model pair (GPT and SoVITS) for the A/B comparison.")
        gpt_b, sovits_b = self.check_model_path(gpt_b, "GPT"), self.check_model_path(sovits_b, "SoVITS")
        req_b = req_a.replace(gpt_path=gpt_b, sovits_path=sovits_b)
        a, b = self.engine.synthesize_many([req_a, req_b], progress=progress)
        for res, req in ((a, req_a), (b, req_b)):
            res.request = res.request or req
        return self._record(a, "A"), self._record(b, "B")

    def stream(self, req, cancel: Optional[threading.Event] = None, mode: str = "tokens",
               chunk_tokens: Optional[int] = None) -> Iterator[tuple[Any, Optional[Generated]]]:
        """Yield ((sample_rate, int16 samples), None) per piece as soon as it is ready (``mode`` and
        ``chunk_tokens`` as in gsv_core.api.Engine.stream), then (None, Generated) for the whole take, saved in the
        history like any other generation."""
        import time

        import numpy as np

        from gsv_core.audio import to_int16
        from gsv_core.engine import SynthesisResult

        started = time.perf_counter()
        pieces, fragments, sr = [], [], 32000
        for chunk in self.engine.stream(req, cancel=cancel, mode=mode, chunk_tokens=chunk_tokens):
            sr = chunk.sample_rate
            pieces.append(chunk.audio)
            if chunk.fragment is not None:
                fragments.append(chunk.fragment)
            yield (chunk.sample_rate, to_int16(chunk.audio)), None
        wall = time.perf_counter() - started
        audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
        info = self.engine.model_info(req.sovits_path, "SoVITS")
        result = SynthesisResult(sr, audio, req.seed, fragments, {}, wall, str(req.gpt_path), str(req.sovits_path),
                                 getattr(info, "version", "?"), req)
        yield None, self._record(result, "stream")

    # batch ---------------------------------------------------------------------------------------------------

    def cancel_event(self, key: str) -> threading.Event:
        with self._cancel_lock:
            event = threading.Event()
            self._cancels[key] = event
            return event

    def cancel(self, key: str) -> bool:
        """Ask the batch job started under ``key`` to stop after its current line; False when none is running."""
        with self._cancel_lock:
            event = self._cancels.get(key)
        if event is None:
            return False
        event.set()
        return True

    def run_batch(self, base_req, csv_path: Any, key: str = "cli",
                  progress: Optional[Callable[[float, str], None]] = None, out_dir: Optional[Path] = None) -> BatchOutcome:
        """A CSV (id, text[, ref, ref_text, ...]) -> wavs + results.csv (+ a zip of both) with gsv_core.tts.run_batch."""
        from gsv_core.batch import read_batch_csv, run_batch

        if not csv_path:
            raise GSVError("No CSV file: upload a CSV with the columns id and text (optionally ref, ref_text).")
        csv_path = Path(str(csv_path))
        shown = csv_path.name  # an upload sits in a temporary folder; its own name is what the user knows
        read_batch_csv(csv_path, shown)  # a malformed file fails here, before anything is written
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out_dir = Path(out_dir) if out_dir else Path(self.settings.output_dir) / "batch" / f"{csv_path.stem}_{stamp}"
        cancel = self.cancel_event(key)
        try:
            results = run_batch(self.engine, base_req, csv_path, out_dir, progress=progress, cancel=cancel,
                                shown=shown, check_row=self.vet_request)
        finally:
            with self._cancel_lock:
                if self._cancels.get(key) is cancel:
                    del self._cancels[key]
        with open(results, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        zip_path = out_dir / f"{out_dir.name}.zip"
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
            z.write(results, results.name)
            for r in rows:
                if r.get("status") == "ok" and (out_dir / r["file"]).is_file():
                    z.write(out_dir / r["file"], r["file"])
        return BatchOutcome(results, zip_path, rows, cancel.is_set())

    # reference transcription ---------------------------------------------------------------------------------

    def transcribe_reference(self, audio: Any, lang: str = "zh") -> str:
        """The reference's text, by the ASR tab's service (when the ASR tab is installed)."""
        if self.asr is None:
            raise GSVError("Transcription needs the ASR tab's faster-whisper service, which is not available here; "
                           "type the reference text, or leave it empty for reference-free mode (v2 and later).")
        if audio in (None, ""):
            raise GSVError("No reference audio to transcribe: upload or record it first.")
        from gsv_core.asr import ASROptions

        models = self.asr.list_models()
        if not models:
            raise GSVError(f"No faster-whisper model in {self.settings.whisper_dir}: put a CTranslate2 Whisper folder "
                           "there (see the ASR tab), or type the reference text.")
        language = languages.whisper_language(lang)
        rows = self.asr.transcribe([str(audio)], ASROptions(model_dir=models[0], language=language, t2s=True))
        if not rows or not rows[0].ok:
            raise GSVError(rows[0].error if rows else "The reference audio could not be transcribed.")
        return rows[0].text.strip()
