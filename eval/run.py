"""The evaluation loop: test CSV + systems -> TTS -> ASR -> metrics per utterance, into a resumable run folder.

A run folder (``RUN_DIR``) holds::

    config.json      the run configuration (what ``python -m eval run --config`` reads back: reproducible), plus
                     ``similarity_scorer`` (which speaker model the similarity numbers come from)
    results.jsonl    one line per finished utterance (system, id, sample), every try included
    audio/SYSTEM/    ID_sK_tT.wav, one file per try (external audio: a copy of the file the test CSV names)

Every finished utterance is appended (and flushed) at once, so an interrupted run started again on the same folder
skips what is done and never writes a duplicate. A re-roll rule (max error rate and/or min speaker similarity,
up to ``max_tries``) regenerates a failing utterance with a new, recorded seed; the chosen try is the first that
passes, else the one with the lowest error rate.

Per utterance: CER/WER fields (:func:`eval.metrics.score_fields`, optionally with the seed-tts-eval numbers), signal
metrics and pauses, speaker similarity (:mod:`eval.similarity`, labelled with the scorer's name), F0/energy
alignment to the reference audio (``vs_ref_*``) and to the baseline system's utterance of the same sentence
(``vs_base_*``, :mod:`eval.prosody`).

**External audio**: a test CSV column ``audio:NAME`` holds audio files of system NAME (upstream's outputs, another
engine's, recordings); a system ``{name: NAME, external: true}`` (added automatically by the CLI and the Eval tab
for every such column) is scored from those files without synthesis. ASR transcripts are cached per audio content
(:mod:`eval.asrcache`), so a rerun or a re-scoring with other options never transcribes a file twice.

**Punctuation variants**: ``variants`` expands every test row into :func:`eval.variants.punctuation_variants`
(ids ``<id>__<variant>``); the report then shows the CER/duration/pause deltas per variant.

No gradio here: the Eval tab and ``python -m eval`` both call :class:`EvalRunner`.
"""
from __future__ import annotations

import csv
import io
import dataclasses
import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from gsv_core import languages
from gsv_core.engine.request import PARAMETERS, RequestError, SynthesisRequest
from gsv_core.errors import GSVError
from gsv_core.fileio import write_json_atomic

ProgressFn = Callable[[float, str], Any]

#: engine parameters a system may set: every synthesis parameter but those each utterance brings (text, language,
#: seed), those a system names itself (models, reference, aux references in the system's own keys) and frozen
#: semantic tokens (they belong to one utterance's earlier take, not to a system)
SYSTEM_PARAMS = tuple(n for n in PARAMETERS if n not in ("text", "text_lang", "seed", "id", "gpt_path", "sovits_path",
                                                        "ref_audio", "ref_text", "semantic_tokens"))
#: system parameters that name one audio file
PATH_PARAMS = ("sv_ref",)
#: ASR options a run may set besides the model folder and language
ASR_PARAMS = ("vad_filter", "beam_size", "device", "compute_type", "max_new_tokens", "temperature")
CSV_COLUMNS = ("id", "text", "ref_audio", "ref_text", "lang")
#: a test CSV column ``audio:NAME`` holds the audio of system NAME (scored without synthesis)
AUDIO_COLUMN_PREFIX = "audio:"
_NAME_RE = r"[\w\-.]+"
#: keys of config.json that describe a run but are not settings (read back and ignored)
INFO_KEYS = ("similarity_scorer",)
#: the similarity model of a run folder written before similarity models existed
LEGACY_SIMILARITY_MODEL = "eres2netv2-forward3"
#: comparison fields that mean something against audio of a *different* text (the reference prompt); the others
#: (contour DTW, MFCC-aligned F0, voicing agreement) need the same sentence and are only kept against the baseline
#: or a reference whose transcript is the sentence itself
TEXT_FREE_PROSODY_FIELDS = ("f0_mean_diff_st", "f0_std_diff_st", "f0_var_ratio", "voiced_ratio_diff", "energy_w1_db",
                            "energy_w1_centered_db", "energy_mean_diff_db", "energy_std_diff_db", "n_voiced",
                            "n_voiced_ref")


class EvalError(GSVError):
    """A user-caused evaluation failure (bad config, bad run folder)."""


class CSVFormatError(EvalError):
    """A malformed test CSV; the message lists every bad row with its line number."""


class EvalCancelled(EvalError):
    """The run was cancelled; finished utterances are kept in results.jsonl and a rerun resumes."""


# ----------------------------------------------------------------------------------------------------------------
# inputs

@dataclass
class TestItem:
    id: str
    text: str
    ref_audio: str = ""
    ref_text: str = ""
    lang: str = "zh"
    line: int = 0
    audio: dict = field(default_factory=dict)  # system name -> audio file (external audio columns)
    base_id: str = ""  # punctuation variants: the original row's id and the variant's name
    variant: str = ""


def audio_column_systems(header: list[str]) -> list[str]:
    """System names of the ``audio:NAME`` columns of a test CSV header (in column order)."""
    return [h[len(AUDIO_COLUMN_PREFIX):] for h in header if h.startswith(AUDIO_COLUMN_PREFIX)]


def _header_key(raw: str) -> str:
    h = raw.strip()
    if h.lower().startswith(AUDIO_COLUMN_PREFIX):
        return AUDIO_COLUMN_PREFIX + h[len(AUDIO_COLUMN_PREFIX):].strip()  # the system name keeps its case
    return h.lower()


def read_test_csv(path: str | os.PathLike, default_lang: str = "zh",
                  check_path: Optional[Callable[[str, str], Any]] = None) -> list[TestItem]:
    """Rows of a test CSV (columns id, text, optional ref_audio, ref_text, lang and ``audio:NAME`` columns of external
    audio per system; an empty audio cell: that system has no output for the row). Relative audio paths are taken
    relative to the CSV's folder. Every problem is collected and raised as one :class:`CSVFormatError`.

    ``check_path(path, what)`` (the app's path policy, e.g. :func:`gsv_core.paths.check_readable`) is applied to
    every audio path the CSV names; a refusal is reported as that row's problem."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CSVFormatError(f"test CSV not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CSVFormatError(f"{path} is not UTF-8 text: {exc}") from None
    # strict: a quote that never closes is an error naming its line, not every following row merged into one cell
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for row in reader:
            records.append((start, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise CSVFormatError(f"{path.name}: line {start}: {exc} (a quote opened there is never closed?)") from None
    if not records:
        raise CSVFormatError(f"{path} is empty: it needs a header row with the columns id and text")
    header = [_header_key(h) for h in records[0][1]]
    missing = [c for c in ("id", "text") if c not in header]
    if missing:
        raise CSVFormatError(f"{path}: missing column(s) {', '.join(missing)} (header is {', '.join(header) or 'empty'};"
                             f" expected {', '.join(CSV_COLUMNS)}, the last three optional)")
    unknown = [h for h in header if h not in CSV_COLUMNS and not h.startswith(AUDIO_COLUMN_PREFIX)]
    if unknown:
        raise CSVFormatError(f"{path}: unknown column(s) {', '.join(unknown)} (allowed: {', '.join(CSV_COLUMNS)} and "
                             f"{AUDIO_COLUMN_PREFIX}SYSTEM columns of existing audio)")
    bad_names = [h for h in audio_column_systems(header) if not re.fullmatch(_NAME_RE, h)]
    if bad_names:
        raise CSVFormatError(f"{path}: audio column(s) {', '.join(AUDIO_COLUMN_PREFIX + n for n in bad_names)} need "
                             "a system name of letters, digits, '_', '-' and '.'")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise CSVFormatError(f"{path}: duplicate column(s) {', '.join(dup)}")
    items: list[TestItem] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for line, row in records[1:]:
        if len(row) > len(header):
            problems.append(f"line {line}: {len(row)} fields but the header has {len(header)}")
            continue
        cells = {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header)}
        if not any(cells.values()):
            problems.append(f"line {line}: empty row")
            continue
        bad = []
        rid = cells.get("id", "")
        if not rid:
            bad.append("empty id")
        elif not re.fullmatch(r"[\w\-.]+", rid):
            bad.append(f"id {rid!r} may only hold letters, digits, '_', '-' and '.'")
        elif rid in seen:
            bad.append(f"duplicate id {rid!r} (first on line {seen[rid]})")
        if not cells.get("text"):
            bad.append("empty text")
        lang = (cells.get("lang") or default_lang).strip().lower()
        try:
            languages.mode(lang)
        except languages.LanguageError as exc:
            bad.append(str(exc).replace("unknown language", "unknown lang"))
        def allowed(p: Path, what: str) -> bool:
            if check_path is None:
                return True
            try:
                check_path(str(p), what)
            except GSVError as exc:
                bad.append(str(exc))
                return False
            return True

        ref = cells.get("ref_audio", "")
        if ref:
            ref_path = Path(ref).expanduser()
            if not ref_path.is_absolute():
                ref_path = path.parent / ref_path
            if not allowed(ref_path, "reference audio"):
                pass
            elif not ref_path.is_file():
                bad.append(f"reference audio not found: {ref_path}")
            ref = str(ref_path)
        elif cells.get("ref_text"):
            bad.append("ref_text given without ref_audio")
        audio = {}
        for system in audio_column_systems(header):
            cell = cells.get(AUDIO_COLUMN_PREFIX + system, "")
            if not cell:
                continue
            p = Path(cell).expanduser()
            if not p.is_absolute():
                p = path.parent / p
            if not allowed(p, f"audio of system {system}"):
                pass
            elif not p.is_file():
                bad.append(f"audio of system {system} not found: {p}")
            audio[system] = str(p)
        if bad:
            problems.append(f"line {line}: " + "; ".join(bad))
        if rid and rid not in seen:
            seen[rid] = line
        if not bad:
            items.append(TestItem(rid, cells["text"], ref, cells.get("ref_text", ""), lang, line, audio))
    if problems:
        raise CSVFormatError(f"{path} has {len(problems)} bad row(s):\n" + "\n".join(problems))
    if not items:
        raise CSVFormatError(f"{path} has no test rows")
    return items


@dataclass
class SystemConfig:
    name: str
    gpt: str
    sovits: str
    ref_audio: str = ""
    ref_text: str = ""
    params: dict = field(default_factory=dict)
    external: bool = False  # audio from the test CSV's ``audio:<name>`` column, not synthesised

    @property
    def audio_column(self) -> str:
        return AUDIO_COLUMN_PREFIX + self.name


@dataclass
class RerollRule:
    max_error_rate: Optional[float] = None  # CER/WER above this fails
    min_similarity: Optional[float] = None  # speaker similarity below this fails
    max_tries: int = 1  # 1 = no re-roll

    def passes(self, rec: dict) -> bool:
        if self.max_error_rate is not None and (rec.get("error_rate") is None
                                                or rec["error_rate"] > self.max_error_rate):
            return False
        if self.min_similarity is not None and rec.get("similarity") is not None \
                and rec["similarity"] < self.min_similarity:
            return False
        return True


@dataclass
class RunConfig:
    test_csv: str
    systems: list[SystemConfig]
    asr_model: str
    asr_language: str = "zh"
    samples: int = 1
    seed: int = 1234
    reroll: RerollRule = field(default_factory=RerollRule)
    asr: dict = field(default_factory=dict)
    sv_path: Optional[str] = None  # speaker model; None = settings.sv_path; "" = no similarity
    batch_size: int = 8  # utterances per synthesize_many call
    drop_interjections: bool = False  # scoring: remove interjections (嗯, 啊, uh, ...) from both texts
    run_dir: Optional[str] = None
    numerals: Optional[str] = None  # scoring: None (as written), "zh" (digits -> 二十五) or "digits" (二十五 -> 25)
    seed_compatible: bool = False  # also score with seed-tts-eval's procedure (seed_wer next to ours)
    similarity_model: str = "eres2netv2"  # eval.similarity.SIMILARITY_MODELS
    wavlm_dir: Optional[str] = None  # the WavLMForXVector folder of similarity_model "wavlm-sv"
    baseline: Optional[str] = None  # the system others are compared with (vs_base_*); None = the first system
    buckets: dict = field(default_factory=dict)  # length buckets of the report: by, edges, labels (report only)
    variants: list = field(default_factory=list)  # punctuation variants of every row (eval.variants); [] = none
    asr_cache: Optional[str] = None  # transcript cache file; None = REPORTS_DIR/asr_cache.jsonl; "" = no cache
    devices: Any = None  # synthesis spread over local devices (gsv_core.pool): None = settings.job_devices

    # -- (de)serialisation -------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict, base: Optional[Path] = None) -> "RunConfig":
        if not isinstance(d, dict):
            raise EvalError("the run config must be a mapping (test_csv, systems, asr_model, ...)")
        problems = []
        d = {k: v for k, v in d.items() if k not in INFO_KEYS}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            problems.append(f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(known))})")

        def rel(p):
            if p in (None, ""):
                return p
            q = Path(str(p)).expanduser()
            return str(q if q.is_absolute() or base is None else (base / q))

        systems = []
        raw_systems = d.get("systems") or []
        if not isinstance(raw_systems, list) or not raw_systems:
            problems.append("systems: give at least one system (name, gpt, sovits, ref_audio, ref_text)")
            raw_systems = []
        names = set()
        for i, s in enumerate(raw_systems, 1):
            if not isinstance(s, dict):
                problems.append(f"system {i}: must be a mapping")
                continue
            s = dict(s)
            name = str(s.pop("name", "") or "").strip()
            gpt, sovits = s.pop("gpt", None), s.pop("sovits", None)
            ref_audio, ref_text = s.pop("ref_audio", s.pop("ref", "")) or "", s.pop("ref_text", "") or ""
            external = s.pop("external", False)
            params = dict(s.pop("params", {}) or {})
            params.update(s)
            bad = [k for k in params if k not in SYSTEM_PARAMS]
            where = f"system {i} ({name or 'unnamed'})"
            if not name or not re.fullmatch(_NAME_RE, name):
                problems.append(f"{where}: name must be non-empty letters, digits, '_', '-', '.'")
            elif name in names:
                problems.append(f"{where}: duplicate name")
            names.add(name)
            if not isinstance(external, bool):
                problems.append(f"{where}: external must be true or false")
                external = False
            if external:
                if gpt or sovits or params:
                    problems.append(f"{where}: an external system takes no gpt, sovits or parameters (its audio is "
                                    f"the test CSV's {AUDIO_COLUMN_PREFIX}{name} column)")
                    params, bad = {}, []
            elif not gpt or not sovits:
                problems.append(f"{where}: needs both gpt and sovits (or external: true to score the test CSV's "
                                f"{AUDIO_COLUMN_PREFIX}{name or 'NAME'} audio)")
            for key in PATH_PARAMS:  # a file named in the config: relative to the config's folder
                if params.get(key):
                    params[key] = rel(params[key])
            for what, p in (("gpt", gpt), ("sovits", sovits), ("ref_audio", ref_audio),
                            *((k, params.get(k)) for k in PATH_PARAMS)):
                if p and not Path(rel(p)).is_file():
                    problems.append(f"{where}: {what} file not found: {rel(p)}")
            if bad:
                problems.append(f"{where}: unknown parameter(s) {', '.join(bad)} (allowed: {', '.join(SYSTEM_PARAMS)})")
            else:
                try:
                    SynthesisRequest.from_mapping(params)
                except RequestError as exc:
                    problems.append(f"{where}: {exc}")
            systems.append(SystemConfig(name, rel(gpt) or "", rel(sovits) or "", rel(ref_audio) or "",
                                        str(ref_text), params, bool(external)))
        rr = d.get("reroll") or {}
        if isinstance(rr, RerollRule):
            rr = dataclasses.asdict(rr)
        try:
            reroll = RerollRule(**rr)
            reroll.max_tries = int(reroll.max_tries)
            if reroll.max_tries < 1:
                raise ValueError("max_tries must be >= 1")
        except (TypeError, ValueError) as exc:
            problems.append(f"reroll: {exc} (keys: max_error_rate, min_similarity, max_tries)")
            reroll = RerollRule()
        asr = dict(d.get("asr") or {})
        bad = [k for k in asr if k not in ASR_PARAMS]
        if bad:
            problems.append(f"asr: unknown option(s) {', '.join(bad)} (allowed: {', '.join(ASR_PARAMS)})")
        for key in ("test_csv", "asr_model"):
            if not d.get(key):
                problems.append(f"{key} is required")
        try:
            samples, seed, batch = int(d.get("samples", 1)), int(d.get("seed", 1234)), int(d.get("batch_size", 8))
            if samples < 1 or batch < 1 or not 0 <= seed < 2**32:
                raise ValueError
        except (TypeError, ValueError):
            problems.append("samples and batch_size must be whole numbers >= 1, seed in [0, 2^32)")
            samples, seed, batch = 1, 1234, 8
        scoring = _scoring_options(d, names, problems)
        devices = d.get("devices")
        if isinstance(devices, (list, tuple)):
            devices = [str(x) for x in devices]
        elif devices is not None and not isinstance(devices, str):
            problems.append("devices: all, default, or a list of devices such as cuda:0,cuda:1")
            devices = None
        if any(s.external for s in systems) and scoring["variants"]:
            problems.append("variants: punctuation variants change the text, so external audio (made from the "
                            "original text) cannot be scored with them; leave the external systems out")
        if problems:
            raise EvalError("invalid run config:\n" + "\n".join(problems))
        return cls(test_csv=rel(d["test_csv"]), systems=systems, asr_model=rel(d["asr_model"]),
                   asr_language=str(d.get("asr_language", "zh")), samples=samples, seed=seed, reroll=reroll,
                   asr=asr, sv_path=rel(d.get("sv_path")), batch_size=batch, run_dir=rel(d.get("run_dir")),
                   drop_interjections=bool(d.get("drop_interjections", False)), wavlm_dir=rel(d.get("wavlm_dir")),
                   asr_cache=rel(d.get("asr_cache")), devices=devices, **scoring)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "RunConfig":
        """YAML (or JSON, a subset of YAML); relative paths are taken relative to the file's folder."""
        import yaml

        path = Path(path).expanduser()
        if not path.is_file():
            raise EvalError(f"run config not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise EvalError(f"{path} is not valid YAML: {exc}") from None
        return cls.from_dict(data, base=path.parent.resolve())

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["systems"] = [dataclasses.asdict(s) for s in self.systems]
        return d

    def fingerprint(self) -> dict:
        """What must not change between an interrupted run and its resumption (everything that changes what is
        synthesised or how it is scored; not the run folder, batch size, report buckets, transcript cache or the
        devices the synthesis is spread over)."""
        d = self.to_dict()
        for key in ("run_dir", "batch_size", "buckets", "asr_cache", "devices"):
            d.pop(key, None)
        return d

    @property
    def baseline_system(self) -> Optional[str]:
        """The system the others are compared with (vs_base_*): ``baseline`` or the first system; None with one."""
        if len(self.systems) < 2:
            return None
        return self.baseline or self.systems[0].name

    def length_buckets(self):
        from eval.buckets import LengthBuckets

        return LengthBuckets(**self.buckets) if self.buckets else LengthBuckets()


def _scoring_options(d: dict, system_names: set, problems: list[str]) -> dict:
    """numerals, seed_compatible, similarity_model, baseline, buckets and variants of a config mapping, checked."""
    from eval.buckets import LengthBuckets
    from eval.metrics import MetricsError
    from eval.similarity import SIMILARITY_MODELS, WAVLM_SV_HELP
    from eval.variants import VARIANT_KINDS

    out: dict[str, Any] = {}
    raw = d.get("numerals")
    numerals = None if raw in (None, False) or str(raw).strip().lower() in ("", "off", "none", "no") \
        else str(raw).strip().lower()
    if numerals not in (None, "zh", "digits"):
        problems.append(f"numerals: {raw!r} is not off, zh (digits -> Chinese numerals) or digits (Chinese numerals "
                        "-> digits)")
        numerals = None
    out["numerals"] = numerals
    seed = d.get("seed_compatible", False)
    if not isinstance(seed, bool):
        problems.append("seed_compatible must be true or false")
        seed = False
    out["seed_compatible"] = seed
    model = str(d.get("similarity_model") or "eres2netv2").strip()
    if model not in SIMILARITY_MODELS:
        problems.append(f"similarity_model: unknown {model!r} (use one of {', '.join(SIMILARITY_MODELS)})")
        model = "eres2netv2"
    elif model == "wavlm-sv" and not d.get("wavlm_dir"):
        problems.append("similarity_model wavlm-sv needs wavlm_dir (a local model folder). " + WAVLM_SV_HELP)
    out["similarity_model"] = model
    baseline = d.get("baseline") or None
    if baseline is not None and str(baseline) not in system_names:
        problems.append(f"baseline: {baseline!r} is not one of the systems ({', '.join(sorted(system_names))})")
    out["baseline"] = None if baseline is None else str(baseline)
    buckets = d.get("buckets") or {}
    if not isinstance(buckets, dict) or set(buckets) - {"by", "edges", "labels"}:
        problems.append("buckets: a mapping with by (tokens, chars or seconds), edges and labels")
        buckets = {}
    else:
        buckets = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in buckets.items()}
        try:
            LengthBuckets(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in buckets.items()})
        except (MetricsError, TypeError, ValueError) as exc:
            problems.append(f"buckets: {exc}")
            buckets = {}
    out["buckets"] = buckets
    variants = d.get("variants") or []
    if isinstance(variants, str):
        variants = list(VARIANT_KINDS) if variants.strip() == "all" else [v.strip() for v in variants.split(",")
                                                                          if v.strip()]
    if not isinstance(variants, (list, tuple)):
        problems.append("variants: a list of punctuation variants or 'all'")
        variants = []
    unknown = [v for v in variants if v not in VARIANT_KINDS]
    if unknown:
        problems.append(f"variants: unknown {', '.join(map(str, unknown))} (use any of {', '.join(VARIANT_KINDS)})")
        variants = []
    if variants and "original" not in variants:
        variants = ["original", *variants]  # the deltas are taken against the original sentence
    out["variants"] = [v for v in VARIANT_KINDS if v in variants]
    return out


def external_systems(test_csv: str | os.PathLike, existing: Sequence[str] = ()) -> list[dict]:
    """``{name, external: true}`` for every ``audio:NAME`` column of a test CSV that names no system yet."""
    path = Path(test_csv).expanduser()
    try:
        first = path.read_text(encoding="utf-8-sig").splitlines()[:1]
    except (OSError, UnicodeDecodeError):
        return []
    if not first:
        return []
    header = [_header_key(h) for h in next(csv.reader(first))]
    return [dict(name=n, external=True) for n in audio_column_systems(header) if n not in existing]


def _clean(d: dict) -> dict:
    """NaN/inf -> None so results.jsonl stays strict JSON."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def seed_for(base: int, sample: int, attempt: int) -> int:
    """The recorded seed of try ``attempt`` (0-based) of sample ``sample``: distinct and reproducible."""
    return (int(base) + 1_000_003 * sample + 7_919 * attempt) % 2**32


def utterance_key(system: str, item_id: str, sample: int) -> tuple[str, str, int]:
    return (system, item_id, int(sample))


def load_results(run_dir: str | os.PathLike) -> list[dict]:
    """The finished utterances of a run folder; a torn last line (a killed process) is ignored."""
    path = Path(run_dir) / "results.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _repair_tail(path: Path) -> None:
    """Cut a torn final line so appended records start on a line of their own."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as fh:
            fh.truncate(cut)


# ----------------------------------------------------------------------------------------------------------------
# the runner

def expand_items(items: list[TestItem], kinds: Sequence[str]) -> list[TestItem]:
    """Every row x punctuation variant (:func:`eval.variants.expand_variants`): id ``<id>__<variant>``."""
    from eval.variants import expand_variants

    by_id = {it.id: it for it in items}
    out = []
    for row in expand_variants([dict(id=it.id, text=it.text) for it in items], kinds):
        it = by_id[row["base_id"]]
        out.append(dataclasses.replace(it, id=row["id"], text=row["text"], audio={}, base_id=it.id,
                                       variant=row["variant"]))
    return out


@dataclass
class _Task:
    system: SystemConfig
    item: TestItem
    sample: int
    tries: list = field(default_factory=list)
    tracks: dict = field(default_factory=dict)  # attempt -> ProsodyTrack (in memory only)
    done: bool = False


@dataclass
class _External:
    """What the scoring needs of a file the loop did not synthesise (the shape of a SynthesisResult)."""

    audio: Any
    sample_rate: int
    source: str
    seed: Optional[int] = None
    rtf: Optional[float] = None
    wall: Optional[float] = None
    tokens: Optional[int] = None

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


class _References:
    """Reference audio analysed once per file: speaker embedding (per scorer) and prosody track."""

    def __init__(self, scorer):
        from eval.similarity import EmbeddingCache

        self.embeddings = EmbeddingCache(scorer) if scorer is not None else None
        self._tracks: dict[str, Any] = {}

    def embedding(self, path: str):
        return self.embeddings.get_file(path)

    def track(self, path: str):
        from eval.prosody import analyze_prosody
        from gsv_core.audio import load_audio

        if path not in self._tracks:
            wav, sr = load_audio(path)
            self._tracks[path] = analyze_prosody(wav, sr)
        return self._tracks[path]


class EvalRunner:
    """Runs a :class:`RunConfig` with one TTS engine and one ASR service (both shared with the app)."""

    def __init__(self, engine, asr_service, settings: Any = None):
        self.engine = engine
        self.asr = asr_service
        self.settings = settings if settings is not None else getattr(engine, "settings", None)
        self.asr_files = 0  # files sent to the ASR service by the last run (cache misses)
        self._synth = engine  # what synthesises: the engine, or an engine pool during a run spread over devices

    def default_run_dir(self) -> Path:
        return self._reports_dir() / time.strftime("eval_%Y%m%d_%H%M%S")

    def _reports_dir(self) -> Path:
        return Path(getattr(self.settings, "reports_dir", "reports"))

    def asr_cache(self, config: RunConfig, run_dir: Optional[Path] = None):
        """The transcript cache of a run: ``config.asr_cache``, else REPORTS_DIR/asr_cache.jsonl (without settings:
        next to the run folder); ``""``: none."""
        from eval.asrcache import ASRCache

        if config.asr_cache == "":
            return ASRCache(None)
        if config.asr_cache:
            return ASRCache(config.asr_cache)
        root = getattr(self.settings, "reports_dir", None)
        if root is None:
            root = Path(run_dir).parent if run_dir is not None else self._reports_dir()
        return ASRCache(Path(root) / "asr_cache.jsonl")

    def _speaker_encoder(self, config: RunConfig):
        path = config.sv_path or getattr(self.settings, "sv_path", None)
        if not path or not Path(path).is_file() or self.engine is None:
            return None
        return self.engine.speaker_encoder(path)

    def scorer(self, config: RunConfig):
        """The speaker-similarity scorer of ``config`` (None: no similarity, ``sv_path=""`` or no speaker model);
        a WavLM scorer without its weights raises a SimilarityError that says what to download."""
        from eval.similarity import load_scorer

        if config.sv_path == "":
            return None
        if config.similarity_model == "wavlm-sv":
            return load_scorer("wavlm-sv", wavlm_dir=config.wavlm_dir)
        encoder = self._speaker_encoder(config)
        if encoder is None:
            return None
        return load_scorer(config.similarity_model, encoder=encoder)

    def run(self, config: RunConfig, run_dir: str | os.PathLike | None = None, progress: Optional[ProgressFn] = None,
            cancel: Optional[threading.Event] = None, devices: Any = None) -> Path:
        """Run (or resume) ``config`` into ``run_dir``; returns the folder. Raises EvalCancelled when cancelled.

        ``devices`` (else ``config.devices``, else the settings' ``job_devices``): local devices the synthesis is
        spread over, one engine process each (:func:`gsv_core.api.job_devices`; none: this runner's engine), or an
        open :class:`gsv_core.api.EnginePool` to use (the caller closes it)."""
        from gsv_core.api import EnginePool, job_devices
        from gsv_core.asr import ASROptions, check_model_dir

        report = progress or (lambda *_: None)
        run_dir = Path(run_dir or config.run_dir or self.default_run_dir()).expanduser()
        items = read_test_csv(config.test_csv)
        if config.variants:
            items = expand_items(items, config.variants)
        missing = [s.name for s in config.systems if s.external and not any(s.name in it.audio for it in items)]
        if missing:
            raise EvalError(f"external system(s) {', '.join(missing)}: the test CSV has no audio in column(s) "
                            f"{', '.join(AUDIO_COLUMN_PREFIX + m for m in missing)}")
        check_model_dir(config.asr_model)
        spec = devices if devices is not None else config.devices
        given = spec if isinstance(spec, EnginePool) else None
        names = [] if given is not None else job_devices(spec if spec is not None else
                                                         getattr(self.settings, "job_devices", ""))
        asr_opts = ASROptions(model_dir=config.asr_model, language=config.asr_language, **config.asr)
        asr_opts.validate()
        scorer = self.scorer(config)
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = run_dir / "config.json"
        if cfg_path.is_file():
            old = json.loads(cfg_path.read_text(encoding="utf-8"))
            old.setdefault("similarity_model", LEGACY_SIMILARITY_MODEL)  # written before similarity models existed
            if RunConfig.from_dict(old).fingerprint() != config.fingerprint():
                raise EvalError(f"{run_dir} holds a run with a different configuration; choose a new run folder "
                                "(or start the same configuration again to resume)")
        else:
            info = scorer.describe() if scorer is not None else {"similarity_model": None,
                                                                  "similarity_model_about": "no speaker model"}
            write_json_atomic(cfg_path, dict(config.to_dict(), similarity_scorer=info))
        results_path = run_dir / "results.jsonl"
        _repair_tail(results_path)
        previous = load_results(run_dir)
        done = {utterance_key(r["system"], r["id"], r["sample"]) for r in previous}
        baseline = config.baseline_system
        systems = sorted(config.systems, key=lambda s: s.name != baseline)  # the baseline first: others need it
        all_tasks = [_Task(s, it, k) for s in systems for it in items
                     for k in (range(1) if s.external else range(config.samples))
                     if not s.external or s.name in it.audio]
        tasks = [t for t in all_tasks if utterance_key(t.system.name, t.item.id, t.sample) not in done]
        total = len(all_tasks)
        finished = total - len(tasks)
        report(finished / max(1, total), f"{finished}/{total} utterances already done" if finished else "starting")
        refs = _References(scorer)
        cache = self.asr_cache(config, run_dir)
        self.asr_files = 0
        base = {(r["id"], r["sample"]): r["audio"] for r in previous if r["system"] == baseline and r.get("audio")}
        base_tracks: dict[tuple, Any] = {}
        pool = given
        if names and any(not t.system.external for t in tasks):
            report(finished / max(1, total), f"starting {len(names)} engines on {', '.join(names)}")
            pool = self.engine.pool(names)
        self._synth = pool or self.engine
        step = config.batch_size * (pool.size if pool is not None else 1)  # a batch per engine and step
        try:
            self._loop(tasks, step, config, run_dir, asr_opts, scorer, refs, cache, cancel, results_path, baseline,
                       base, base_tracks, report, finished, total)
        finally:
            self._synth = self.engine
            if pool is not None and pool is not given:
                pool.close()
        return run_dir

    def _loop(self, tasks, step, config, run_dir, asr_opts, scorer, refs, cache, cancel, results_path, baseline,
              base, base_tracks, report, finished, total) -> None:
        with open(results_path, "a", encoding="utf-8") as out:
            for start in range(0, len(tasks), step):
                batch = tasks[start:start + step]
                for attempt in range(config.reroll.max_tries):
                    todo = [t for t in batch if not t.done]
                    if not todo:
                        break
                    self._check(cancel)
                    self._attempt(todo, attempt, config, run_dir, asr_opts, scorer, refs, cache, cancel)
                    for t in todo:
                        if t.system.external or config.reroll.passes(t.tries[-1]) \
                                or attempt + 1 >= config.reroll.max_tries:
                            t.done = True
                for t in batch:
                    rec = self._record(t, config)
                    track = t.tracks.get(rec["chosen"])
                    if baseline is not None and t.system.name == baseline:
                        base[(t.item.id, t.sample)] = rec["audio"]
                        base_tracks[(t.item.id, t.sample)] = track
                    elif baseline is not None and track is not None:
                        rec.update(self._vs_base(track, t, base, base_tracks, run_dir))
                    t.tracks.clear()
                    out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    out.flush()
                    os.fsync(out.fileno())
                    finished += 1
                    report(finished / max(1, total), f"{finished}/{total}: {t.system.name} {t.item.id}")

    @staticmethod
    def _vs_base(track, t: _Task, base: dict, base_tracks: dict, run_dir: Path) -> dict:
        """F0/energy comparison with the baseline's utterance of the same sentence (same sample, else sample 0)."""
        from eval.prosody import analyze_prosody, compare_prosody
        from gsv_core.audio import load_audio

        for key in ((t.item.id, t.sample), (t.item.id, 0)):
            if key in base_tracks and base_tracks[key] is not None:
                return _clean(compare_prosody(track, base_tracks[key]).as_dict("vs_base_"))
            if key in base and (run_dir / base[key]).is_file():
                try:
                    wav, sr = load_audio(run_dir / base[key])
                except GSVError:
                    return {}
                base_tracks[key] = analyze_prosody(wav, sr)
                return _clean(compare_prosody(track, base_tracks[key]).as_dict("vs_base_"))
        return {}

    @staticmethod
    def _check(cancel):
        if cancel is not None and cancel.is_set():
            raise EvalCancelled("evaluation cancelled; finished utterances are kept, run it again to resume")

    def _transcribe(self, paths: list[Path], asr_opts, cache, cancel) -> list:
        """ASR rows of ``paths`` (in order): cached transcripts first, the others from the ASR service."""
        from gsv_core.asr import ASRRow

        rows: list = [None] * len(paths)
        todo = []
        for i, p in enumerate(paths):
            hit = cache.get(p, asr_opts)
            if hit is not None:
                rows[i] = ASRRow(path=str(p), speaker="", lang=hit[1], text=hit[0])
            else:
                todo.append(i)
        if todo:
            self._check(cancel)
            got = self.asr.transcribe([str(paths[i]) for i in todo], asr_opts, cancel=cancel)
            if len(got) != len(todo):
                self._check(cancel)
                raise EvalError("ASR returned fewer rows than files")
            by_path = {str(Path(r.path).resolve()): r for r in got}
            self.asr_files += len(todo)
            for n, i in enumerate(todo):
                row = by_path.get(str(paths[i].resolve()), got[n])
                rows[i] = row
                if row.error is None:
                    cache.put(paths[i], asr_opts, row.text, row.lang)
        return rows

    def _attempt(self, tasks: list[_Task], attempt: int, config: RunConfig, run_dir: Path, asr_opts, scorer,
                 refs: _References, cache, cancel) -> None:
        from gsv_core.api import Cancelled
        from gsv_core.audio import save_wav

        results: list = [None] * len(tasks)
        paths: list[Path] = [None] * len(tasks)  # relative to run_dir
        # synthesize_many batches fragments of requests that share a GPT; group by system to keep that possible
        by_system: dict[str, list[int]] = {}
        requests: dict[int, SynthesisRequest] = {}
        for i, t in enumerate(tasks):
            if t.system.external:
                results[i], paths[i] = self._external(t, run_dir)
                continue
            ref_audio = t.item.ref_audio or t.system.ref_audio
            ref_text = t.item.ref_text if t.item.ref_audio else t.system.ref_text
            base = SynthesisRequest(text=t.item.text, ref_audio=ref_audio, ref_text=ref_text, text_lang=t.item.lang,
                                    gpt_path=t.system.gpt, sovits_path=t.system.sovits,
                                    seed=seed_for(config.seed, t.sample, attempt), id=t.item.id)
            requests[i] = SynthesisRequest.from_mapping(t.system.params, base, where=f"system {t.system.name}")
            by_system.setdefault(t.system.name, []).append(i)
        for idx in by_system.values():
            self._check(cancel)
            try:
                outs = self._synth.synthesize_many([requests[i] for i in idx], cancel=cancel)
            except Cancelled:
                raise EvalCancelled("evaluation cancelled; finished utterances are kept, run it again to resume")
            for i, r in zip(idx, outs):
                rel = Path("audio") / tasks[i].system.name / f"{tasks[i].item.id}_s{tasks[i].sample}_t{attempt}.wav"
                save_wav(run_dir / rel, r.audio, r.sample_rate)
                results[i], paths[i] = r, rel
        self._check(cancel)
        rows = self._transcribe([run_dir / rel for rel in paths], asr_opts, cache, cancel)
        for t, rel, res, row in zip(tasks, paths, results, rows):
            t.tries.append(self._score(t, attempt, rel, res, row, scorer, refs, config))

    @staticmethod
    def _external(t: _Task, run_dir: Path) -> tuple[_External, Path]:
        """Load a system's existing audio and copy it into the run folder (the report links it there)."""
        from gsv_core.audio import load_audio

        from gsv_core.fileio import copy_atomic

        src = Path(t.item.audio[t.system.name])
        wav, sr = load_audio(src)  # only audio is copied into the (served) run folder
        rel = Path("audio") / t.system.name / f"{t.item.id}_s0_t0{src.suffix.lower() or '.wav'}"
        dst = run_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
            copy_atomic(src, dst)
        return _External(audio=wav, sample_rate=int(sr), source=str(src)), rel

    def _score(self, t: _Task, attempt: int, rel: Path, res, row, scorer, refs: _References,
               config: RunConfig) -> dict:
        from eval.audio_metrics import analyze
        from eval.metrics import score_fields
        from eval.prosody import analyze_prosody, compare_prosody, pause_stats

        lang = t.item.lang
        opt = lambda v, kind: None if v is None else kind(v)  # noqa: E731
        rec: dict[str, Any] = dict(attempt=attempt, seed=opt(res.seed, int), audio=rel.as_posix(), asr=row.text,
                                   asr_error=row.error, rtf=opt(res.rtf, float), wall=opt(res.wall, float),
                                   duration=float(res.duration), tokens=opt(res.tokens, int))
        if isinstance(res, _External):
            rec["source_audio"] = res.source
        if row.error:
            rec.update(error_rate=None)
        else:
            rec.update(score_fields(t.item.text, row.text, lang, drop_interjections=config.drop_interjections,
                                    numerals=config.numerals, seed_compatible=config.seed_compatible))
        track = analyze_prosody(res.audio, res.sample_rate)
        t.tracks[attempt] = track
        am = analyze(res.audio, res.sample_rate, t.item.text, None if row.error else row.text, lang, track=track)
        extra = _clean(dataclasses.asdict(am))
        extra.pop("duration", None)  # the result's own duration is kept
        rec.update(extra)
        rec.update(pause_stats(res.audio, res.sample_rate))
        rec["flags"] = [f for f in ("likely_repetition", "likely_truncation") if extra.get(f)]
        if rec["error_rate"] is not None and not math.isfinite(rec["error_rate"]):
            rec["error_rate"] = None
        rec["similarity"] = None
        ref = t.item.ref_audio or t.system.ref_audio
        if ref:
            try:
                cmp = compare_prosody(track, refs.track(ref)).as_dict()
                ref_text = t.item.ref_text if t.item.ref_audio else t.system.ref_text
                same_text = bool(ref_text) and _same_text(ref_text, t.item.text)
                rec.update(_clean({f"vs_ref_{k}": v for k, v in cmp.items()
                                   if same_text or k in TEXT_FREE_PROSODY_FIELDS}))
            except GSVError as exc:
                rec["flags"].append(f"prosody_failed: {exc}"[:200])
            if scorer is not None:
                try:
                    rec["similarity"] = scorer.similarity_to(refs.embedding(ref), res.audio, res.sample_rate)
                    rec["similarity_model"] = scorer.name
                except GSVError as exc:
                    rec["flags"].append(f"similarity_failed: {exc}"[:200])
        return rec

    def _record(self, t: _Task, config: RunConfig) -> dict:
        passing = [r for r in t.tries if config.reroll.passes(r)]
        if passing:
            chosen = passing[0]
        else:
            chosen = min(t.tries, key=lambda r: (r["error_rate"] is None, r["error_rate"] or 0.0))
        rec = dict(system=t.system.name, id=t.item.id, sample=t.sample, text=t.item.text, lang=t.item.lang,
                   chosen=chosen["attempt"], n_tries=len(t.tries), passed=bool(passing))
        if t.item.variant:
            rec.update(base_id=t.item.base_id, variant=t.item.variant)
        if t.system.external:
            rec["external"] = True
        rec.update(chosen)
        rec["tries"] = t.tries
        return rec


def _same_text(a: str, b: str) -> bool:
    from eval.metrics import normalize_text

    return normalize_text(a).replace(" ", "") == normalize_text(b).replace(" ", "")
