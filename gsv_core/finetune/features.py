"""Feature extraction for finetuning: upstream's four dataset-preparation steps, cached and resumable.

Input: the split ``.list`` files of the data stage (``abs_path|speaker|lang|text``); an utterance is keyed by the
base name of its audio file. Output, in the experiment folder and in upstream's formats:

* ``2-name2text.txt``: ``name<TAB>phones (space separated)<TAB>word2ph (Python list repr, or None)<TAB>norm_text``
  (the text has "%" -> "-" and "￥" -> "," first, then the version's cleaner);
* ``3-bert/{name}.pt``: ``[1024, n_phones]`` BERT phone features, Chinese lines only;
* ``5-wav32k/{name}``: int16 32 kHz audio, ``x / peak * (0.95 * 0.5 * 32768) + 0.5 * 32768 * x``; items whose peak
  exceeds 2.2 are skipped (reported) as upstream does;
* ``4-cnhubert/{name}.pt``: ``[1, 768, T50]`` HuBERT features of the same mix with 1145.14 instead of 32768,
  resampled 32 k -> 16 k; features with NaN (half precision) are computed again in float32;
* ``7-sv_cn/{name}.pt``: ``[1, 20480]`` ERes2NetV2 ``forward3`` of the ``5-wav32k`` file resampled to 16 kHz with
  torchaudio's default windowed-sinc rule (v2Pro / v2ProPlus only);
* ``6-name2semantic.tsv``: header ``item_name<TAB>semantic_audio``, then ``name<TAB>tokens`` from the PRETRAINED
  SoVITS quantizer.

Caching and resume. Every per-item file is written atomically and reused on a re-run when present and readable.
Text results, the audio source each waveform came from and semantic tokens are appended line by line to small
journals in ``.features/`` (the last record of a name wins; a half-written last line is ignored), and the two
tables are rebuilt from them at the end of a run, in list order. A cancelled or killed run therefore continues
where it stopped. An item whose audio file changed (path, size or mtime) or whose text or language changed is
redone.

``features.json`` records the models used (size, mtime and SHA-256 of each file; a file whose size and mtime are
unchanged is not hashed again). A re-run with other models invalidates exactly what depends on them:

=====================  ==================================================================
changed                 invalidated
=====================  ==================================================================
text front end          text journal and ``3-bert`` (symbol set v1/v2, G2PW on/off)
BERT folder             ``3-bert``
HuBERT folder           ``4-cnhubert``, ``5-wav32k`` and ``7-sv_cn`` (written together) and the semantic tokens
speaker model           ``7-sv_cn``
pretrained SoVITS       the semantic tokens
=====================  ==================================================================

The precision used is recorded but a change of precision alone does not invalidate anything.

Batching: BERT runs in batches (padding is masked). HuBERT and the speaker model run one item at a time: the
HuBERT front end normalises over time (group norm) and attends over every frame, the speaker model pools
statistics over time, so zero padding would change their results. The semantic step is batched: ``ssl_proj`` is a
kernel-2 / stride-2 convolution and the quantizer works frame by frame, so padded frames never reach real ones.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gsv_core.errors import AudioError, CheckpointError, GSVError, ModelMismatchError
from gsv_core.fileio import write_bytes_atomic

from .common import TrainingError
from gsv_core import languages
from gsv_core.versions import VERSIONS as VERSION_TABLE, finetune_versions
from gsv_core.fileio import write_json_atomic, write_text_atomic
from gsv_core.formats import listfile

from .layout import DiskFullError, ExperimentLayout, disk_guard

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]

FORMAT = 1
SOVITS_RATE = 32000
SSL_RATE = 16000
MAX_PEAK = 2.2  # upstream drops louder items (float sources only can exceed 1)
PEAK_TARGET = 0.95
MIX_ALPHA = 0.5
WAV_SCALE = 32768.0
HUBERT_SCALE = 1145.14
PRO_VERSIONS = tuple(v for v, m in VERSION_TABLE.items() if m.speaker_embedding)
VERSIONS = finetune_versions()
SEMANTIC_HEADER = "item_name\tsemantic_audio"
DOWNLOAD_HINT = "python -m gsv_core.download"


STEP_TEXT = "text"
STEP_AUDIO = "audio"
STEP_SV = "sv"
STEP_SEMANTIC = "semantic"


class FeatureError(TrainingError):
    """Feature extraction cannot run or produced nothing usable."""


@dataclass(frozen=True)
class FailedItem:
    name: str
    step: str  # text | audio | sv | semantic | list
    reason: str
    source: str = ""  # the .list file and line number, or the audio path


@dataclass
class StepCounts:
    computed: int = 0
    cached: int = 0
    failed: int = 0


@dataclass
class FeatureResult:
    """What a run did. ``usable`` are the names every training stage can use (text, audio, semantic, and SV for
    Pro versions). ``cancelled`` runs leave the tables unwritten; running again continues."""

    version: str
    items: int
    usable: list[str] = field(default_factory=list)
    failed: list[FailedItem] = field(default_factory=list)
    steps: dict[str, StepCounts] = field(default_factory=dict)
    invalidated: list[str] = field(default_factory=list)
    missing_lists: list[str] = field(default_factory=list)
    cancelled: bool = False
    manifest: Path | None = None
    errors_file: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "items": self.items,
            "usable": len(self.usable),
            "failed": [asdict(f) for f in self.failed],
            "steps": {k: asdict(v) for k, v in self.steps.items()},
            "invalidated": list(self.invalidated),
            "missing_lists": list(self.missing_lists),
            "cancelled": self.cancelled,
        }


@dataclass(frozen=True)
class _Item:
    name: str
    path: Path
    speaker: str
    lang: str  # upstream language name (zh, en, ja, ko, yue)
    text: str
    source: str  # "train.list:12"


# ---------------------------------------------------------------------------------------------------------------
# small I/O helpers


def _write_bytes_atomic(data: bytes, path: Path) -> None:
    """Serialised in memory first, so a full disk surfaces as a plain OSError(ENOSPC) from ``write``."""
    write_bytes_atomic(path, data, fsync=False)


def _save_tensor_atomic(tensor: torch.Tensor, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(tensor.detach().cpu().contiguous().clone(), buf)
    _write_bytes_atomic(buf.getvalue(), path)


def _write_wav_int16_atomic(pcm: np.ndarray, sr: int, path: Path) -> None:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, pcm, sr, subtype="PCM_16", format="WAV")
    _write_bytes_atomic(buf.getvalue(), path)


def _load_tensor(path: Path) -> torch.Tensor | None:
    """A cached feature tensor, or None when the file is missing or unreadable (weights-only loading)."""
    if not path.is_file():
        return None
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    return value if isinstance(value, torch.Tensor) else None


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _stat_key(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


class _Journal:
    """Append-only JSON lines keyed by ``name``; the last record of a name wins, a torn last line is ignored."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict] = {}
        if path.is_file():
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(rec, dict) and isinstance(rec.get("name"), str):
                        self.records[rec["name"]] = rec

    def get(self, name: str) -> dict | None:
        return self.records.get(name)

    def add(self, rec: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        with open(self.path, "a+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")  # a killed run left half a line: start on a fresh one
            fh.write(line.encode("utf-8"))
            fh.flush()
        self.records[rec["name"]] = rec

    def drop_all(self) -> None:
        _unlink(self.path)
        self.records.clear()

    def compact(self) -> None:
        """Rewrite with one record per name (atomic)."""
        if not self.records:
            return
        write_text_atomic(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records.values()))


# ---------------------------------------------------------------------------------------------------------------
# fingerprints of model files


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_fingerprint(path: Path, previous: dict | None) -> dict:
    st = path.stat()
    fp = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if previous and previous.get("size") == st.st_size and previous.get("mtime_ns") == st.st_mtime_ns \
            and previous.get("sha256"):
        fp["sha256"] = previous["sha256"]
    else:
        fp["sha256"] = _sha256(path)
    return fp


_FOLDER_FILES = ("config.json", "preprocessor_config.json", "model.safetensors", "pytorch_model.bin",
                 "tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def _folder_fingerprint(folder: Path, previous: dict | None) -> dict:
    prev_files = (previous or {}).get("files", {})
    files = {}
    for name in _FOLDER_FILES:
        p = folder / name
        if p.is_file():
            files[name] = _file_fingerprint(p, prev_files.get(name))
    return {"path": str(folder), "files": files}


def _identity(fp: dict | None) -> Any:
    """What decides whether two fingerprints name the same model (content hashes, not paths or mtimes)."""
    if not fp:
        return None
    if "files" in fp:
        return sorted((k, v["sha256"]) for k, v in fp["files"].items())
    return fp.get("sha256")


# ---------------------------------------------------------------------------------------------------------------
# numerics shared with the tests


def wav32k_mix(wav: np.ndarray, peak: float | None = None, scale: float = WAV_SCALE) -> np.ndarray:
    """Upstream's loudness mix, float32: half peak-normalised to 0.95, half the original, times ``scale``."""
    wav = np.asarray(wav, dtype=np.float32)
    peak = np.float32(np.abs(wav).max() if peak is None else peak)
    return (wav / peak * (PEAK_TARGET * MIX_ALPHA * scale)) + ((1 - MIX_ALPHA) * scale) * wav


def to_pcm16(mix: np.ndarray) -> np.ndarray:
    """Truncate toward zero like numpy's ``astype(int16)``; values beyond int16 are clipped (upstream wraps)."""
    return np.clip(np.trunc(np.asarray(mix, dtype=np.float64)), -32768, 32767).astype(np.int16)


def sinc_resample(wav: torch.Tensor, orig_sr: int, new_sr: int, zeros: int = 6, rolloff: float = 0.99) -> torch.Tensor:
    """Band-limited resampling with a Hann-windowed sinc, the rule of torchaudio's ``Resample`` defaults (which
    upstream's ``2-get-sv.py`` uses): output sample j at time j/new is ``sum_k x[k] h(k/orig - j/new)`` with
    ``h(u) = sinc(pi c u) cos^2(pi c u / (2 zeros)) c / orig`` for ``|c u| <= zeros`` (``c = min(orig, new) *
    rolloff``, rates reduced by their gcd), the filter built in float64 and applied in float32; output length
    ``ceil(T * new / orig)``. ``wav`` is [T] or [B, T]."""
    squeeze = wav.dim() == 1
    x = wav[None] if squeeze else wav
    if orig_sr == new_sr:
        return wav.clone()
    g = math.gcd(int(orig_sr), int(new_sr))
    orig, new = int(orig_sr) // g, int(new_sr) // g
    cutoff = min(orig, new) * rolloff
    reach = math.ceil(zeros * orig / cutoff)
    offsets = torch.arange(-reach, reach + orig, dtype=torch.float64) / orig  # input positions rel. to a block
    phases = torch.arange(new, dtype=torch.float64)[:, None] / new  # output positions inside a block
    u = ((offsets[None, :] - phases) * cutoff).clamp(-zeros, zeros)
    window = torch.cos(u * (math.pi / (2 * zeros))) ** 2
    arg = u * math.pi
    sinc = torch.where(arg == 0, torch.ones_like(arg), torch.sin(arg) / torch.where(arg == 0, torch.ones_like(arg), arg))
    kernel = (sinc * window * (cutoff / orig)).to(torch.float32)[:, None, :].to(x.device, x.dtype)
    length = x.shape[-1]
    padded = F.pad(x[:, None, :], (reach, reach + orig))
    out = F.conv1d(padded, kernel, stride=orig)  # [B, new, blocks]
    out = out.transpose(1, 2).reshape(x.shape[0], -1)[:, : math.ceil(new * length / orig)]
    return out[0] if squeeze else out


# ---------------------------------------------------------------------------------------------------------------
# the list files


def read_split_lists(layout: ExperimentLayout, lists: Sequence[str]) -> tuple[list[_Item], list[FailedItem], list[str]]:
    """Items of the given splits in order (a name listed twice for the same audio is kept once), malformed lines
    and unsupported languages as failures, and the names of split files that do not exist."""
    items: list[_Item] = []
    failed: list[FailedItem] = []
    missing: list[str] = []
    seen: dict[str, _Item] = {}
    for split in lists:
        path = layout.split_list(split)
        if not path.is_file():
            missing.append(split)
            continue
        try:
            parsed = listfile.read_list(path, strict=False)
        except listfile.ListFormatError as exc:
            raise FeatureError(f"{exc}. Run the data stage again.") from None
        broken = [p for p in parsed.problems if p.kind not in ("unknown_language", "empty_text")]
        if broken:
            raise FeatureError(f"{path} line {broken[0].line}: {broken[0].reason}: {broken[0].raw[:80]!r}. Fix the "
                               "line or run the data stage again.")
        for row in parsed.rows:
            number, speaker, code, text = row.line, row.speaker, row.lang_code, row.text
            where = f"{path.name}:{number}"
            raw_path = row.audio
            name = os.path.basename(raw_path)
            if not name:
                raise FeatureError(f"{path} line {number}: empty audio path")
            audio = Path(raw_path).expanduser()
            if not audio.is_absolute():
                audio = (path.parent / audio).resolve()
            if name in seen:
                if seen[name].path != audio:
                    raise FeatureError(
                        f"{where}: the audio name {name!r} is used by two files ({seen[name].path} in "
                        f"{seen[name].source} and {audio}); utterances are keyed by file name, so rename one")
                continue
            lang = languages.list_code_to_language(code)
            if lang is None:
                failed.append(FailedItem(name, "list", f"language {code!r} is not one GPT-SoVITS trains on "
                                         f"(use ZH, EN, JA, KO or YUE)", where))
                continue
            if lang not in languages.IMPLEMENTED:
                failed.append(FailedItem(name, "list", f"language {code!r} has no text front end in this "
                                         "installation", where))
                continue
            item = _Item(name, audio, speaker, lang, text, where)
            seen[name] = item
            items.append(item)
    return items, failed, missing


# ---------------------------------------------------------------------------------------------------------------
# model checks


def _check_models(version: str, bert_dir: Path, hubert_dir: Path, pretrained_s2g: Path, sv_path: Path | None) -> None:
    from gsv_core.features.bert import REQUIRED_FILES as BERT_REQ, TOKENIZER_FILES, WEIGHT_FILES as BERT_W
    from gsv_core.features.hubert import REQUIRED_FILES as HUB_REQ, WEIGHT_FILES as HUB_W

    def folder(p: Path, what: str, key: str, required: Iterable[str], alternatives: Iterable[tuple[str, ...]]):
        if not p.is_dir():
            raise FeatureError(f"{what} folder not found: {p}. Download it with `{DOWNLOAD_HINT} {key}` "
                               f"(or point the setting/argument at the folder).")
        missing = [n for n in required if not (p / n).is_file()]
        missing += [" or ".join(alt) for alt in alternatives if not any((p / n).is_file() for n in alt)]
        if missing:
            raise FeatureError(f"{what} folder {p} is incomplete: missing {', '.join(missing)}. "
                               f"Download it again with `{DOWNLOAD_HINT} {key}`.")

    folder(bert_dir, "BERT (chinese-roberta-wwm-ext-large)", "bert", BERT_REQ, (BERT_W, TOKENIZER_FILES))
    folder(hubert_dir, "HuBERT (chinese-hubert-base)", "hubert", HUB_REQ, (HUB_W,))
    if not pretrained_s2g.is_file():
        raise FeatureError(f"pretrained SoVITS generator not found: {pretrained_s2g}. Download the {version} "
                           f"pretrained weights with `{DOWNLOAD_HINT} {version}`.")
    if version in PRO_VERSIONS:
        if sv_path is None or not Path(sv_path).is_file():
            raise FeatureError(f"speaker model (ERes2NetV2) not found: {sv_path}; {version} needs it. Download it "
                               f"with `{DOWNLOAD_HINT} sv`.")


# ---------------------------------------------------------------------------------------------------------------
# the extractor


class _Extractor:
    def __init__(self, layout, version, bert_dir, hubert_dir, pretrained_s2g, sv_path, device, dtype, batch_size,
                 use_g2pw, progress, cancel, n_steps):
        self.layout = layout
        self.version = version
        self.bert_dir = bert_dir
        self.hubert_dir = hubert_dir
        self.pretrained_s2g = pretrained_s2g
        self.sv_path = sv_path
        self.device = device
        self.dtype = dtype
        self.batch_size = max(1, int(batch_size))
        self.use_g2pw = use_g2pw
        self.progress = progress
        self.cancel = cancel
        self.n_steps = n_steps
        self.step_index = 0
        self.failed: dict[str, FailedItem] = {}
        state = layout.root / ".features"
        self.text_journal = _Journal(state / "text.jsonl")
        self.audio_journal = _Journal(state / "audio.jsonl")
        self.semantic_journal = _Journal(state / "semantic.jsonl")
        self.counts: dict[str, StepCounts] = {}
        self.sovits = None  # loaded (and its version checked) before any work starts

    # -- progress / cancel ------------------------------------------------------------------------------------
    def report(self, done: int, total: int, message: str) -> None:
        if self.progress is None:
            return
        frac = (self.step_index + (done / total if total else 1.0)) / self.n_steps
        self.progress(min(1.0, max(0.0, frac)), message)

    def cancelled(self) -> bool:
        return bool(self.cancel is not None and self.cancel())

    def fail(self, item: _Item, step: str, reason: str) -> None:
        self.failed[item.name] = FailedItem(item.name, step, reason, item.source)
        self.counts[step].failed += 1

    # -- step 1: text + BERT ----------------------------------------------------------------------------------
    def frontend_id(self) -> str:
        from gsv_core.text.symbols import normalize_symbol_version

        return f"{normalize_symbol_version(self.version)}|g2pw={int(self._g2pw_active())}"

    def _g2pw_active(self) -> bool:
        from gsv_core.text.symbols import normalize_symbol_version

        if not self.use_g2pw or normalize_symbol_version(self.version) != "v2":
            return False
        from gsv_core.text.zh.g2pw import active_g2pw

        return active_g2pw() is not None

    def _clean(self, item: _Item) -> tuple[list[str], list[int] | None, str]:
        """Upstream's 1-get-text: the row read entirely in its language's front end (BERT for Chinese only)."""
        from gsv_core.text import clean_text

        text = item.text.replace("%", "-").replace("￥", ",")
        phones, word2ph, norm = clean_text(text, item.lang, self.version, use_g2pw=self.use_g2pw)
        return list(phones), (None if word2ph is None else [int(k) for k in word2ph]), norm

    def step_text(self, items: list[_Item], frontend: str) -> bool:
        counts = self.counts.setdefault(STEP_TEXT, StepCounts())
        bert_todo: list[tuple[_Item, dict]] = []
        for i, item in enumerate(items):
            if self.cancelled():
                return False
            key = hashlib.sha1(f"{frontend}\0{item.lang}\0{item.text}".encode("utf-8")).hexdigest()
            rec = self.text_journal.get(item.name)
            bert_path = self.layout.bert_dir / f"{item.name}.pt"
            if rec is not None and rec.get("key") == key:
                if item.lang == "zh" and not self._bert_valid(bert_path, len(rec["phones"])):
                    bert_todo.append((item, rec))
                else:
                    counts.cached += 1
            else:
                _unlink(bert_path)
                try:
                    phones, word2ph, norm = self._clean(item)
                    if not phones:
                        raise GSVError("the text gives no phones")
                except GSVError as exc:
                    self.fail(item, STEP_TEXT, f"text cannot be read: {exc}")
                    continue
                rec = {"name": item.name, "key": key, "lang": item.lang, "phones": phones, "word2ph": word2ph,
                       "norm_text": norm}
                with disk_guard("writing the text features"):
                    self.text_journal.add(rec)
                if item.lang == "zh":
                    bert_todo.append((item, rec))
                else:
                    counts.computed += 1
            self.report(i + 1, len(items) + len(bert_todo), f"text {i + 1}/{len(items)}")
        if not bert_todo:
            return True
        bert = self._load(lambda: self._load_bert())
        done = len(items)
        total = len(items) + len(bert_todo)
        for start in range(0, len(bert_todo), self.batch_size):
            if self.cancelled():
                return False
            chunk = bert_todo[start : start + self.batch_size]
            try:
                with torch.inference_mode():
                    feats = bert.phone_features_batch([(rec["norm_text"], rec["word2ph"]) for _, rec in chunk])
            except GSVError:
                feats = []
                for item, rec in chunk:  # find the culprit(s): one by one
                    try:
                        with torch.inference_mode():
                            feats.append(bert.phone_features(rec["norm_text"], rec["word2ph"]))
                    except GSVError as exc:
                        feats.append(exc)
            for (item, rec), feat in zip(chunk, feats):
                if isinstance(feat, Exception):
                    self.fail(item, STEP_TEXT, f"BERT features cannot be computed: {feat}")
                    continue
                if feat.shape[-1] != len(rec["phones"]):
                    self.fail(item, STEP_TEXT, f"BERT gave {feat.shape[-1]} phone rows for {len(rec['phones'])} phones")
                    continue
                with disk_guard("writing BERT features"):
                    _save_tensor_atomic(feat.to("cpu"), self.layout.bert_dir / f"{item.name}.pt")
                counts.computed += 1
            done += len(chunk)
            self.report(done, total, f"BERT {done - len(items)}/{len(bert_todo)}")
        return True

    def _bert_valid(self, path: Path, n_phones: int) -> bool:
        t = _load_tensor(path)
        return t is not None and t.dim() == 2 and t.shape[1] == n_phones

    # -- models --------------------------------------------------------------------------------------------------
    def _load(self, build):
        try:
            return build()
        except FeatureError:
            raise
        except (CheckpointError, ModelMismatchError) as exc:
            raise FeatureError(f"{exc} (download the official files with `{DOWNLOAD_HINT}`)") from exc

    def _load_bert(self):
        from gsv_core.loading import load_bert

        return load_bert(self.bert_dir, self.device, self.dtype)

    def _load_hubert(self):
        from gsv_core.loading import load_hubert

        return load_hubert(self.hubert_dir, self.device, self.dtype)

    def _load_sv(self):
        from gsv_core.loading import load_speaker_encoder

        return load_speaker_encoder(self.sv_path, self.device, self.dtype)

    def load_sovits(self):
        from gsv_core.loading import load_sovits

        model, info = self._load(lambda: load_sovits(self.pretrained_s2g, self.device, self.dtype))
        if info.version != self.version:
            raise FeatureError(
                f"the pretrained SoVITS file {self.pretrained_s2g} is a {info.version} model, but the experiment is "
                f"{self.version}: use the {self.version} pretrained generator (`{DOWNLOAD_HINT} {self.version}`) or "
                f"change the experiment's version")
        return model

    # -- step 2: wav32k + HuBERT -----------------------------------------------------------------------------------
    def _audio_key(self, item: _Item) -> str | None:
        try:
            return f"{item.path}|{_stat_key(item.path)}"
        except OSError:
            return None

    def audio_done(self, item: _Item) -> bool:
        rec = self.audio_journal.get(item.name)
        if rec is None or rec.get("src") != self._audio_key(item):
            return False
        wav = self.layout.wav32k_dir / item.name
        hub = self.layout.hubert_dir / f"{item.name}.pt"
        return wav.is_file() and hub.is_file() and rec.get("hub") == _stat_key(hub) and rec.get("wav") == _stat_key(wav)

    def step_audio(self, items: list[_Item]) -> bool:
        counts = self.counts.setdefault(STEP_AUDIO, StepCounts())
        hubert = None
        nan_items: list[_Item] = []
        for i, item in enumerate(items):
            if self.cancelled():
                return False
            self.report(i, len(items), f"HuBERT / 32 kHz {i + 1}/{len(items)}")
            if self.audio_done(item):
                counts.cached += 1
                continue
            for stale in (self.layout.wav32k_dir / item.name, self.layout.hubert_dir / f"{item.name}.pt",
                          self.layout.sv_dir / f"{item.name}.pt"):
                _unlink(stale)
            if hubert is None:
                hubert = self._load(self._load_hubert)
            status = self._audio_item(item, hubert)
            if status == "nan":
                nan_items.append(item)
        if nan_items:
            if self.dtype != torch.float32:
                hubert = hubert.float()  # upstream: redo NaN items with the model in float32
            for item in nan_items:
                if self.cancelled():
                    return False
                if self._audio_item(item, hubert) == "nan":
                    self.fail(item, STEP_AUDIO, "HuBERT features are NaN even in float32")
        self.report(len(items), len(items), "HuBERT / 32 kHz done")
        return True

    def _audio_item(self, item: _Item, hubert) -> str:
        from gsv_core.audio import load_audio, resample

        counts = self.counts[STEP_AUDIO]
        try:
            wav, _ = load_audio(item.path, SOVITS_RATE)
            src = self._audio_key(item)
        except AudioError as exc:
            self.fail(item, STEP_AUDIO, str(exc))
            return "failed"
        peak = float(np.abs(wav).max())
        if peak > MAX_PEAK:
            self.fail(item, STEP_AUDIO, f"peak {peak:.3f} exceeds {MAX_PEAK} (filtered as upstream does)")
            return "failed"
        if peak == 0.0:
            self.fail(item, STEP_AUDIO, "the audio is digital silence")
            return "failed"
        mix32 = wav32k_mix(wav, peak, WAV_SCALE)
        mix_ssl = wav32k_mix(wav, peak, HUBERT_SCALE)
        wav16 = resample(mix_ssl, SOVITS_RATE, SSL_RATE)
        try:
            with torch.inference_mode():
                ssl = hubert.raw_features(torch.from_numpy(wav16)).cpu()
        except AudioError as exc:
            self.fail(item, STEP_AUDIO, f"too short for HuBERT: {exc}")
            return "failed"
        if torch.isnan(ssl).any():
            return "nan"
        wav_path = self.layout.wav32k_dir / item.name
        hub_path = self.layout.hubert_dir / f"{item.name}.pt"
        with disk_guard("writing the 32 kHz audio and HuBERT features"):
            _write_wav_int16_atomic(to_pcm16(mix32), SOVITS_RATE, wav_path)
            _save_tensor_atomic(ssl, hub_path)
            self.audio_journal.add({"name": item.name, "src": src, "wav": _stat_key(wav_path),
                                    "hub": _stat_key(hub_path)})
        counts.computed += 1
        return "ok"

    # -- step 3: speaker vectors (Pro) -----------------------------------------------------------------------------
    def step_sv(self, items: list[_Item]) -> bool:
        import soundfile as sf

        counts = self.counts.setdefault(STEP_SV, StepCounts())
        speaker = None
        for i, item in enumerate(items):
            if self.cancelled():
                return False
            self.report(i, len(items), f"speaker vectors {i + 1}/{len(items)}")
            path = self.layout.sv_dir / f"{item.name}.pt"
            t = _load_tensor(path)
            if t is not None and t.dim() == 2 and t.shape[0] == 1:
                counts.cached += 1
                continue
            _unlink(path)
            if speaker is None:
                speaker = self._load(self._load_sv)
            pcm, sr = sf.read(self.layout.wav32k_dir / item.name, dtype="int16", always_2d=False)
            if sr != SOVITS_RATE:
                self.fail(item, STEP_SV, f"{item.name} in 5-wav32k is {sr} Hz, expected {SOVITS_RATE}")
                continue
            wav32 = torch.from_numpy(pcm.astype(np.float32) / WAV_SCALE)
            wav16 = sinc_resample(wav32[None], SOVITS_RATE, SSL_RATE)
            try:
                with torch.inference_mode():
                    emb = speaker(wav16).cpu()
            except (AudioError, RuntimeError) as exc:
                self.fail(item, STEP_SV, f"speaker vector cannot be computed: {exc}")
                continue
            with disk_guard("writing speaker vectors"):
                _save_tensor_atomic(emb, path)
            counts.computed += 1
        self.report(len(items), len(items), "speaker vectors done")
        return True

    # -- step 4: semantic tokens ------------------------------------------------------------------------------------
    def step_semantic(self, items: list[_Item]) -> bool:
        counts = self.counts.setdefault(STEP_SEMANTIC, StepCounts())
        todo: list[_Item] = []
        for item in items:
            rec = self.semantic_journal.get(item.name)
            hub = self.layout.hubert_dir / f"{item.name}.pt"
            if rec is not None and rec.get("hub") == _stat_key(hub):
                counts.cached += 1
            else:
                todo.append(item)
        if not todo:
            self.report(1, 1, "semantic tokens done")
            return True
        model = self.sovits if self.sovits is not None else self.load_sovits()
        p = model.ssl_proj.weight
        for start in range(0, len(todo), self.batch_size):
            if self.cancelled():
                return False
            chunk = []
            for item in todo[start : start + self.batch_size]:
                hub = self.layout.hubert_dir / f"{item.name}.pt"
                t = _load_tensor(hub)
                if t is None or t.dim() != 3 or t.shape[0] != 1:
                    _unlink(hub)
                    self.fail(item, STEP_SEMANTIC, f"cached HuBERT file {hub} is unreadable; it was removed, "
                                                   "run again to recompute it")
                    continue
                chunk.append((item, t, _stat_key(hub)))
            if not chunk:
                continue
            longest = max(t.shape[-1] for _, t, _ in chunk)
            batch = torch.zeros(len(chunk), chunk[0][1].shape[1], longest, dtype=p.dtype)
            for j, (_, t, _) in enumerate(chunk):
                batch[j, :, : t.shape[-1]] = t[0].to(p.dtype)
            with torch.inference_mode():
                codes = model.extract_latent(batch.to(p.device)).cpu()
            for j, (item, t, hub_key) in enumerate(chunk):
                tokens = codes[j, 0, : t.shape[-1] // 2].tolist()
                with disk_guard("writing semantic tokens"):
                    self.semantic_journal.add({"name": item.name, "hub": hub_key,
                                               "tokens": " ".join(str(int(v)) for v in tokens)})
                counts.computed += 1
            self.report(min(start + self.batch_size, len(todo)), len(todo), f"semantic tokens {start + len(chunk)}/{len(todo)}")
        return True

    # -- tables ------------------------------------------------------------------------------------------------------
    def write_tables(self, items: list[_Item], frontend: str) -> None:
        lines = []
        for item in items:
            rec = self.text_journal.get(item.name)
            if rec is None or item.name in self.failed and self.failed[item.name].step == STEP_TEXT:
                continue
            word2ph = rec["word2ph"]
            lines.append("%s\t%s\t%s\t%s" % (item.name, " ".join(rec["phones"]),
                                             None if word2ph is None else list(word2ph), rec["norm_text"]))
        sem = [SEMANTIC_HEADER]
        for item in items:
            rec = self.semantic_journal.get(item.name)
            if rec is not None and item.name not in self.failed:
                sem.append(f"{item.name}\t{rec['tokens']}")
        with disk_guard("writing 2-name2text.txt and 6-name2semantic.tsv"):
            write_text_atomic(self.layout.name2text, "\n".join(lines) + "\n")
            write_text_atomic(self.layout.name2semantic, "\n".join(sem) + "\n")
            for journal in (self.text_journal, self.audio_journal, self.semantic_journal):
                journal.compact()


def _clear_dir(folder: Path, suffix: str | None = None) -> None:
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.is_file() and (suffix is None or p.name.endswith(suffix)):
            p.unlink()


def extract_features(
    layout: ExperimentLayout,
    *,
    version: str,
    bert_dir: str | os.PathLike,
    hubert_dir: str | os.PathLike,
    pretrained_s2g: str | os.PathLike,
    sv_path: str | os.PathLike | None = None,
    lists: Sequence[str] = ("train", "val", "test"),
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 8,
    use_g2pw: bool | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> FeatureResult:
    """Run upstream's four preparation steps over the split lists of ``layout`` (see the module docstring).

    ``sv_path`` is required for v2Pro/v2ProPlus; ``use_g2pw`` None = on (when G2PW is configured).
    Raises :class:`FeatureError` for missing models, a wrong pretrained version, unusable lists or when nothing
    usable remains; :class:`DiskFullError` when the disk fills (everything written so far is kept)."""
    from gsv_core.device import resolve_device, resolve_dtype

    if version not in VERSIONS:
        raise FeatureError(f"unsupported version {version!r}: use one of {', '.join(VERSIONS)}")
    pro = version in PRO_VERSIONS
    if sv_path is None and pro:
        raise FeatureError(f"{version} needs the speaker model (ERes2NetV2): pass its path (SV_PATH); run "
                           f"`{DOWNLOAD_HINT} sv` to fetch it")
    if use_g2pw is None:
        use_g2pw = True
    bert_dir, hubert_dir, pretrained_s2g = Path(bert_dir).expanduser(), Path(hubert_dir).expanduser(), \
        Path(pretrained_s2g).expanduser()
    sv_path = Path(sv_path).expanduser() if sv_path is not None else None
    _check_models(version, bert_dir, hubert_dir, pretrained_s2g, sv_path)
    dev = resolve_device(device)
    dtype = resolve_dtype(precision, dev)

    items, list_failures, missing = read_split_lists(layout, lists)
    if not items and len(missing) == len(lists):
        raise FeatureError(f"no split list found in {layout.data_dir} ({', '.join(f'{s}.list' for s in lists)}): "
                           "run the data stage first")
    n_steps = 4 if pro else 3
    ex = _Extractor(layout, version, bert_dir, hubert_dir, pretrained_s2g, sv_path, dev, dtype, batch_size,
                    use_g2pw, progress, cancel, n_steps)
    for f in list_failures:
        ex.failed[f.name] = f
    result = FeatureResult(version=version, items=len(items) + len(list_failures), missing_lists=missing,
                           manifest=layout.features_manifest, errors_file=layout.root / "features_errors.json")

    # -- manifest: compare the models with the previous run and invalidate what depends on changed ones -------------
    old: dict = {}
    if layout.features_manifest.is_file():
        try:
            old = json.loads(layout.features_manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
    old_models = old.get("models", {}) if isinstance(old, dict) else {}
    layout.root.mkdir(parents=True, exist_ok=True)
    models = {
        "bert": _folder_fingerprint(bert_dir, old_models.get("bert")),
        "hubert": _folder_fingerprint(hubert_dir, old_models.get("hubert")),
        "pretrained_s2g": _file_fingerprint(pretrained_s2g, old_models.get("pretrained_s2g")),
    }
    if pro:
        models["sv"] = _file_fingerprint(sv_path, old_models.get("sv"))
    frontend = ex.frontend_id() if any(i.lang == "zh" for i in items) else old.get("frontend", ex.frontend_id())
    with disk_guard("updating the feature caches"):
        if old:
            changed = lambda key: key in old_models and _identity(old_models.get(key)) != _identity(models.get(key))
            if old.get("frontend") not in (None, frontend):
                ex.text_journal.drop_all()
                _clear_dir(layout.bert_dir, ".pt")
                result.invalidated += ["text", "bert"]
            if changed("bert") and "bert" not in result.invalidated:
                _clear_dir(layout.bert_dir, ".pt")
                result.invalidated.append("bert")
            if changed("hubert"):
                _clear_dir(layout.hubert_dir, ".pt")
                ex.audio_journal.drop_all()  # wav32k files are redone with them (cheap, and keeps records simple)
                ex.semantic_journal.drop_all()
                result.invalidated += ["hubert", "semantic"]
            if changed("sv"):
                _clear_dir(layout.sv_dir, ".pt")
                result.invalidated.append("sv")
            if changed("pretrained_s2g") and "semantic" not in result.invalidated:
                ex.semantic_journal.drop_all()
                result.invalidated.append("semantic")
        manifest = {"format": FORMAT, "version": version, "frontend": frontend, "device": str(dev),
                    "precision": str(dtype).removeprefix("torch."), "models": models, "complete": False}
        write_json_atomic(layout.features_manifest, manifest)

    # -- the steps ----------------------------------------------------------------------------------------------------
    ex.sovits = ex.load_sovits()  # a wrong pretrained version fails now, not after hours of HuBERT
    def finish_cancelled() -> FeatureResult:
        result.cancelled = True
        result.failed = list(ex.failed.values())
        result.steps = ex.counts
        return result

    if not ex.step_text(items, frontend):
        return finish_cancelled()
    ex.step_index += 1
    if not ex.step_audio(items):
        return finish_cancelled()
    ex.step_index += 1
    with_audio = [i for i in items if i.name not in ex.failed and ex.audio_done(i)]
    if pro:
        if not ex.step_sv(with_audio):
            return finish_cancelled()
        ex.step_index += 1
    if not ex.step_semantic([i for i in with_audio if i.name not in ex.failed]):
        return finish_cancelled()
    ex.step_index += 1

    result.failed = list(ex.failed.values())
    result.steps = ex.counts
    result.usable = [i.name for i in items if i.name not in ex.failed and ex.text_journal.get(i.name) is not None
                     and ex.semantic_journal.get(i.name) is not None]
    with disk_guard("writing the feature tables"):
        write_json_atomic(result.errors_file, {"failed": [asdict(f) for f in result.failed]})
        if not result.usable:
            reasons = "; ".join(f"{f.name}: {f.reason}" for f in result.failed[:5])
            raise FeatureError(f"no usable utterance after feature extraction ({len(result.failed)} failed"
                               f"{': ' + reasons if reasons else ''}); see {result.errors_file}")
        ex.write_tables(items, frontend)
        manifest.update({"complete": True, "items": result.items, "usable": len(result.usable),
                         "failed": len(result.failed)})
        write_json_atomic(layout.features_manifest, manifest)
    if progress is not None:
        progress(1.0, f"features ready: {len(result.usable)} usable, {len(result.failed)} failed")
    return result


__all__ = ["FeatureError", "FeatureResult", "FailedItem", "StepCounts", "extract_features", "read_split_lists",
           "sinc_resample", "wav32k_mix", "to_pcm16", "DiskFullError"]
