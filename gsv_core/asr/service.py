"""Speech recognition with faster-whisper: files or folders in, GPT-SoVITS ``.list`` / CSV / SRT out.

The service behind the ASR tab and its CLI (no gradio here)::

    python -m gsv_core.asr wavs/ --model pretrained_models/faster-whisper/large-v3 --lang zh --format list --out output/asr
    python -m gsv_core.asr a.wav b.mp3 --model DIR --lang auto --format csv,srt --out out/ --t2s --punct fullwidth
    python -m gsv_core.asr --list-models                      # CTranslate2 Whisper folders under config's whisper_dir

Models are local CTranslate2 Whisper folders only (``model.bin`` + ``config.json`` + ``tokenizer.json``): a size
name such as ``large-v3`` is never turned into a download. A model is loaded once and cached per (folder, device,
compute type). Audio is decoded by :func:`gsv_core.audio.load_audio` (wav/flac/ogg via soundfile, everything else
via PyAV) at 16 kHz, so an unreadable file becomes an error row with a readable message and the job goes on.

Rows (:class:`ASRRow`) carry path, speaker (the audio's folder name unless given), language, text and the timed
segments; the writers turn them into a ``.list`` (``path|speaker|LANG|text``), a CSV or SRT files, and
:func:`read_list` reads a ``.list`` back for proofreading, naming every malformed line.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from gsv_core.errors import GSVError
from gsv_core.fileio import atomic_path, write_bytes_atomic
from gsv_core.formats import listfile

#: extensions picked up when a folder is given (case-insensitive)
AUDIO_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma",
                              ".webm", ".aif", ".aiff", ".mka", ".mp4"})
#: Whisper's languages (faster-whisper's list) plus "auto" (detect per file)
LANGUAGES: tuple[str, ...] = ("auto", "zh", "en", "ja", "ko", "yue", "de", "fr", "es", "ru", "it", "pt", "nl", "ar",
                              "tr", "pl", "sv", "id", "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da",
                              "hu", "ta", "no", "th", "ur", "hr", "bg", "lt", "la", "fa", "bn", "sr", "sl", "sk",
                              "et", "lv", "tl", "ca", "gl", "eu", "cy", "mn", "kk", "ka", "hy", "ne", "mr", "pa",
                              "gu", "te", "kn", "ml", "si", "km", "lo", "my", "bo", "jw", "su", "sw", "af", "sq",
                              "az", "be", "bs", "is", "mk", "mt", "uz", "tg", "tk", "ps", "sd", "so", "sn", "yo",
                              "am", "ha", "ln", "mg", "mi", "oc", "br", "fo", "ht", "lb", "nn", "sa", "tt", "as",
                              "ba", "haw", "yi")
#: "auto" = int8 on the CPU, float16 on CUDA
COMPUTE_TYPES: tuple[str, ...] = ("auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "float16",
                                  "bfloat16", "float32")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
#: punctuation handling for Chinese text: keep as recognised, strip all of it, or normalise to full-width
PUNCTUATION_MODES: tuple[str, ...] = ("keep", "strip", "fullwidth")
_CHINESE = ("zh", "yue")

ProgressFn = Callable[[float, str], Any]


class ASRError(GSVError):
    """A user-caused ASR failure: missing model folder, no audio found, malformed .list, bad option."""


class ListFormatError(ASRError):
    """A malformed ``.list`` file; the message names every bad line (up to a limit)."""


# ----------------------------------------------------------------------------------------------------------------
# rows

@dataclass
class Segment:
    start: float
    end: float
    text: str


@dataclass
class ASRRow:
    """One audio file's transcript. ``error`` is set (and text empty) when the file could not be transcribed."""
    path: str
    speaker: str
    lang: str
    text: str
    segments: list[Segment] = field(default_factory=list)
    duration: float = 0.0
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ASRRow":
        segs = [s if isinstance(s, Segment) else Segment(float(s["start"]), float(s["end"]), str(s["text"]))
                for s in d.get("segments") or []]
        return cls(path=str(d["path"]), speaker=str(d.get("speaker") or ""), lang=str(d.get("lang") or ""),
                   text=str(d.get("text") or ""), segments=segs, duration=float(d.get("duration") or 0.0),
                   error=d.get("error") or None)


@dataclass
class ASROptions:
    """What to run and how. ``model_dir`` is a CTranslate2 Whisper folder."""
    model_dir: str | os.PathLike
    language: str = "zh"  # a Whisper language code, or "auto"
    vad_filter: bool = True
    beam_size: int = 5
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    compute_type: str = "auto"  # auto = int8 on CPU, float16 on CUDA
    t2s: bool = False  # Traditional -> Simplified for Chinese rows
    punctuation: str = "keep"  # keep | strip | fullwidth (Chinese rows only)
    speaker: Optional[str] = None  # None/"" = the audio file's folder name
    max_new_tokens: Optional[int] = None  # cap per 30 s window (None = Whisper's own limit)
    temperature: Optional[float] = None  # None = faster-whisper's fallback schedule

    def validate(self) -> None:
        if self.language not in LANGUAGES:
            raise ASRError(f"unknown language {self.language!r}; use 'auto' or one of Whisper's codes "
                           f"({', '.join(LANGUAGES[1:12])}, ...)")
        if self.compute_type not in COMPUTE_TYPES:
            raise ASRError(f"unknown compute type {self.compute_type!r} (choose from {', '.join(COMPUTE_TYPES)})")
        if self.punctuation not in PUNCTUATION_MODES:
            raise ASRError(f"unknown punctuation mode {self.punctuation!r} "
                           f"(choose from {', '.join(PUNCTUATION_MODES)})")
        if not (self.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", str(self.device))):
            raise ASRError(f"device must be auto, cpu, cuda or cuda:N, not {self.device!r}")
        try:
            beam = int(self.beam_size)
        except (TypeError, ValueError):
            raise ASRError(f"beam size must be a whole number, not {self.beam_size!r}") from None
        if not 1 <= beam <= 20:
            raise ASRError(f"beam size must be between 1 and 20, not {beam}")


# ----------------------------------------------------------------------------------------------------------------
# models and inputs

def is_model_dir(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "config.json").is_file()


def list_models(root: str | os.PathLike | None, max_depth: int = 3) -> list[str]:
    """CTranslate2 Whisper folders at or under ``root`` (sorted); empty when ``root`` does not exist."""
    if not root:
        return []
    root = Path(root).expanduser()
    if not root.is_dir():
        return []
    found: list[str] = []
    base_depth = len(root.parts)
    for dirpath, dirnames, _files in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if is_model_dir(here):
            found.append(str(here))
            dirnames[:] = []  # a model folder's subfolders are not models
        elif len(here.parts) - base_depth >= max_depth:
            dirnames[:] = []
    return sorted(found)


def model_names(root: str | os.PathLike | None) -> list[str]:
    """The model folders of :func:`list_models` named relative to ``root`` (what the pages list, so the page and
    Gradio's /config never carry the server's absolute paths); :func:`resolve_model` turns a name back."""
    if not root:
        return []
    base = Path(root).expanduser()
    return [Path(p).relative_to(base).as_posix() or "." for p in list_models(base)]


def resolve_model(root: str | os.PathLike | None, value: Any) -> str:
    """The folder of a name from :func:`model_names`; any other value (a typed path) is returned as given, for the
    caller's path policy to check."""
    text = "" if value is None else str(value).strip()
    if root and text and text in model_names(root):
        return str(Path(root).expanduser() / text)
    return text


def check_model_dir(model_dir: str | os.PathLike | None) -> Path:
    """The model folder as an absolute path, or an ASRError saying what is missing."""
    if model_dir is None or not str(model_dir).strip():
        raise ASRError("no ASR model chosen: pick a faster-whisper (CTranslate2) model folder")
    path = Path(str(model_dir).strip()).expanduser()
    if not path.exists():
        raise ASRError(f"ASR model folder not found: {path} (put a CTranslate2 Whisper model there, e.g. a "
                       "faster-whisper-large-v3 folder, or set WHISPER_DIR in my_config.py)")
    if not path.is_dir():
        raise ASRError(f"ASR model must be a folder holding model.bin, config.json and tokenizer.json, not the "
                       f"file {path}")
    missing = [n for n in ("model.bin", "config.json", "tokenizer.json") if not (path / n).is_file()]
    if missing:
        raise ASRError(f"{path} is not a CTranslate2 Whisper model folder: missing {', '.join(missing)}")
    return path.resolve()


def ctranslate2_device(device: str) -> tuple[str, int]:
    """('cpu' | 'cuda', index) as faster-whisper takes them; 'auto' picks CUDA when CTranslate2 sees a GPU (it may
    see one where the torch build does not, so this is not gsv_core.device's decision)."""
    import ctranslate2

    device = (device or "auto").strip()
    if device == "auto":
        return ("cuda", 0) if ctranslate2.get_cuda_device_count() > 0 else ("cpu", 0)
    if device.startswith("cuda"):
        if ctranslate2.get_cuda_device_count() == 0:
            raise ASRError(f"device {device!r} asked for, but no CUDA GPU is visible to CTranslate2; use cpu")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        return "cuda", index
    return "cpu", 0


def default_compute_type(device: str) -> str:
    return "float16" if device == "cuda" else "int8"


def collect_audio(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Audio files from files and folders (folders recursively, sorted); missing paths and empty folders raise."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files: list[Path] = []
    seen: set[Path] = set()
    given = [str(i).strip() for i in inputs if i is not None and str(i).strip()]
    if not given:
        raise ASRError("no audio given: choose a file or a folder")
    for raw in given:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted((f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS),
                           key=lambda f: str(f.relative_to(p)).lower())
            if not found:
                raise ASRError(f"no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) in folder {p}")
        elif p.is_file():
            found = [p]
        else:
            raise ASRError(f"audio file or folder not found: {p}")
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files


def default_output_name(inputs: Sequence[str | os.PathLike] | str | os.PathLike) -> str:
    """A base name for result files: the folder's or file's name (``asr`` for several inputs)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    items = [Path(str(i).strip()) for i in inputs if i is not None and str(i).strip()]
    if len(items) != 1:
        return "asr"
    p = items[0]
    name = p.name if p.is_dir() else p.stem
    return _safe_name(name) or "asr"


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w\-.]+", "_", name, flags=re.UNICODE).strip("._")


def keep_uploads(files: Sequence[str | os.PathLike], root: str | os.PathLike, speaker: str = "") -> list[Path]:
    """Copy uploaded files (Gradio's temporary copies, deleted later and named by a hash folder) into
    ``root/<name>/`` so the ``.list`` written from them points at files that stay, and the speaker taken from
    the folder name means something: ``name`` is the given speaker, else the common prefix of the uploads' names
    (``alice_01.wav``, ``alice_02.wav`` -> ``alice``), else ``upload``. Two uploads with the same name get
    distinct names (``0001.wav``, ``0001-2.wav``); a file already kept with the same content is reused."""
    import hashlib
    import shutil

    paths = [Path(str(f)) for f in files if f not in (None, "")]
    if not paths:
        return []
    stems = [p.stem for p in paths]
    prefix = os.path.commonprefix(stems) if len(stems) > 1 else re.sub(r"[\W_]*\d+$", "", stems[0])
    name = _safe_name(speaker) or _safe_name(re.sub(r"[\W_\d]+$", "", prefix)) or "upload"
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    kept: list[Path] = []
    for src in paths:
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        base = _safe_name(src.stem) or "audio"
        target = folder / f"{base}{src.suffix.lower()}"
        n = 1
        while target.exists() or target in kept:
            if target.exists() and target not in kept and \
                    hashlib.sha256(target.read_bytes()).hexdigest() == digest:
                break  # the same upload again: reuse it
            n += 1
            target = folder / f"{base}-{n}{src.suffix.lower()}"
        if not target.exists():
            with atomic_path(target, fsync=False) as tmp:
                shutil.copyfile(src, tmp)
        kept.append(target)
    return kept


# ----------------------------------------------------------------------------------------------------------------
# text post-processing for Chinese

_FULLWIDTH = {",": "，", "?": "？", "!": "！", ":": "：", ";": "；", "(": "（", ")": "）", "、": "、",
              "．": "。", "｡": "。", "､": "、"}
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef"
_t2s_converter = None
_t2s_lock = threading.Lock()


def to_simplified(text: str) -> str:
    """Traditional -> Simplified Chinese with OpenCC (t2s)."""
    global _t2s_converter
    with _t2s_lock:
        if _t2s_converter is None:
            try:
                import opencc
            except ImportError as exc:  # pragma: no cover - opencc is a requirement
                raise ASRError("Traditional->Simplified conversion needs the opencc package") from exc
            _t2s_converter = opencc.OpenCC("t2s")
        return _t2s_converter.convert(text)


def _between_digits(text: str, i: int) -> bool:
    return (text[i] in ".," and 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit())


def strip_punctuation(text: str) -> str:
    """Remove every Unicode punctuation character (a decimal point or digit-group comma between digits stays);
    spaces left between CJK characters go too."""
    out = "".join(" " if unicodedata.category(ch).startswith("P") and not _between_digits(text, i) else ch
                  for i, ch in enumerate(text))
    out = re.sub(rf"(?<=[{_CJK}])\s+|\s+(?=[{_CJK}])", "", out)
    return re.sub(r"\s+", " ", out).strip()


def fullwidth_punctuation(text: str) -> str:
    """Half-width punctuation -> Chinese full-width (，。？！：；（）); decimals such as 3.5 and versions such
    as v1.2 keep their dot; spaces around CJK characters and punctuation are removed."""
    text = unicodedata.normalize("NFKC", text)  # folds odd forms first (full-width letters/digits -> ASCII)
    text = re.sub(r"\.{3,}|。{3,}", "…", text)
    out = []
    for i, ch in enumerate(text):
        prev, nxt = text[i - 1] if i else "", text[i + 1] if i + 1 < len(text) else ""
        if ch == "." and prev.isascii() and prev.isalnum() and nxt.isascii() and nxt.isalnum():
            out.append(ch)  # 3.5, v1.2
        elif ch == ".":
            out.append("。")
        else:
            out.append(_FULLWIDTH.get(ch, ch))
    text = "".join(out)
    text = re.sub(r"…+", "……", text)
    text = re.sub(rf"\s*([{_CJK}，。？！：；（）…])\s*", r"\1", text)
    return text.strip()


def postprocess_text(text: str, lang: str, t2s: bool = False, punctuation: str = "keep") -> str:
    """Apply the Chinese options to a Chinese row's text; other languages are returned stripped."""
    text = text.strip()
    if lang not in _CHINESE:
        return text
    if t2s:
        text = to_simplified(text)
    if punctuation == "strip":
        text = strip_punctuation(text)
    elif punctuation == "fullwidth":
        text = fullwidth_punctuation(text)
    elif punctuation != "keep":
        raise ASRError(f"unknown punctuation mode {punctuation!r}")
    return text


def _join_segments(texts: Iterable[str], lang: str) -> str:
    parts = [t.strip() for t in texts if t and t.strip()]
    if lang in _CHINESE or lang in ("ja",):
        return "".join(parts)
    return " ".join(parts)


# ----------------------------------------------------------------------------------------------------------------
# the service

class ASRService:
    """Loads faster-whisper models on demand (once per folder/device/compute type) and transcribes files."""

    def __init__(self, whisper_dir: str | os.PathLike | None = None, cpu_threads: int = 0,
                 max_audio_seconds: Optional[float] = None):
        self.whisper_dir = Path(whisper_dir) if whisper_dir else None
        self.cpu_threads = int(cpu_threads or 0)
        self.max_audio_seconds = max_audio_seconds  # a longer file is refused from its header (MAX_AUDIO_MINUTES)
        self._models: dict[tuple[str, str, int, str], Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> "ASRService":
        minutes = getattr(settings, "max_audio_minutes", None)
        return cls(settings.whisper_dir, getattr(settings, "cpu_threads", 0),
                   max_audio_seconds=None if minutes is None else float(minutes) * 60)

    # models --------------------------------------------------------------------------------------------------
    def list_models(self) -> list[str]:
        return list_models(self.whisper_dir)

    def model_names(self) -> list[str]:
        return model_names(self.whisper_dir)

    def resolve_model(self, value: Any) -> str:
        return resolve_model(self.whisper_dir, value)

    def default_model(self) -> str:
        """The first model folder under ``whisper_dir``, or an ASRError saying where to put one."""
        models = self.list_models()
        if not models:
            raise ASRError(f"no faster-whisper model found under {self.whisper_dir}: put a CTranslate2 Whisper "
                           "model folder there (model.bin, config.json, tokenizer.json) or set WHISPER_DIR")
        return models[0]

    def transcribe_reference(self, audio: str | os.PathLike, language: str = "auto",
                             model_dir: str | os.PathLike | None = None) -> tuple[str, str]:
        """(text, language) of one short clip, e.g. a TTS reference given without its text. Chinese text is
        converted to Simplified with full-width punctuation; a failure raises the row's error as ASRError."""
        opts = ASROptions(model_dir=model_dir or self.default_model(), language=language, vad_filter=True,
                          beam_size=5, t2s=True, punctuation="fullwidth")
        rows = self.transcribe([audio], opts)
        if not rows[0].ok:
            raise ASRError(rows[0].error)
        if not rows[0].text:
            raise ASRError(f"no speech recognised in {audio}")
        return rows[0].text, rows[0].lang

    def load(self, model_dir: str | os.PathLike, device: str = "auto", compute_type: str = "auto"):
        """The cached WhisperModel for this folder, device and compute type (loaded on first use)."""
        path = check_model_dir(model_dir)
        dev, index = ctranslate2_device(device)
        ctype = default_compute_type(dev) if compute_type in (None, "", "auto") else compute_type
        if ctype not in COMPUTE_TYPES:
            raise ASRError(f"unknown compute type {ctype!r} (choose from {', '.join(COMPUTE_TYPES)})")
        key = (str(path), dev, index, ctype)
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                return model
            import ctranslate2
            from faster_whisper import WhisperModel

            supported = ctranslate2.get_supported_compute_types(dev, index)
            if ctype not in supported:
                raise ASRError(f"compute type {ctype} is not supported on {dev} here (supported: "
                               f"{', '.join(sorted(supported))})")
            try:
                model = WhisperModel(str(path), device=dev, device_index=index, compute_type=ctype,
                                     cpu_threads=self.cpu_threads, local_files_only=True)
            except (RuntimeError, ValueError, OSError) as exc:
                raise ASRError(f"cannot load the ASR model {path}: {exc}") from exc
            self._models[key] = model
            return model

    def loaded(self) -> list[tuple[str, str, int, str]]:
        with self._lock:
            return list(self._models)

    # transcription -------------------------------------------------------------------------------------------
    def transcribe(self, inputs: str | os.PathLike | Sequence[str | os.PathLike], options: ASROptions,
                   progress: Optional[ProgressFn] = None,
                   cancel: Optional[threading.Event] = None) -> list[ASRRow]:
        """Transcribe every audio file found in ``inputs``. A file that fails becomes a row with ``error`` set.

        ``progress(fraction, message)`` is called before each file and at the end; when ``cancel`` is set the job
        stops at the next segment and returns the rows finished so far (the interrupted file is left out)."""
        options.validate()
        files = collect_audio(inputs)
        model = self.load(options.model_dir, options.device, options.compute_type)
        if options.language not in ("auto", "en") and not model.model.is_multilingual:
            raise ASRError(f"the model {Path(str(options.model_dir)).name} is English-only; choose language "
                           f"'en' or 'auto', or a multilingual model for {options.language!r}")
        rows: list[ASRRow] = []
        total = len(files)
        for n, path in enumerate(files):
            if cancel is not None and cancel.is_set():
                break
            if progress is not None:
                progress(n / total, f"{n + 1}/{total}: {path.name}")
            row = self._transcribe_one(model, path, options, cancel)
            if row is None:  # cancelled mid-file
                break
            rows.append(row)
        if progress is not None:
            progress(len(rows) / total, f"done: {len(rows)}/{total} files")
        return rows

    def _transcribe_one(self, model, path: Path, options: ASROptions,
                        cancel: Optional[threading.Event]) -> Optional[ASRRow]:
        from gsv_core.audio import load_audio

        speaker = (options.speaker or "").strip() or path.resolve().parent.name
        lang = options.language if options.language != "auto" else ""
        row = ASRRow(path=str(path.resolve()), speaker=speaker, lang=lang, text="")
        try:
            wav, sr = load_audio(path, sr=16000, max_seconds=self.max_audio_seconds)
        except GSVError as exc:
            row.error = str(exc)
            return row
        row.duration = round(len(wav) / sr, 3)
        kwargs: dict[str, Any] = dict(language=None if options.language == "auto" else options.language,
                                      task="transcribe", beam_size=int(options.beam_size),
                                      vad_filter=bool(options.vad_filter))
        if options.max_new_tokens:
            kwargs["max_new_tokens"] = int(options.max_new_tokens)
        if options.temperature is not None:
            kwargs["temperature"] = float(options.temperature)
        try:
            segments, info = model.transcribe(wav, **kwargs)
            row.lang = (info.language or lang or "").lower()
            raw: list[Segment] = []
            for seg in segments:  # a generator: decoding happens here, window by window
                if cancel is not None and cancel.is_set():
                    return None
                start = min(max(0.0, float(seg.start)), row.duration)
                end = min(max(start, float(seg.end)), row.duration)
                raw.append(Segment(round(start, 3), round(end, 3), seg.text))
        except (RuntimeError, ValueError) as exc:
            row.error = f"{path}: recognition failed: {exc}"
            return row
        row.segments = [Segment(s.start, s.end, postprocess_text(s.text, row.lang, options.t2s, options.punctuation))
                        for s in raw]
        row.text = postprocess_text(_join_segments((s.text for s in raw), row.lang), row.lang, options.t2s,
                                    options.punctuation)
        return row


# ----------------------------------------------------------------------------------------------------------------
# proofreading: table <-> rows

TABLE_HEADERS = ["path", "speaker", "lang", "text", "start", "end", "status"]


def rows_to_table(rows: Sequence[ASRRow]) -> list[list[Any]]:
    table = []
    for r in rows:
        start = r.segments[0].start if r.segments else 0.0
        end = r.segments[-1].end if r.segments else r.duration
        table.append([r.path, r.speaker, r.lang, r.text, round(start, 2), round(end, 2),
                      "ok" if r.ok else f"error: {r.error}"])
    return table


def rows_from_table(table: Sequence[Sequence[Any]], original: Sequence[ASRRow]) -> list[ASRRow]:
    """Rows with the user's edits (speaker, lang, text) applied. Segments are kept when the text is unchanged;
    an edited text becomes one segment over the original time span (so SRT shows what the user wrote)."""
    by_path = {r.path: r for r in original}
    out: list[ASRRow] = []
    for i, cells in enumerate(table):
        cells = list(cells) + [""] * (4 - len(cells))
        path, speaker, lang, text = (("" if c is None else str(c)) for c in cells[:4])
        if not path.strip():
            continue
        base = by_path.get(path) or (original[i] if i < len(original) and original[i].path == path else None)
        row = ASRRow(path=path.strip(), speaker=speaker.strip(), lang=lang.strip().lower(), text=text.strip())
        if base is not None:
            row.duration, row.error = base.duration, base.error
            if row.text == base.text:
                row.segments = list(base.segments)
            elif row.text:
                start = base.segments[0].start if base.segments else 0.0
                end = base.segments[-1].end if base.segments else base.duration
                row.segments = [Segment(start, end, row.text)]
                row.error = None  # the user typed the transcript of a file that failed: it is usable now
        out.append(row)
    return out


# ----------------------------------------------------------------------------------------------------------------
# writers and the .list reader

def _atomic_write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    return write_bytes_atomic(path, text.encode(encoding))


def _one_line(text: str) -> str:
    return re.sub(r"\s*[\r\n]+\s*", " ", text).strip()


def list_lines(rows: Sequence[ASRRow], default_lang: str = "zh") -> tuple[list[str], list[ASRRow]]:
    """The ``.list`` lines of the usable rows (gsv_core.formats.listfile's rules), and the rows left out (failed
    or empty text)."""
    lines, skipped = [], []
    for r in rows:
        if not r.ok or not _one_line(r.text):
            skipped.append(r)
            continue
        lines.append(listfile.format_line(r.path, r.speaker, (r.lang or default_lang or "zh").lower(), r.text))
    return lines, skipped


def write_list(rows: Sequence[ASRRow], path: str | os.PathLike, default_lang: str = "zh") -> tuple[Path, int]:
    """Write a GPT-SoVITS ``.list`` (UTF-8, ``path|speaker|LANG|text``); failed and empty rows are left out.
    Returns the path and the number of lines written."""
    lines, _ = list_lines(rows, default_lang)
    if not lines:
        raise ASRError("nothing to write: no row has a transcript")
    return _atomic_write(Path(path), "\n".join(lines) + "\n"), len(lines)


def write_csv(rows: Sequence[ASRRow], path: str | os.PathLike) -> Path:
    """Write all rows (failed ones with their error) as UTF-8 CSV with a BOM (opens in Excel)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "speaker", "lang", "text", "duration", "start", "end", "error"])
    for r in rows:
        start = r.segments[0].start if r.segments else ""
        end = r.segments[-1].end if r.segments else ""
        w.writerow([r.path, r.speaker, r.lang, r.text, r.duration, start, end, r.error or ""])
    if not rows:
        raise ASRError("nothing to write: no rows")
    return _atomic_write(Path(path), buf.getvalue(), encoding="utf-8-sig")


def srt_time(seconds: float) -> str:
    ms = max(0, int(round(float(seconds) * 1000)))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def srt_text(row: ASRRow) -> str:
    cues = [s for s in row.segments if s.text.strip()]
    blocks = []
    for i, s in enumerate(cues, 1):
        end = max(s.end, s.start + 0.001)
        blocks.append(f"{i}\n{srt_time(s.start)} --> {srt_time(end)}\n{s.text.strip()}\n")
    return "\n".join(blocks)


def write_srt(rows: Sequence[ASRRow], out_dir: str | os.PathLike) -> list[Path]:
    """One ``.srt`` per transcribed file in ``out_dir`` (named after the audio; clashing names get a number)."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    used: set[str] = set()
    for r in rows:
        body = srt_text(r) if r.ok else ""
        if not body:
            continue
        stem = _safe_name(Path(r.path).stem) or "audio"
        name, k = stem, 1
        while name in used:
            k += 1
            name = f"{stem}_{k}"
        used.add(name)
        written.append(_atomic_write(out_dir / f"{name}.srt", body))
    if not written:
        raise ASRError("nothing to write: no row has timed segments")
    return written


def read_list(path: str | os.PathLike, max_errors: int = 20) -> list[ASRRow]:
    """Read a GPT-SoVITS ``.list`` for proofreading; every malformed line is named (line number and reason) in one
    ListFormatError (gsv_core.formats.listfile's rules: ``|`` allowed in the text, BOM, GBK)."""
    try:
        parsed = listfile.read_list(path, strict=True, max_errors=max_errors)
    except listfile.ListFormatError as exc:
        raise ListFormatError(str(exc)) from None
    if not parsed.rows:
        raise ListFormatError(f"{path}: no entries")
    return [ASRRow(path=r.audio, speaker=r.speaker, lang=r.lang or r.lang_code.lower(), text=r.text)
            for r in parsed.rows]


FORMATS = ("list", "csv", "srt")


def save(rows: Sequence[ASRRow], fmt: str, out_dir: str | os.PathLike, name: str,
         default_lang: str = "zh") -> list[Path]:
    """Write ``rows`` in one format into ``out_dir`` (``name.list``, ``name.csv`` or ``name_srt/*.srt``)."""
    out_dir = Path(out_dir)
    if fmt == "list":
        return [write_list(rows, out_dir / f"{name}.list", default_lang)[0]]
    if fmt == "csv":
        return [write_csv(rows, out_dir / f"{name}.csv")]
    if fmt == "srt":
        return write_srt(rows, out_dir / f"{name}_srt" if len(rows) > 1 else out_dir)
    raise ASRError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")


def transcriber(service: "ASRService", model_dir: str | os.PathLike, device: str = "auto", **options: Any
                ) -> "Callable[[Path, str], str]":
    """``transcribe(path, lang) -> text`` over one ASR model, for the finetune data stage's transcript check
    (``asr_mismatch``). A file the model cannot read raises an ASRError (the data stage keeps such a clip and
    counts it as not checked)."""
    check_model_dir(model_dir)

    def transcribe(path, lang: str) -> str:
        language = lang if lang in LANGUAGES else "auto"
        rows = service.transcribe([Path(path)], ASROptions(model_dir=model_dir, language=language, device=device,
                                                           **options))
        if not rows or rows[0].error:
            raise ASRError(f"{Path(path).name}: {rows[0].error if rows else 'no transcript'}")
        return rows[0].text

    return transcribe
