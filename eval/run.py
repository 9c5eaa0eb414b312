"""The evaluation loop: test CSV + systems -> TTS -> ASR -> metrics per utterance, into a resumable run folder.

A run folder (``RUN_DIR``) holds::

    config.json      the run configuration (what ``python -m eval run --config`` reads back: reproducible)
    results.jsonl    one line per finished utterance (system, id, sample), every try included
    audio/SYSTEM/    ID_sK_tT.wav, one file per try

Every finished utterance is appended (and flushed) at once, so an interrupted run started again on the same folder
skips what is done and never writes a duplicate. A re-roll rule (max error rate and/or min speaker similarity,
up to ``max_tries``) regenerates a failing utterance with a new, recorded seed; the chosen try is the first that
passes, else the one with the lowest error rate.

No gradio here: the Eval tab and ``python -m eval`` both call :class:`EvalRunner`.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from gsv_core import languages
from gsv_core.engine.request import PARAMETERS, RequestError, SynthesisRequest
from gsv_core.errors import GSVError
from gsv_core.fileio import write_json_atomic

ProgressFn = Callable[[float, str], Any]

#: engine parameters a system may set: every synthesis parameter but those each utterance brings (text, language,
#: seed) and those a system names itself (models, reference, aux references in the system's own keys)
SYSTEM_PARAMS = tuple(n for n in PARAMETERS if n not in ("text", "text_lang", "seed", "id", "gpt_path", "sovits_path",
                                                        "ref_audio", "ref_text"))
#: ASR options a run may set besides the model folder and language
ASR_PARAMS = ("vad_filter", "beam_size", "device", "compute_type", "max_new_tokens", "temperature")
CSV_COLUMNS = ("id", "text", "ref_audio", "ref_text", "lang")


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


def read_test_csv(path: str | os.PathLike, default_lang: str = "zh") -> list[TestItem]:
    """Rows of a test CSV (columns id, text, optional ref_audio, ref_text, lang). Relative audio paths are taken
    relative to the CSV's folder. Every problem is collected and raised as one :class:`CSVFormatError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CSVFormatError(f"test CSV not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CSVFormatError(f"{path} is not UTF-8 text: {exc}") from None
    reader = csv.reader(text.splitlines())
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise CSVFormatError(f"{path} is empty: it needs a header row with the columns id and text") from None
    missing = [c for c in ("id", "text") if c not in header]
    if missing:
        raise CSVFormatError(f"{path}: missing column(s) {', '.join(missing)} (header is {', '.join(header) or 'empty'};"
                             f" expected {', '.join(CSV_COLUMNS)}, the last three optional)")
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise CSVFormatError(f"{path}: unknown column(s) {', '.join(unknown)} (allowed: {', '.join(CSV_COLUMNS)})")
    items: list[TestItem] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(reader, start=2):
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
        ref = cells.get("ref_audio", "")
        if ref:
            ref_path = Path(ref).expanduser()
            if not ref_path.is_absolute():
                ref_path = path.parent / ref_path
            if not ref_path.is_file():
                bad.append(f"reference audio not found: {ref_path}")
            ref = str(ref_path)
        elif cells.get("ref_text"):
            bad.append("ref_text given without ref_audio")
        if bad:
            problems.append(f"line {line}: " + "; ".join(bad))
        if rid and rid not in seen:
            seen[rid] = line
        if not bad:
            items.append(TestItem(rid, cells["text"], ref, cells.get("ref_text", ""), lang, line))
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

    # -- (de)serialisation -------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict, base: Optional[Path] = None) -> "RunConfig":
        if not isinstance(d, dict):
            raise EvalError("the run config must be a mapping (test_csv, systems, asr_model, ...)")
        problems = []
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
            params = dict(s.pop("params", {}) or {})
            params.update(s)
            bad = [k for k in params if k not in SYSTEM_PARAMS]
            where = f"system {i} ({name or 'unnamed'})"
            if not name or not re.fullmatch(r"[\w\-.]+", name):
                problems.append(f"{where}: name must be non-empty letters, digits, '_', '-', '.'")
            elif name in names:
                problems.append(f"{where}: duplicate name")
            names.add(name)
            if not gpt or not sovits:
                problems.append(f"{where}: needs both gpt and sovits")
            for what, p in (("gpt", gpt), ("sovits", sovits), ("ref_audio", ref_audio)):
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
                                        str(ref_text), params))
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
        if problems:
            raise EvalError("invalid run config:\n" + "\n".join(problems))
        return cls(test_csv=rel(d["test_csv"]), systems=systems, asr_model=rel(d["asr_model"]),
                   asr_language=str(d.get("asr_language", "zh")), samples=samples, seed=seed, reroll=reroll,
                   asr=asr, sv_path=rel(d.get("sv_path")), batch_size=batch, run_dir=rel(d.get("run_dir")),
                   drop_interjections=bool(d.get("drop_interjections", False)))

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
        """What must not change between an interrupted run and its resumption."""
        d = self.to_dict()
        d.pop("run_dir", None)
        d.pop("batch_size", None)
        return d


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

@dataclass
class _Task:
    system: SystemConfig
    item: TestItem
    sample: int
    tries: list = field(default_factory=list)
    done: bool = False


class EvalRunner:
    """Runs a :class:`RunConfig` with one TTS engine and one ASR service (both shared with the app)."""

    def __init__(self, engine, asr_service, settings: Any = None):
        self.engine = engine
        self.asr = asr_service
        self.settings = settings if settings is not None else getattr(engine, "settings", None)

    def default_run_dir(self) -> Path:
        root = Path(getattr(self.settings, "reports_dir", "reports"))
        return root / time.strftime("eval_%Y%m%d_%H%M%S")

    def _speaker_encoder(self, config: RunConfig):
        if config.sv_path == "":
            return None
        path = config.sv_path or getattr(self.settings, "sv_path", None)
        if not path or not Path(path).is_file():
            return None
        return self.engine.speaker_encoder(path)

    def run(self, config: RunConfig, run_dir: str | os.PathLike | None = None, progress: Optional[ProgressFn] = None,
            cancel: Optional[threading.Event] = None) -> Path:
        """Run (or resume) ``config`` into ``run_dir``; returns the folder. Raises EvalCancelled when cancelled."""
        from gsv_core.asr import ASROptions, check_model_dir

        report = progress or (lambda *_: None)
        run_dir = Path(run_dir or config.run_dir or self.default_run_dir()).expanduser()
        items = read_test_csv(config.test_csv)
        check_model_dir(config.asr_model)
        asr_opts = ASROptions(model_dir=config.asr_model, language=config.asr_language, **config.asr)
        asr_opts.validate()
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = run_dir / "config.json"
        if cfg_path.is_file():
            old = json.loads(cfg_path.read_text(encoding="utf-8"))
            if RunConfig.from_dict(old).fingerprint() != config.fingerprint():
                raise EvalError(f"{run_dir} holds a run with a different configuration; choose a new run folder "
                                "(or start the same configuration again to resume)")
        else:
            write_json_atomic(cfg_path, config.to_dict())
        results_path = run_dir / "results.jsonl"
        _repair_tail(results_path)
        done = {utterance_key(r["system"], r["id"], r["sample"]) for r in load_results(run_dir)}
        tasks = [_Task(s, it, k) for s in config.systems for it in items for k in range(config.samples)
                 if utterance_key(s.name, it.id, k) not in done]
        total = len(config.systems) * len(items) * config.samples
        finished = total - len(tasks)
        report(finished / max(1, total), f"{finished}/{total} utterances already done" if finished else "starting")
        encoder = self._speaker_encoder(config)
        ref_cache: dict[str, tuple] = {}
        with open(results_path, "a", encoding="utf-8") as out:
            for start in range(0, len(tasks), config.batch_size):
                batch = tasks[start:start + config.batch_size]
                for attempt in range(config.reroll.max_tries):
                    todo = [t for t in batch if not t.done]
                    if not todo:
                        break
                    self._check(cancel)
                    self._attempt(todo, attempt, config, run_dir, asr_opts, encoder, ref_cache, cancel)
                    for t in todo:
                        if config.reroll.passes(t.tries[-1]) or attempt + 1 >= config.reroll.max_tries:
                            t.done = True
                for t in batch:
                    out.write(json.dumps(self._record(t, config), ensure_ascii=False) + "\n")
                    out.flush()
                    os.fsync(out.fileno())
                    finished += 1
                    report(finished / max(1, total), f"{finished}/{total}: {t.system.name} {t.item.id}")
        return run_dir

    @staticmethod
    def _check(cancel):
        if cancel is not None and cancel.is_set():
            raise EvalCancelled("evaluation cancelled; finished utterances are kept, run it again to resume")

    def _attempt(self, tasks: list[_Task], attempt: int, config: RunConfig, run_dir: Path, asr_opts, encoder,
                 ref_cache: dict, cancel) -> None:
        from gsv_core.api import Cancelled
        from gsv_core.audio import save_wav

        requests = []
        for t in tasks:
            ref_audio = t.item.ref_audio or t.system.ref_audio
            ref_text = t.item.ref_text if t.item.ref_audio else t.system.ref_text
            base = SynthesisRequest(text=t.item.text, ref_audio=ref_audio, ref_text=ref_text, text_lang=t.item.lang,
                                    gpt_path=t.system.gpt, sovits_path=t.system.sovits,
                                    seed=seed_for(config.seed, t.sample, attempt), id=t.item.id)
            requests.append(SynthesisRequest.from_mapping(t.system.params, base, where=f"system {t.system.name}"))
        # synthesize_many batches fragments of requests that share a GPT; group by system to keep that possible
        by_system: dict[str, list[int]] = {}
        for i, t in enumerate(tasks):
            by_system.setdefault(t.system.name, []).append(i)
        results = [None] * len(tasks)
        for idx in by_system.values():
            self._check(cancel)
            try:
                outs = self.engine.synthesize_many([requests[i] for i in idx], cancel=cancel)
            except Cancelled:
                raise EvalCancelled("evaluation cancelled; finished utterances are kept, run it again to resume")
            for i, r in zip(idx, outs):
                results[i] = r
        paths = []
        for t, res in zip(tasks, results):
            rel = Path("audio") / t.system.name / f"{t.item.id}_s{t.sample}_t{attempt}.wav"
            save_wav(run_dir / rel, res.audio, res.sample_rate)
            paths.append((rel, res))
        self._check(cancel)
        rows = self.asr.transcribe([str(run_dir / rel) for rel, _ in paths], asr_opts, cancel=cancel)
        if len(rows) != len(paths):
            self._check(cancel)
            raise EvalError("ASR returned fewer rows than files")
        for t, (rel, res), row in zip(tasks, paths, rows):
            t.tries.append(self._score(t, attempt, rel, res, row, encoder, ref_cache, config))

    def _score(self, t: _Task, attempt: int, rel: Path, res, row, encoder, ref_cache: dict,
               config: RunConfig) -> dict:
        from eval.audio_metrics import analyze, embedding_similarity, speaker_embedding
        from eval.metrics import normalize_text, score_utterance

        lang = t.item.lang
        drop = config.drop_interjections
        rec: dict[str, Any] = dict(attempt=attempt, seed=int(res.seed), audio=rel.as_posix(), asr=row.text,
                                   asr_error=row.error, rtf=float(res.rtf), wall=float(res.wall),
                                   duration=float(res.duration), tokens=int(res.tokens))
        if row.error:
            rec.update(error_rate=None)
        else:
            counts = score_utterance(t.item.text, row.text, lang, drop_interjections=drop)
            rec.update(error_rate=float(counts.rate), substitutions=int(counts.substitutions),
                       deletions=int(counts.deletions), insertions=int(counts.insertions), hits=int(counts.hits),
                       ref_len=int(counts.ref_len), ref_norm=normalize_text(t.item.text, drop),
                       hyp_norm=normalize_text(row.text, drop))
        am = analyze(res.audio, res.sample_rate, t.item.text, None if row.error else row.text, lang)
        extra = _clean(dataclasses.asdict(am))
        extra.pop("duration", None)  # the result's own duration is kept
        rec.update(extra)
        rec["flags"] = [f for f in ("likely_repetition", "likely_truncation") if extra.get(f)]
        if rec["error_rate"] is not None and not math.isfinite(rec["error_rate"]):
            rec["error_rate"] = None
        rec["similarity"] = None
        ref = t.item.ref_audio or t.system.ref_audio
        if encoder is not None and ref:
            from gsv_core.audio import load_audio

            if ref not in ref_cache:
                wav_b, sr_b = load_audio(ref)
                ref_cache[ref] = speaker_embedding(encoder, wav_b, sr_b)
            rec["similarity"] = embedding_similarity(speaker_embedding(encoder, res.audio, res.sample_rate),
                                                     ref_cache[ref])
        return rec

    def _record(self, t: _Task, config: RunConfig) -> dict:
        passing = [r for r in t.tries if config.reroll.passes(r)]
        if passing:
            chosen = passing[0]
        else:
            chosen = min(t.tries, key=lambda r: (r["error_rate"] is None, r["error_rate"] or 0.0))
        rec = dict(system=t.system.name, id=t.item.id, sample=t.sample, text=t.item.text, lang=t.item.lang,
                   chosen=chosen["attempt"], n_tries=len(t.tries), passed=bool(passing))
        rec.update(chosen)
        rec["tries"] = t.tries
        return rec
