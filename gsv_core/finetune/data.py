"""The data stage of finetuning: read a transcript list, analyse and clean the clips with a report, pick the
reference pool and split train / val / test.

Input (:func:`read_dataset`)
    A GPT-SoVITS ``.list`` (``path|speaker|language|text``, language codes as upstream's ``1-get-text.py`` accepts
    them) or a CSV/TSV with an audio column and a text column (optional speaker and language columns). Relative
    paths resolve against the list's folder; with ``audio_dir`` every row is looked up there by the base name of
    its path, as upstream does. Rows that cannot be used (wrong number of fields, empty path, a language our text
    front end does not read, missing audio, the same audio twice) are kept with their line number and reason and
    shown in the report; the stage fails only when no usable row remains.

Analysis (per clip, cached in ``data/analysis.jsonl`` keyed by path, size and mtime, so a re-run reuses it)
    On the file's own samples: duration, peak, clipping fraction (``|x| >= clip_level``). On the 16 kHz signal with
    25 ms frames every 10 ms (:mod:`gsv_core.signal`): the *loud level* (95th percentile of frame dB), the *noise
    floor* (5th percentile), ``snr_db = loud - noise`` (0-100 dB), silent frames below
    ``max(loud - silence_rel_db, min(noise + noise_margin_db, loud - 20 dB), silence_floor_db)`` (relative to the
    clip, never an absolute level alone), silence ratio, leading/trailing silence, the *speech span* (first to last
    non-silent frame), energy (dB of the mean power of non-silent frames), median F0 over voiced frames only (YIN
    with its voicing threshold; silent frames are unvoiced).

Speaking rate
    ``cps = speech units / speech span``. Units are syllable-like and counted for every script: one per CJK
    ideograph, kana or Hangul syllable, one per digit, and for each Latin word its number of vowel groups
    (``[aeiouy]+``, a silent final ``e`` not counted, at least one; an all-capital word of up to 5 letters is spelt,
    one unit per letter). The plausible range depends on the row's language (``cps_range_zh``, ``cps_range_en``).

Rules (thresholds in :class:`CleaningConfig`); a clip is dropped when any rule fails and every failing rule is
reported: ``empty_text``, ``text_mismatch`` (CJK/kana/Hangul in an English row, kana/Hangul in a Chinese row, or no
readable character), ``too_short``, ``too_long``, ``clipping``, ``too_much_silence``, ``long_lead_tail_silence``
(dropped, not trimmed: ordinary slicer output keeps at most 0.5 s, so the default limit of 1 s only catches clips
whose speech was cut away or never came), ``low_snr``, ``implausible_cps``, ``energy_outlier`` / ``f0_outlier``
(robust z-score ``0.6745 (x - median) / MAD`` per speaker over the clips that pass the rules above, energy in dB,
F0 in semitones; a MAD floor keeps very uniform data from flagging tiny differences; speakers with fewer than
``outlier_min_clips`` clips are not judged), ``asr_mismatch`` (only with a ``transcribe`` callable: character error
rate between the normalised transcript and what ASR heard, run on clips that passed every other rule).

Outputs (absolute paths in GPT-SoVITS ``.list`` format): ``data/input.list`` (usable rows before cleaning),
``train.list``, ``val.list``, ``test.list`` (seeded split, optionally stratified by speaker) and ``refpool.list``
(clean train clips of ``refpool_seconds`` length, which also stay in training); ``cleaning_report.csv`` (one row
per input row with every metric, the decision and its reasons) and ``cleaning_report.json`` (config, counts,
durations, per-rule results, thresholds computed from the data).

Utterances are keyed by the *base name* of their audio downstream (upstream's convention), so the outputs never
hold two clips of the same base name: the first kept clip keeps its file; a later clip whose base name is taken
is copied to ``data/clips/{stem}_{8 hex of its path hash}.wav``, and a kept clip that is not a ``.wav`` is
decoded and written there as 16-bit mono WAV at its own sample rate (``{stem}.wav`` when that name is free).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from gsv_core.audio import load_audio, resample
from gsv_core import languages
from gsv_core.errors import AudioError, GSVError
from gsv_core.signal import FRAME_S, HOP_S, f0_contour, frame_rms_db

from gsv_core.fileio import atomic_path, write_json_atomic, write_text_atomic
from gsv_core.formats import listfile

from .layout import DiskFullError, ExperimentLayout, disk_guard
from .slicer import SlicerParams, save_wav_guarded, slice_folder  # noqa: F401  (slice_folder re-exported)

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]
TranscribeFn = Callable[[Path, str], str]


AUDIO_HEADERS = ("path", "audio", "audio_path", "audio_file", "audiopath", "wav", "wav_path", "wavpath", "file",
                 "filename", "file_name", "filepath", "file_path", "utt", "文件名", "语音文件", "新文件名", "音频",
                 "音频文件", "音频路径", "路径", "文件")
TEXT_HEADERS = ("text", "transcript", "transcription", "sentence", "label", "content", "文本", "内容", "标注", "文字",
                "台词")
SPEAKER_HEADERS = ("speaker", "spk", "speaker_name", "spk_name", "说话人", "角色", "发音人")
LANG_HEADERS = ("lang", "language", "lan", "语言", "语种")

ANALYSIS_VERSION = 1
ANALYSIS_SR = 16000


class DatasetError(GSVError):
    """A transcript list or dataset the data stage cannot use."""


class DataCancelled(DatasetError):
    """The user stopped the data stage; analysed clips are cached and reused by the next run."""


class EmptyDatasetError(DatasetError):
    """No clip is left after reading and cleaning (the report is written and names the rules)."""


# ------------------------------------------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class DatasetItem:
    """One usable row: ``audio`` is absolute, ``lang`` canonical (``zh``/``en``), ``line`` 1-based in the source."""

    audio: Path
    speaker: str
    lang: str
    text: str
    line: int

    @property
    def key(self) -> str:
        return self.audio.name


@dataclass(frozen=True)
class InvalidRow:
    line: int
    rule: str  # invalid_row | unsupported_language | missing_audio | duplicate | unreadable_audio
    reason: str
    raw: str
    audio: str = ""
    speaker: str = ""
    lang: str = ""
    text: str = ""


class DatasetRows(list):
    """The usable :class:`DatasetItem` rows (a list), plus ``invalid`` (:class:`InvalidRow`), ``source`` and
    ``format`` (``"list"`` or ``"csv"``)."""

    def __init__(self, items: Iterable[DatasetItem] = (), invalid: Iterable[InvalidRow] = (),
                 source: Path | None = None, format: str = "list"):
        super().__init__(items)
        self.invalid: list[InvalidRow] = list(invalid)
        self.source = source
        self.format = format


def _decode_text(path: Path) -> str:
    try:
        return listfile.decode(listfile.read_bytes(path), str(path))[0]
    except listfile.ListFormatError as exc:
        raise DatasetError(str(exc).replace(": file not found", ": transcript list not found")) from None


def normalize_lang(code: str) -> tuple[str | None, str | None]:
    """(front-end language, None) or (None, reason) for a row's language code (every spelling upstream's data
    preparation accepts: ZH, JP/JA, EN/En, KO/Ko, YUE/Yue, and our text modes such as all_zh)."""
    code = (code or "").strip()
    lang = languages.list_code_to_language(code)
    if lang is None:
        if languages.list_code_to_mode(code) in ("auto", "auto_yue"):
            return None, f"language {code!r} detects per span; a training row names its language (ZH, EN, JA, ...)"
        return None, f"unknown language code {code!r}: use one of ZH, EN, JA, KO, YUE (or zh, en, ja, ko, yue)"
    if lang not in languages.IMPLEMENTED:
        return None, (f"language {code!r} ({languages.LANGUAGES[lang].name_en}) has no text front end in this "
                      "installation; remove the row or change its language")
    return lang, None


def _basename(raw: str) -> str:
    return re.split(r"[\\/]", raw.rstrip("\\/"))[-1]


def _resolve_audio(raw: str, base: Path, audio_dir: Path | None) -> Path:
    if audio_dir is not None:
        return (audio_dir / _basename(raw)).absolute()
    p = Path(raw).expanduser()
    return (p if p.is_absolute() else base / p).absolute()


def _looks_like_csv(path: Path, text: str) -> bool:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return True
    if suffix in (".list", ".txt", ".lst"):
        return False
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    return first.count("|") != 3


def _find_column(header: Sequence[str], names: Sequence[str]) -> int | None:
    folded = [h.strip().lstrip("\ufeff").casefold() for h in header]
    for name in names:
        if name.casefold() in folded:
            return folded.index(name.casefold())
    return None


def _strict_records(reader, path: Path):
    start = 1
    try:
        for record in reader:
            yield record
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DatasetError(f"{path}: line {start}: {exc} (a quote opened there is never closed?)") from None


def _parse_csv(path: Path, text: str, default_lang: str, default_speaker: str):
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if path.suffix.lower() == ".tsv":
        delimiter = "\t"
    else:
        try:
            delimiter = csv.Sniffer().sniff(first, delimiters=",\t;").delimiter
        except csv.Error:
            delimiter = ","
    # strict: a quote that never closes is an error naming its line, not every later row merged into one cell
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    cols: dict[str, int | None] = {}
    for record in _strict_records(reader, path):
        if header is None:
            if not any(c.strip() for c in record):
                continue
            header = record
            cols = {"audio": _find_column(header, AUDIO_HEADERS), "text": _find_column(header, TEXT_HEADERS),
                    "speaker": _find_column(header, SPEAKER_HEADERS), "lang": _find_column(header, LANG_HEADERS)}
            missing = [k for k in ("audio", "text") if cols[k] is None]
            if missing:
                raise DatasetError(
                    f"{path}: the CSV header {header!r} has no {' and no '.join(missing)} column. Name the audio "
                    f"column one of {', '.join(AUDIO_HEADERS[:6])}, 文件名, 语音文件 and the text column one of "
                    f"{', '.join(TEXT_HEADERS[:4])}, 文本 (case does not matter)")
            continue
        lineno = reader.line_num
        if not any(c.strip() for c in record):
            continue
        raw = delimiter.join(record)

        def cell(name: str) -> str:
            i = cols[name]
            return record[i].strip() if i is not None and i < len(record) else ""

        needed = max(cols["audio"], cols["text"]) + 1
        if len(record) < needed:
            yield lineno, raw, None, (f"row has {len(record)} field(s) but the audio/text columns need {needed} "
                                      f"(header: {len(header)} columns)")
            continue
        if len(record) > len(header):
            yield lineno, raw, None, (f"row has {len(record)} fields, more than the header's {len(header)} "
                                      "(quote text that contains the delimiter)")
            continue
        speaker = cell("speaker") or default_speaker
        lang = cell("lang") or default_lang
        yield lineno, raw, [cell("audio"), speaker, lang, cell("text")], None
    if header is None:
        raise DatasetError(f"{path}: the CSV file is empty (no header row)")


def _read(path: str | os.PathLike, audio_dir: str | os.PathLike | None, default_lang: str,
          default_speaker: str | None, audio_allowed: Callable[[Path], bool] | None = None) -> DatasetRows:
    path = Path(path).expanduser().absolute()
    text = _decode_text(path)
    base = path.parent
    adir = Path(audio_dir).expanduser().absolute() if audio_dir else None
    if adir is not None and not adir.is_dir():
        raise DatasetError(f"audio folder {adir} does not exist (it is where rows are looked up by file name)")
    speaker_default = default_speaker or path.stem
    is_csv = _looks_like_csv(path, text)
    items: list[DatasetItem] = []
    invalid: list[InvalidRow] = []
    seen: dict[Path, int] = {}

    if is_csv:
        rows = _parse_csv(path, text, default_lang, speaker_default)
    else:
        parsed = listfile.parse(text, str(path))
        bad = [(p.line, p.raw, None, p.reason) for p in parsed.problems
               if p.kind not in ("unknown_language", "empty_text")]  # those rows are judged below
        good = [(r.line, r.raw, [r.audio, r.speaker, r.lang_code, r.text], None) for r in parsed.rows]
        rows = sorted(bad + good, key=lambda row: row[0])
    for lineno, raw, fields, problem in rows:
        if problem is not None or fields is None or len(fields) != 4:
            invalid.append(InvalidRow(lineno, "invalid_row", problem or "malformed row", raw))
            continue
        audio_raw, speaker, lang_raw, utt = (f.strip() for f in fields)
        utt = " ".join(utt.split())
        common = dict(raw=raw, audio=audio_raw, speaker=speaker, lang=lang_raw, text=utt)
        if not audio_raw:
            invalid.append(InvalidRow(lineno, "invalid_row", "the audio path is empty", **common))
            continue
        lang, why = normalize_lang(lang_raw)
        if lang is None:
            invalid.append(InvalidRow(lineno, "unsupported_language", why, **common))
            continue
        audio = _resolve_audio(audio_raw, base, adir)
        if audio_allowed is not None and not audio_allowed(audio):  # the app's path policy: no existence probe
            invalid.append(InvalidRow(lineno, "missing_audio", f"audio {audio.name!r} cannot be used: it is not in a "
                                      "folder the app may read (DATA_DIRS or an upload)", **common))
            continue
        if not audio.is_file():
            hint = ""
            if adir is None and re.match(r"^[A-Za-z]:[\\/]|\\", audio_raw):
                hint = " (a Windows path: pass the folder holding the files as audio_dir to look them up by name)"
            elif adir is None and not Path(audio_raw).is_absolute():
                hint = f" (relative paths are resolved against {base})"
            invalid.append(InvalidRow(lineno, "missing_audio", f"audio file not found: {audio}{hint}", **common))
            continue
        if audio in seen:
            invalid.append(InvalidRow(lineno, "duplicate", f"the same audio as line {seen[audio]}", **common))
            continue
        seen[audio] = lineno
        items.append(DatasetItem(audio=audio, speaker=speaker or speaker_default, lang=lang, text=utt,
                                 line=lineno))
    return DatasetRows(items, invalid, source=path, format="csv" if is_csv else "list")


def read_dataset(path: str | os.PathLike, audio_dir: str | os.PathLike | None = None, *,
                 default_lang: str = "zh", default_speaker: str | None = None) -> DatasetRows:
    """Read a ``.list`` or CSV into usable rows (``result.invalid`` holds the rest with line numbers).

    ``default_lang`` applies to CSV rows without a language column/value; ``default_speaker`` (default: the
    file's stem) to rows without a speaker. Raises :class:`DatasetError` when the file cannot be read or no usable
    row remains (the message lists the first problems)."""
    rows = _read(path, audio_dir, default_lang, default_speaker)
    if not rows:
        raise DatasetError(_no_rows_message(rows))
    return rows


def _no_rows_message(rows: DatasetRows) -> str:
    if not rows.invalid:
        return f"{rows.source}: the file has no rows"
    shown = "; ".join(f"line {r.line}: {r.reason}" for r in rows.invalid[:5])
    more = f" (and {len(rows.invalid) - 5} more)" if len(rows.invalid) > 5 else ""
    return f"{rows.source}: no usable row among {len(rows.invalid)}: {shown}{more}"


# ----------------------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class CleaningConfig:
    """Cleaning thresholds (every rule can be switched off with ``enabled_rules``)."""

    min_seconds: float = 1.2            #: too_short below this
    max_seconds: float = 15.0           #: too_long above this (upstream's s2 loader keeps clips < 54 s)
    clip_level: float = 0.99            #: a sample at or above this |value| counts as clipped
    max_clip_fraction: float = 0.001    #: clipping when more than 0.1 % of samples are clipped
    silence_rel_db: float = 40.0        #: frames this far below the loud level are silent
    noise_margin_db: float = 6.0        #: ... or within this margin of the noise floor (if >= 20 dB below loud)
    silence_floor_db: float = -65.0     #: frames below this dBFS are always silent
    max_silence_ratio: float = 0.5      #: too_much_silence above this share of frames
    max_edge_silence: float = 1.0       #: long_lead_tail_silence: leading or trailing silence above this (s)
    min_snr_db: float = 12.0            #: low_snr below this estimate (loud level - noise floor)
    cps_range_zh: tuple[float, float] = (1.5, 9.0)  #: plausible speech units per second, Chinese rows
    cps_range_en: tuple[float, float] = (1.0, 8.5)  #: plausible speech units per second, English rows
    outlier_z: float = 4.0              #: energy/F0 outlier when |robust z| exceeds this
    outlier_min_clips: int = 8          #: speakers with fewer candidate clips are not judged for outliers
    energy_mad_floor_db: float = 2.0   #: MAD floor: with z 4, at least ~12 dB from the median is an outlier
    f0_mad_floor_st: float = 1.5       #: MAD floor: with z 4, at least ~9 semitones from the median
    max_cer: float = 0.3                #: asr_mismatch above this character error rate (with transcribe)
    refpool_seconds: tuple[float, float] = (3.0, 5.0)  #: clean train clips of this length go to the refpool
    enabled_rules: tuple[str, ...] | None = None       #: None = all rules

    def rule_on(self, name: str) -> bool:
        return self.enabled_rules is None or name in self.enabled_rules

    def analysis_params(self) -> dict:
        """The settings that change cached metrics (a change invalidates the analysis cache)."""
        return {"v": ANALYSIS_VERSION, "clip_level": self.clip_level, "silence_rel_db": self.silence_rel_db,
                "noise_margin_db": self.noise_margin_db, "silence_floor_db": self.silence_floor_db}

    def validate(self) -> "CleaningConfig":
        if not 0 < self.min_seconds < self.max_seconds:
            raise DatasetError(f"cleaning needs 0 < min_seconds < max_seconds, got {self.min_seconds} and "
                               f"{self.max_seconds}")
        lo, hi = self.refpool_seconds
        if not 0 < lo <= hi:
            raise DatasetError(f"refpool_seconds must be (low, high) with 0 < low <= high, got {self.refpool_seconds}")
        for name in ("cps_range_zh", "cps_range_en"):
            a, b = getattr(self, name)
            if not 0 <= a < b:
                raise DatasetError(f"{name} must be (min, max) with 0 <= min < max, got {(a, b)}")
        if self.enabled_rules is not None:
            unknown = set(self.enabled_rules) - set(CLEANING_RULES)
            if unknown:
                raise DatasetError(f"unknown cleaning rule(s) {sorted(unknown)}; known: {', '.join(CLEANING_RULES)}")
        return self


CLEANING_RULES = ("empty_text", "text_mismatch", "too_short", "too_long", "clipping", "too_much_silence",
                  "long_lead_tail_silence", "low_snr", "implausible_cps", "energy_outlier", "f0_outlier",
                  "asr_mismatch")
ROW_RULES = ("invalid_row", "unsupported_language", "missing_audio", "duplicate", "unreadable_audio")


@dataclass(frozen=True)
class SplitConfig:
    """Held-out sizes: ``round(n * fraction)`` clamped to [min, max], then val + test together capped at a third
    of the clips (train always keeps at least one)."""

    seed: int = 1234
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    val_min: int = 2
    val_max: int = 50
    test_min: int = 2
    test_max: int = 50
    stratify_by_speaker: bool = False

    def validate(self) -> "SplitConfig":
        for name in ("val_fraction", "test_fraction"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise DatasetError(f"{name} must be in [0, 1), got {v}")
        if self.val_min < 0 or self.test_min < 0 or self.val_max < self.val_min or self.test_max < self.test_min:
            raise DatasetError("split sizes need 0 <= min <= max for val and test")
        return self


# ---------------------------------------------------------------------------------------------------------- analysis
def _finite(v: Any) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None


def analyze_wave(wav: np.ndarray, sr: int, config: CleaningConfig = CleaningConfig()) -> dict[str, Any]:
    """Every per-clip signal metric of a mono waveform (see the module docstring). NaN-free: unknown values are
    None."""
    x = np.asarray(wav, dtype=np.float32)
    n = int(x.shape[0])
    duration = n / float(sr)
    absx = np.abs(x)
    peak = float(absx.max()) if n else 0.0
    clip_fraction = float(np.mean(absx >= config.clip_level)) if n else 0.0
    x16 = resample(x, int(sr), ANALYSIS_SR) if int(sr) != ANALYSIS_SR else x
    db = frame_rms_db(x16, ANALYSIS_SR)
    loud = float(np.percentile(db, 95))
    noise = float(np.percentile(db, 5))
    threshold = max(loud - config.silence_rel_db, min(noise + config.noise_margin_db, loud - 20.0),
                    config.silence_floor_db)
    silent = db < threshold
    voiced_idx = np.nonzero(~silent)[0]
    if voiced_idx.size:
        first, last = int(voiced_idx[0]), int(voiced_idx[-1])
        lead = first * HOP_S
        tail = max(0.0, duration - (last * HOP_S + FRAME_S))
        active = min(duration, (last - first) * HOP_S + FRAME_S)
        power = np.mean(10.0 ** (db[~silent] / 10.0))
        energy = 10.0 * math.log10(power)
    else:
        lead = tail = duration
        active = 0.0
        energy = None
    _, f0 = f0_contour(x16, ANALYSIS_SR, floor_db=threshold, rel_db=1000.0)
    voiced = f0[np.isfinite(f0)]
    return {
        "duration": duration, "sample_rate": int(sr), "peak": peak, "clip_fraction": clip_fraction,
        "loud_db": loud, "noise_floor_db": noise, "snr_db": float(min(100.0, max(0.0, loud - noise))),
        "silence_threshold_db": threshold, "silence_ratio": float(silent.mean()), "lead_silence": float(lead),
        "tail_silence": float(tail), "active": float(active), "energy_db": _finite(energy),
        "f0_median": float(np.median(voiced)) if voiced.size >= 3 else None,
        "voiced_ratio": float(voiced.size / max(1, int((~silent).sum()))),
    }


def analyze_file(path: Path, config: CleaningConfig = CleaningConfig()) -> dict[str, Any]:
    """Load ``path`` (any format, any rate, mixed to mono) and :func:`analyze_wave` it; AudioError if unreadable."""
    wav, sr = load_audio(path, sr=None, mono=True)
    return analyze_wave(wav, sr, config)


class AnalysisCache:
    """``data/analysis.jsonl``: one JSON line per analysed clip (and per ASR result), appended as soon as it is
    computed, so a crash or cancel loses nothing finished. Records made with other analysis settings are ignored;
    a torn last line is skipped."""

    def __init__(self, path: Path, params: dict):
        self.path = path
        self.params = params
        self.metrics: dict[str, dict] = {}
        self.asr: dict[tuple[str, str], str] = {}
        self._needs_newline = False
        if path.is_file():
            raw = path.read_text(encoding="utf-8", errors="replace")
            self._needs_newline = bool(raw) and not raw.endswith("\n")
            for line in raw.splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(rec, dict) or rec.get("params") != params:
                    continue
                if rec.get("kind") == "metrics" and isinstance(rec.get("metrics"), dict):
                    self.metrics[rec["key"]] = rec["metrics"]
                elif rec.get("kind") == "asr":
                    self.asr[(rec["key"], rec["lang"])] = rec["text"]

    @staticmethod
    def key(path: Path) -> str:
        st = path.stat()
        return f"{path}|{st.st_size}|{st.st_mtime_ns}"

    def _append(self, rec: dict) -> None:
        rec = {"params": self.params, **rec}
        with disk_guard("writing the clip analysis cache"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                if self._needs_newline:
                    fh.write("\n")
                    self._needs_newline = False
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def put_metrics(self, key: str, metrics: dict) -> None:
        self.metrics[key] = metrics
        self._append({"kind": "metrics", "key": key, "metrics": metrics})

    def put_asr(self, key: str, lang: str, text: str) -> None:
        self.asr[(key, lang)] = text
        self._append({"kind": "asr", "key": key, "lang": lang, "text": text})


# ----------------------------------------------------------------------------------------------------- text measures
_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_KANA_RE = re.compile(r"[\u3041-\u3096\u30a1-\u30fa]")
_HANGUL_RE = re.compile(r"[\uac00-\ud7af]")
_WORD_RE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
_VOWELS_RE = re.compile(r"[aeiouy]+")


def _word_syllables(word: str) -> int:
    if word.isupper() and len(word) <= 5:
        return len(word)  # an acronym is spelt out
    w = word.lower().replace("'", "")
    groups = len(_VOWELS_RE.findall(w))
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")) and groups > 1:
        groups -= 1
    return max(1, groups)


def speech_units(text: str) -> int:
    """Syllable-like units of a transcript (see the module docstring for the formula)."""
    text = unicodedata.normalize("NFKC", text)
    n = len(_CJK_RE.findall(text)) + len(_KANA_RE.findall(text)) + len(_HANGUL_RE.findall(text))
    n += sum(ch.isdigit() for ch in text)
    n += sum(_word_syllables(w) for w in _WORD_RE.findall(text))
    return n


def text_mismatch(text: str, lang: str) -> str | None:
    """Why the text cannot be read as ``lang`` by our front end, or None."""
    if speech_units(text) == 0:
        return "the text has no readable character (only punctuation/symbols)"
    if lang == "en" and (_CJK_RE.search(text) or _KANA_RE.search(text) or _HANGUL_RE.search(text)):
        return "the row is marked English (en) but the text holds CJK/kana/Hangul characters; mark it zh"
    if lang == "zh" and (_KANA_RE.search(text) or _HANGUL_RE.search(text)):
        return "the row is marked Chinese (zh) but the text holds Japanese kana or Korean Hangul"
    return None


def _scoring_chars(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LN")


def character_error_rate(reference: str, hypothesis: str) -> float | None:
    """Levenshtein distance between the letters/digits of both texts (NFKC, case-folded; punctuation and spaces
    dropped) over the reference's length; None when the reference has none."""
    ref, hyp = _scoring_chars(reference), _scoring_chars(hypothesis)
    if not ref:
        return None
    prev = list(range(len(hyp) + 1))
    for i, rc in enumerate(ref, start=1):
        cur = [i] + [0] * len(hyp)
        for j, hc in enumerate(hyp, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (rc != hc))
        prev = cur
    return prev[-1] / len(ref)


# --------------------------------------------------------------------------------------------------------- decisions
@dataclass
class ClipRecord:
    """One input row through the stage: its metrics, reasons and final placement."""

    line: int
    audio: str
    speaker: str
    lang: str
    text: str
    item: DatasetItem | None = None
    metrics: dict[str, Any] | None = None
    reasons: list[str] = field(default_factory=list)   # failing rule names
    details: list[str] = field(default_factory=list)   # human-readable explanation per reason
    units: int = 0
    cps: float | None = None
    energy_z: float | None = None
    f0_z: float | None = None
    asr_text: str | None = None
    cer: float | None = None
    invalid: bool = False
    output_audio: str = ""
    split: str = ""
    refpool: bool = False

    def fail(self, rule: str, detail: str) -> None:
        self.reasons.append(rule)
        self.details.append(f"{rule}: {detail}")

    @property
    def duration(self) -> float:
        return float(self.metrics["duration"]) if self.metrics else 0.0

    @property
    def decision(self) -> str:
        return "invalid" if self.invalid else ("dropped" if self.reasons else "kept")


def _clip_rules(rec: ClipRecord, cfg: CleaningConfig) -> None:
    m, it = rec.metrics, rec.item
    assert m is not None and it is not None
    rec.units = speech_units(it.text)
    rec.cps = rec.units / m["active"] if m["active"] > 0 else None
    checks: list[tuple[str, bool, str]] = []
    if not it.text.strip():
        checks.append(("empty_text", True, "the transcript is empty"))
    else:
        why = text_mismatch(it.text, it.lang)
        checks.append(("text_mismatch", why is not None, why or ""))
    d = m["duration"]
    checks += [
        ("too_short", d < cfg.min_seconds, f"{d:.2f} s < {cfg.min_seconds:g} s"),
        ("too_long", d > cfg.max_seconds, f"{d:.2f} s > {cfg.max_seconds:g} s"),
        ("clipping", m["clip_fraction"] > cfg.max_clip_fraction,
         f"{100 * m['clip_fraction']:.2f} % of samples at |x| >= {cfg.clip_level:g} (limit "
         f"{100 * cfg.max_clip_fraction:g} %)"),
        ("too_much_silence", m["silence_ratio"] > cfg.max_silence_ratio,
         f"{100 * m['silence_ratio']:.0f} % silent frames > {100 * cfg.max_silence_ratio:.0f} %"),
        ("long_lead_tail_silence", max(m["lead_silence"], m["tail_silence"]) > cfg.max_edge_silence,
         f"leading {m['lead_silence']:.2f} s / trailing {m['tail_silence']:.2f} s > {cfg.max_edge_silence:g} s"),
        ("low_snr", m["snr_db"] < cfg.min_snr_db, f"estimated SNR {m['snr_db']:.1f} dB < {cfg.min_snr_db:g} dB"),
    ]
    if rec.units > 0 and it.text.strip():
        lo, hi = cfg.cps_range_zh if it.lang == "zh" else cfg.cps_range_en
        if rec.cps is None:
            checks.append(("implausible_cps", True, f"{rec.units} speech units but no speech in the audio"))
        else:
            checks.append(("implausible_cps", not lo <= rec.cps <= hi,
                           f"{rec.units} units in {m['active']:.2f} s of speech = {rec.cps:.2f}/s, outside "
                           f"{lo:g}-{hi:g}/s for {it.lang} (text and audio do not fit)"))
    for rule, failed, detail in checks:
        if failed and cfg.rule_on(rule):
            rec.fail(rule, detail)


def _robust_stats(values: np.ndarray, floor: float) -> tuple[float, float]:
    med = float(np.median(values))
    mad = float(np.median(np.abs(values - med)))
    return med, max(mad, floor)


def _outliers(records: list[ClipRecord], cfg: CleaningConfig) -> dict[str, Any]:
    """Robust z of energy (dB) and F0 (semitones) per speaker over clips with no other failure."""
    thresholds: dict[str, Any] = {}
    by_speaker: dict[str, list[ClipRecord]] = {}
    for r in records:
        by_speaker.setdefault(r.speaker, []).append(r)
    k = 0.6745
    for spk, group in sorted(by_speaker.items()):
        cands = [r for r in group if not r.reasons]
        entry: dict[str, Any] = {"candidates": len(cands)}
        if len(cands) < cfg.outlier_min_clips:
            entry["judged"] = False
            entry["note"] = f"fewer than {cfg.outlier_min_clips} clean clips: outlier rules not applied"
            thresholds[spk] = entry
            continue
        entry["judged"] = True
        e = np.array([r.metrics["energy_db"] for r in cands if r.metrics["energy_db"] is not None])
        f = np.array([12 * math.log2(r.metrics["f0_median"]) for r in cands if r.metrics["f0_median"]])
        if e.size >= cfg.outlier_min_clips:
            med, mad = _robust_stats(e, cfg.energy_mad_floor_db)
            span = cfg.outlier_z * mad / k
            entry["energy_db"] = {"median": med, "mad": mad, "low": med - span, "high": med + span}
            for r in group:
                if r.metrics is not None and r.metrics["energy_db"] is not None:
                    r.energy_z = k * (r.metrics["energy_db"] - med) / mad
                    if abs(r.energy_z) > cfg.outlier_z and cfg.rule_on("energy_outlier"):
                        r.fail("energy_outlier", f"energy {r.metrics['energy_db']:.1f} dB, robust z {r.energy_z:+.1f}"
                                                 f" (speaker median {med:.1f} dB)")
        if f.size >= cfg.outlier_min_clips:
            med, mad = _robust_stats(f, cfg.f0_mad_floor_st)
            span = cfg.outlier_z * mad / k
            entry["f0_hz"] = {"median": 2 ** (med / 12), "mad_semitones": mad, "low": 2 ** ((med - span) / 12),
                              "high": 2 ** ((med + span) / 12)}
            for r in group:
                if r.metrics is not None and r.metrics["f0_median"]:
                    r.f0_z = k * (12 * math.log2(r.metrics["f0_median"]) - med) / mad
                    if abs(r.f0_z) > cfg.outlier_z and cfg.rule_on("f0_outlier"):
                        r.fail("f0_outlier", f"median F0 {r.metrics['f0_median']:.0f} Hz, robust z {r.f0_z:+.1f} "
                                             f"(speaker median {2 ** (med / 12):.0f} Hz)")
        thresholds[spk] = entry
    return thresholds


# ------------------------------------------------------------------------------------------------------------- split
def _held_out_sizes(n: int, cfg: SplitConfig) -> tuple[int, int]:
    if n <= 1:
        return 0, 0

    def size(frac: float, lo: int, hi: int) -> int:
        return min(hi, max(lo, int(round(n * frac)))) if frac > 0 or lo > 0 else 0

    n_val = size(cfg.val_fraction, cfg.val_min, cfg.val_max)
    n_test = size(cfg.test_fraction, cfg.test_min, cfg.test_max)
    cap = min(n // 3, n - 1)
    while n_val + n_test > cap:
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def split_items(keys: Sequence[str], speakers: Sequence[str], cfg: SplitConfig = SplitConfig()) -> dict[str, str]:
    """key -> ``train``/``val``/``test``: seeded, reproducible; with ``stratify_by_speaker`` each speaker gives its
    share (largest remainders) and keeps at least one train clip."""
    cfg.validate()
    n = len(keys)
    n_val, n_test = _held_out_sizes(n, cfg)
    rng = np.random.default_rng(cfg.seed)
    out = {k: "train" for k in keys}
    if n_val + n_test == 0:
        return out
    if not cfg.stratify_by_speaker:
        order = rng.permutation(n)
        for rank, idx in enumerate(order[:n_test + n_val]):
            out[keys[idx]] = "test" if rank < n_test else "val"
        return out
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(speakers):
        groups.setdefault(s, []).append(i)
    names = sorted(groups)

    def quotas(total: int, room: dict[str, int]) -> dict[str, int]:
        share = {s: total * len(groups[s]) / n for s in names}
        q = {s: min(room[s], int(math.floor(share[s]))) for s in names}
        rest = total - sum(q.values())
        for s in sorted(names, key=lambda s: (-(share[s] - math.floor(share[s])), s)):
            if rest <= 0:
                break
            if q[s] < room[s]:
                q[s] += 1
                rest -= 1
        return q

    room = {s: len(groups[s]) - 1 for s in names}
    q_test = quotas(n_test, room)
    room = {s: room[s] - q_test[s] for s in names}
    q_val = quotas(n_val, room)
    for s in names:
        idx = groups[s]
        perm = [idx[j] for j in rng.permutation(len(idx))]
        for j in perm[:q_test[s]]:
            out[keys[j]] = "test"
        for j in perm[q_test[s]:q_test[s] + q_val[s]]:
            out[keys[j]] = "val"
    return out


# ----------------------------------------------------------------------------------------------------------- outputs
def _list_line(audio: str, speaker: str, lang: str, text: str) -> str:
    return listfile.format_line(audio, speaker, lang, text)


def _copy_atomic(src: Path, dst: Path) -> None:
    with atomic_path(dst, fsync=False) as tmp:
        shutil.copyfile(src, tmp)


def _fresh(target: Path, source: Path) -> bool:
    return target.is_file() and target.stat().st_mtime_ns >= source.stat().st_mtime_ns


def _unique_outputs(kept: list[ClipRecord], layout: ExperimentLayout) -> int:
    """Give every kept clip an output path with a unique base name (see the module docstring); returns how many
    files were copied or converted into ``clips_dir``."""
    used: set[str] = set()
    pending: list[ClipRecord] = []
    for r in kept:
        src = r.item.audio
        if src.suffix.lower() == ".wav" and src.name.casefold() not in used:
            used.add(src.name.casefold())
            r.output_audio = str(src)
        else:
            pending.append(r)
    written = 0
    for r in pending:
        src = r.item.audio
        name = f"{src.stem}.wav"
        if name.casefold() in used:
            name = f"{src.stem}_{hashlib.sha1(str(src).encode('utf-8')).hexdigest()[:8]}.wav"
        k = 2
        while name.casefold() in used:  # hash prefixes colliding as well: count on
            name = f"{src.stem}_{hashlib.sha1(str(src).encode('utf-8')).hexdigest()[:8]}_{k}.wav"
            k += 1
        used.add(name.casefold())
        target = layout.clips_dir / name
        if not _fresh(target, src):
            if src.suffix.lower() == ".wav":
                with disk_guard(f"copying {src.name} to {target}"):
                    _copy_atomic(src, target)
            else:
                wav, sr = load_audio(src, sr=None, mono=True)
                save_wav_guarded(target, wav, sr, f"converting {src.name} to {target}")
            written += 1
        r.output_audio = str(target)
    return written


_CSV_FIELDS = ["line", "audio", "output_audio", "speaker", "lang", "text", "decision", "split", "refpool", "reasons",
               "details", "duration_s", "sample_rate", "peak", "clip_fraction", "energy_db", "loud_db",
               "noise_floor_db", "snr_db", "silence_threshold_db", "silence_ratio", "lead_silence_s",
               "tail_silence_s", "speech_span_s", "f0_median_hz", "voiced_ratio", "speech_units", "cps", "energy_z",
               "f0_z", "asr_text", "cer"]


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else ""
    return v


def _csv_text(records: list[ClipRecord]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in records:
        m = r.metrics or {}
        w.writerow({k: _fmt(v) for k, v in {
            "line": r.line, "audio": r.audio, "output_audio": r.output_audio, "speaker": r.speaker, "lang": r.lang,
            "text": r.text, "decision": r.decision, "split": r.split, "refpool": int(r.refpool),
            "reasons": ";".join(r.reasons), "details": " | ".join(r.details),
            "duration_s": m.get("duration"), "sample_rate": m.get("sample_rate"), "peak": m.get("peak"),
            "clip_fraction": m.get("clip_fraction"), "energy_db": m.get("energy_db"), "loud_db": m.get("loud_db"),
            "noise_floor_db": m.get("noise_floor_db"), "snr_db": m.get("snr_db"),
            "silence_threshold_db": m.get("silence_threshold_db"), "silence_ratio": m.get("silence_ratio"),
            "lead_silence_s": m.get("lead_silence"), "tail_silence_s": m.get("tail_silence"),
            "speech_span_s": m.get("active"), "f0_median_hz": m.get("f0_median"),
            "voiced_ratio": m.get("voiced_ratio"), "speech_units": r.units if r.metrics else None, "cps": r.cps,
            "energy_z": r.energy_z, "f0_z": r.f0_z, "asr_text": r.asr_text, "cer": r.cer}.items()})
    return buf.getvalue()


def _rule_table(records: list[ClipRecord]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for rule in ROW_RULES + CLEANING_RULES:
        hit = [r for r in records if rule in r.reasons]
        if not hit and rule in ROW_RULES:
            continue
        table[rule] = {"failed": len(hit), "failed_seconds": round(sum(r.duration for r in hit), 3),
                       "only_reason": sum(1 for r in hit if len(r.reasons) == 1)}
    return table


# -------------------------------------------------------------------------------------------------------------- stage
@dataclass
class DataResult:
    """What :func:`prepare_dataset` produced: counts, seconds per group, output paths and the JSON summary."""

    counts: dict[str, int]
    seconds: dict[str, float]
    paths: dict[str, Path]
    summary: dict[str, Any]

    @property
    def train_list(self) -> Path:
        return self.paths["train"]


def _summary(source: Path, rows: DatasetRows, records: list[ClipRecord], cfg: CleaningConfig, split: SplitConfig,
             thresholds: dict, extra: dict) -> tuple[dict, dict, dict]:
    kept = [r for r in records if r.decision == "kept"]
    analysed = [r for r in records if r.metrics is not None]
    counts = {
        "rows": len(records), "invalid": sum(r.invalid for r in records), "analysed": len(analysed),
        "kept": len(kept), "dropped": sum(r.decision == "dropped" for r in records),
        "train": sum(r.split == "train" for r in kept), "val": sum(r.split == "val" for r in kept),
        "test": sum(r.split == "test" for r in kept), "refpool": sum(r.refpool for r in kept),
    }
    seconds = {
        "analysed": round(sum(r.duration for r in analysed), 3), "kept": round(sum(r.duration for r in kept), 3),
        "dropped": round(sum(r.duration for r in records if r.decision == "dropped"), 3),
        **{s: round(sum(r.duration for r in kept if r.split == s), 3) for s in ("train", "val", "test")},
        "refpool": round(sum(r.duration for r in kept if r.refpool), 3),
    }
    summary = {
        "version": ANALYSIS_VERSION, "source": str(source), "format": rows.format,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cleaning_config": asdict(cfg), "split_config": asdict(split),
        "counts": counts, "seconds": seconds, "hours_kept": round(seconds["kept"] / 3600, 4),
        "rules": _rule_table(records), "outlier_thresholds": thresholds,
        "invalid_rows": [{"line": r.line, "rule": r.reasons[0], "reason": r.details[0]} for r in records
                         if r.invalid][:500],
        **extra,
    }
    return counts, seconds, summary


def prepare_dataset(source: str | os.PathLike, layout: ExperimentLayout, *,
                    audio_dir: str | os.PathLike | None = None, default_lang: str = "zh",
                    default_speaker: str | None = None, cleaning: CleaningConfig = CleaningConfig(),
                    split: SplitConfig = SplitConfig(), transcribe: TranscribeFn | None = None,
                    progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                    audio_allowed: Callable[[Path], bool] | None = None) -> DataResult:
    """Run the whole data stage into ``layout.data_dir`` (see the module docstring) and return its result.
    ``audio_allowed`` (the app's path policy) may refuse rows whose audio lies outside the folders it may read.

    Raises :class:`DatasetError` for an unreadable list, :class:`DataCancelled` when ``cancel()`` turns true
    (analysis done so far is cached), :class:`EmptyDatasetError` when nothing survives (report written first) and
    :class:`~gsv_core.finetune.layout.DiskFullError` when the disk fills (files written before stay valid)."""
    cleaning.validate()
    split.validate()
    default_lang_c, why = normalize_lang(default_lang)
    if default_lang_c is None:
        raise DatasetError(f"default language: {why}")

    def report(frac: float, msg: str) -> None:
        if progress is not None:
            progress(min(1.0, max(0.0, frac)), msg)

    report(0.0, "reading the transcript list")
    rows = _read(source, audio_dir, default_lang, default_speaker or layout.name, audio_allowed)
    data_dir = layout.data_dir
    with disk_guard("writing the data folder"):
        data_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(layout.input_list, "".join(
            _list_line(str(it.audio), it.speaker, it.lang, it.text) + "\n" for it in rows))

    records: list[ClipRecord] = []
    for bad in rows.invalid:
        rec = ClipRecord(line=bad.line, audio=bad.audio, speaker=bad.speaker, lang=bad.lang, text=bad.text,
                         invalid=True)
        rec.fail(bad.rule, bad.reason)
        records.append(rec)
    items = [ClipRecord(line=it.line, audio=str(it.audio), speaker=it.speaker, lang=it.lang, text=it.text, item=it)
             for it in rows]
    records.extend(items)
    records.sort(key=lambda r: r.line)

    cache = AnalysisCache(data_dir / "analysis.jsonl", cleaning.analysis_params())
    reused = 0
    asr_weight = 0.3 if transcribe is not None else 0.0
    span = 0.9 - asr_weight
    for k, rec in enumerate(items):
        if cancel is not None and cancel():
            raise DataCancelled(f"data preparation stopped after {k} of {len(items)} clips; the analysis is saved "
                                "and the next run continues from there")
        report(span * k / max(1, len(items)), f"analysing {rec.item.audio.name} ({k + 1}/{len(items)})")
        key = AnalysisCache.key(rec.item.audio)
        metrics = cache.metrics.get(key)
        if metrics is None:
            try:
                metrics = analyze_file(rec.item.audio, cleaning)
            except AudioError as exc:
                rec.invalid = True
                rec.fail("unreadable_audio", str(exc))
                continue
            cache.put_metrics(key, metrics)
        else:
            reused += 1
        rec.metrics = metrics
        _clip_rules(rec, cleaning)

    analysed = [r for r in items if r.metrics is not None]
    thresholds = _outliers(analysed, cleaning)

    asr_failed: list[str] = []
    if transcribe is not None and cleaning.rule_on("asr_mismatch"):
        todo = [r for r in analysed if not r.reasons]
        for k, rec in enumerate(todo):
            if cancel is not None and cancel():
                raise DataCancelled(f"data preparation stopped during ASR after {k} of {len(todo)} clips; results "
                                    "so far are cached")
            report(span + asr_weight * k / max(1, len(todo)), f"transcribing {rec.item.audio.name}")
            key = AnalysisCache.key(rec.item.audio)
            heard = cache.asr.get((key, rec.lang))
            if heard is None:
                try:
                    heard = str(transcribe(rec.item.audio, rec.lang))
                except GSVError as exc:
                    asr_failed.append(f"line {rec.line}: {exc}")
                    continue
                cache.put_asr(key, rec.lang, heard)
            rec.asr_text = heard
            rec.cer = character_error_rate(rec.text, heard)
            if rec.cer is not None and rec.cer > cleaning.max_cer:
                rec.fail("asr_mismatch", f"ASR heard {heard!r}: CER {rec.cer:.2f} > {cleaning.max_cer:g}")

    kept = [r for r in records if r.decision == "kept"]
    report(0.9, f"{len(kept)} of {len(records)} clips kept; writing outputs")
    extra = {"analysis_reused": reused, "asr_failed": asr_failed[:100], "asr_used": transcribe is not None}
    paths = {"input": layout.input_list, "report_json": layout.cleaning_report_json,
             "report_csv": layout.cleaning_report_csv, **{s: layout.split_list(s)
                                                          for s in ("train", "val", "test", "refpool")}}

    if not kept:
        counts, seconds, summary = _summary(rows.source, rows, records, cleaning, split, thresholds, extra)
        _write_reports(layout, records, summary)
        for s in ("train", "val", "test", "refpool"):
            try:
                layout.split_list(s).unlink()
            except FileNotFoundError:
                pass
        rules = summary["rules"]
        named = ", ".join(f"{name} ({v['failed']})" for name, v in rules.items() if v["failed"]) or "none"
        raise EmptyDatasetError(
            f"no clip is left for training: of {len(records)} row(s), the rules removed everything: {named}. "
            f"See {layout.cleaning_report_csv} for every clip's metrics and reasons; loosen the thresholds or fix "
            "the data")

    copied = _unique_outputs(kept, layout)
    keys = [r.output_audio for r in kept]
    placement = split_items(keys, [r.speaker for r in kept], split)
    lo, hi = cleaning.refpool_seconds
    for r in kept:
        r.split = placement[r.output_audio]
        r.refpool = r.split == "train" and lo <= r.duration <= hi

    extra["copied_to_clips"] = copied
    counts, seconds, summary = _summary(rows.source, rows, records, cleaning, split, thresholds, extra)
    if counts["refpool"] == 0:
        summary["warnings"] = [f"no clean train clip is {lo:g}-{hi:g} s long: the reference pool is empty"]
    for s in ("train", "val", "test", "refpool"):
        chosen = [r for r in kept if (r.refpool if s == "refpool" else r.split == s)]
        with disk_guard(f"writing {s}.list"):
            write_text_atomic(layout.split_list(s), "".join(
                _list_line(r.output_audio, r.speaker, r.lang, r.text) + "\n" for r in chosen))
    _write_reports(layout, records, summary)
    report(1.0, f"data ready: {counts['train']} train, {counts['val']} val, {counts['test']} test clips, "
                f"{counts['refpool']} in the reference pool ({seconds['kept'] / 60:.1f} min kept)")
    return DataResult(counts=counts, seconds=seconds, paths=paths, summary=summary)


def _write_reports(layout: ExperimentLayout, records: list[ClipRecord], summary: dict) -> None:
    with disk_guard("writing the cleaning report"):
        write_text_atomic(layout.cleaning_report_csv, _csv_text(records))
        write_json_atomic(layout.cleaning_report_json, summary)


__all__ = [
    "AnalysisCache", "CLEANING_RULES", "CleaningConfig", "DataCancelled", "DataResult", "DatasetError",
    "DatasetItem", "DatasetRows", "DiskFullError", "EmptyDatasetError", "InvalidRow", "SlicerParams", "SplitConfig", "analyze_file", "analyze_wave", "character_error_rate",
    "normalize_lang", "prepare_dataset", "read_dataset", "slice_folder", "speech_units", "split_items",
    "text_mismatch",
]
