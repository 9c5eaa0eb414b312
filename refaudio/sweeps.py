"""Comparison tasks: a definition (what varies), its expansion into items (cell x reference x text x sample),
and the runner that synthesises pending items through the engine's batched path.

Compare types
    none            the base settings only (the long-text stage uses it)
    ref_audio       the references vary (a selection of clips and/or every clip of chosen categories)
    gpt_path, sovits_path, top_k, top_p, temperature, repetition_penalty, split_method, speed, aux_refs,
    noise_scale, pause, max_tokens, sample_steps (SoVITS v3/v4 CFM steps), super_sampling (v3 AP-BWE on/off,
    upstream's if_sr)
                    one variable, one cell per value (every other setting from the base)
    kpt             grid of top_k x top_p x temperature
    models          (GPT, SoVITS) pairs
    full            the cartesian product of any variables given

Seeds: sample ``s`` of text ``t`` gets the same seed in every cell and for every reference (derived from the task
seed, ``t`` and ``s``), so cells differ only by what the task varies, and a resumed item gets its seed again.

Running: pending items are claimed in a transaction (status 'running'), grouped by (GPT, SoVITS), synthesised in
chunks with :meth:`TTSEngine.synthesize_many`; each result's WAV and spectrogram are written atomically and the
item is marked done in one transaction. A chunk that fails is retried item by item, so one bad item is recorded
'failed' with its error and the rest go on. With ``devices`` (two or more, :func:`gsv_core.api.job_devices`) the
runner claims a chunk per device and spreads it over an engine pool (one engine process per device); the results
come back here in order and are stored exactly the same way, so resume is unchanged. Items left 'running' by a
killed process go back to 'pending' when a runner starts. The UNIQUE (task, cell, ref, text, sample) key means a
result is never created twice.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from gsv_core.engine.request import SAMPLING_FIELDS, SynthesisRequest
from gsv_core.errors import GSVError

from .db import Database, NotFound
from .files import PathGuard
from .library import LANGUAGES, Library

Progress = Callable[[float, str], None]

#: sampling/shaping settings a cell carries (gpt_path/sovits_path/aux_refs are kept beside them), with the request
#: schema's defaults
PARAM_DEFAULTS: dict[str, Any] = {k: v for k, v in SynthesisRequest.defaults().items() if k in SAMPLING_FIELDS}
#: what a single-variable sweep may vary: the models, the auxiliary references and every sampling setting that
#: changes the audio (batch size and parallel decoding only change speed)
SINGLE_VARIABLES = ("gpt_path", "sovits_path", "top_k", "top_p", "temperature", "repetition_penalty",
                    "split_method", "speed", "aux_refs", "noise_scale", "pause", "max_tokens", "sample_steps",
                    "super_sampling")
COMPARE_TYPES = ("none", "ref_audio", *SINGLE_VARIABLES, "kpt", "models", "full")
KPT = ("top_k", "top_p", "temperature")
MAX_ITEMS = 20000
WEIGHT_SUFFIXES = {"gpt_path": (".ckpt",), "sovits_path": (".pth", ".pth.xz")}


class SweepError(GSVError):
    """A task definition that cannot be used, or a task request that does not fit its state."""


@dataclass
class TaskSpec:
    role_id: int
    name: str
    compare: str
    base: dict  # gpt_path, sovits_path, aux_refs (clip ids) + PARAM_DEFAULTS keys
    texts: Sequence[tuple[str, str]]  # (text, language)
    values: Any = None  # per compare type: list of values, dict of lists, list of [gpt, sovits]
    ref_clip_ids: Sequence[int] = ()
    ref_categories: Sequence[str] = ()
    valid_only: bool = True  # clips chosen by category must pass the 3-10 s rule
    samples: int = 1
    seed: Optional[int] = None  # None: derived from the task id
    fixed_seed: Optional[int] = None  # sample s uses exactly fixed_seed + s (the long-text stage reuses a result's)

    def as_json(self) -> str:
        return json.dumps({"compare": self.compare, "base": self.base, "values": self.values,
                           "ref_clip_ids": list(self.ref_clip_ids), "ref_categories": list(self.ref_categories),
                           "valid_only": self.valid_only, "seed": self.seed,
                           "fixed_seed": self.fixed_seed}, ensure_ascii=False)


def derive_seed(task_seed: int, text_pos: int, sample: int) -> int:
    digest = hashlib.sha256(f"{int(task_seed)}:{int(text_pos)}:{int(sample)}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2**31)


def _check_value(name: str, value: Any) -> Any:
    """Validate one setting with the engine's own request conversion and checks; returns it in its proper type."""
    if name in ("gpt_path", "sovits_path"):
        p = Path(str(value or "")).expanduser()
        if not str(value or "").strip():
            raise SweepError(f"Choose the {'GPT' if name == 'gpt_path' else 'SoVITS'} weights.")
        if not p.name.lower().endswith(WEIGHT_SUFFIXES[name]):
            raise SweepError(f"{value}: not a {'GPT .ckpt' if name == 'gpt_path' else 'SoVITS .pth'} file.")
        if not p.is_file():
            raise SweepError(f"{value}: weight file not found.")
        return str(p.resolve())
    if name == "aux_refs":
        if not isinstance(value, (list, tuple)):
            raise SweepError("aux_refs values must be lists of clip ids.")
        return [int(v) for v in value]
    if name not in PARAM_DEFAULTS:
        raise SweepError(f"Unknown setting {name!r}; known: {', '.join(sorted(PARAM_DEFAULTS))}.")
    if value is None and name in ("max_tokens", "sample_steps"):
        return None
    try:
        probe = SynthesisRequest.from_mapping({name: value}, SynthesisRequest(text="x", ref_audio="x"),
                                              skip_empty=False)
        probe.validate()
    except GSVError as exc:
        raise SweepError(f"{name} = {value!r}: {exc}") from None
    return getattr(probe, name)


def sweep_model_paths(spec: "TaskSpec") -> list[tuple[str, Any]]:
    """("GPT" | "SoVITS", path) of every model a task names (its base and the compared values)."""
    found: list[tuple[str, Any]] = []
    map_model_paths(spec, lambda kind, path: found.append((kind, path)) or path)
    return found


def map_model_paths(spec: "TaskSpec", fn: Callable[[str, Any], Any]) -> "TaskSpec":
    """A copy of ``spec`` with every model it names (base and compared values) replaced by ``fn(kind, path)``;
    ``kind`` is "GPT" or "SoVITS"."""
    base, compare, values = dict(spec.base or {}), spec.compare, spec.values
    for key, kind in (("gpt_path", "GPT"), ("sovits_path", "SoVITS")):
        base[key] = fn(kind, base.get(key)) if key in base else fn(kind, None)
        if base[key] is None and key not in (spec.base or {}):
            del base[key]
    if compare == "gpt_path" and isinstance(values, list):
        values = [fn("GPT", v) for v in values]
    elif compare == "sovits_path" and isinstance(values, list):
        values = [fn("SoVITS", v) for v in values]
    elif compare == "models" and isinstance(values, list):
        values = [[fn("GPT", pair[0]), fn("SoVITS", pair[1])] if isinstance(pair, (list, tuple)) and len(pair) == 2
                  else pair for pair in values]
    elif compare == "full" and isinstance(values, dict):
        values = dict(values)
        for key, kind in (("gpt_path", "GPT"), ("sovits_path", "SoVITS")):
            if key in values:
                v = values[key]
                values[key] = [fn(kind, p) for p in v] if isinstance(v, list) else fn(kind, v)
    return dataclasses.replace(spec, base=base, values=values)


def count_cells(compare: str, values: Any) -> int:
    """How many cells :func:`expand_cells` would make, from the lengths of the value lists alone (malformed values
    count as 1 and are reported by the expansion)."""
    def n(v: Any) -> int:
        return len(v) if isinstance(v, (list, tuple)) else 1

    if compare in ("kpt", "full") and isinstance(values, dict):
        total = 1
        for v in values.values():
            total *= max(1, n(v))
        return total
    if compare in ("none", "ref_audio"):
        return 1
    return max(1, n(values))


def expand_cells(compare: str, base: dict, values: Any) -> list[tuple[str, dict]]:
    """(label, complete settings) of every cell of a task; every value is validated."""
    if compare not in COMPARE_TYPES:
        raise SweepError(f"Unknown compare type {compare!r}; choose one of {', '.join(COMPARE_TYPES)}.")
    full_base = {**PARAM_DEFAULTS, "aux_refs": [], **(base or {})}
    for key in list(full_base):
        if key not in PARAM_DEFAULTS and key not in ("gpt_path", "sovits_path", "aux_refs"):
            raise SweepError(f"Unknown base setting {key!r}.")
    if compare in ("none", "ref_audio"):
        combos: list[dict] = [{}]
    elif compare in SINGLE_VARIABLES:
        if not isinstance(values, (list, tuple)) or not values:
            raise SweepError(f"A {compare} comparison needs a list of values to try.")
        combos = [{compare: v} for v in values]
    elif compare == "kpt":
        if not isinstance(values, dict) or not set(values) <= set(KPT):
            raise SweepError("A kpt grid needs a dict with lists for top_k, top_p and/or temperature.")
        keys = [k for k in KPT if values.get(k)]
        combos = [dict(zip(keys, c)) for c in itertools.product(*(values[k] for k in keys))] or [{}]
    elif compare == "models":
        if not isinstance(values, (list, tuple)) or not values or any(len(v) != 2 for v in values):
            raise SweepError("A models comparison needs a list of [GPT path, SoVITS path] pairs.")
        combos = [{"gpt_path": g, "sovits_path": s} for g, s in values]
    else:  # full
        if not isinstance(values, dict) or not values:
            raise SweepError("A full comparison needs a dict: setting -> list of values.")
        keys = list(values)
        for k in keys:
            if k not in SINGLE_VARIABLES and k not in PARAM_DEFAULTS:
                raise SweepError(f"Cannot vary {k!r}.")
            if not isinstance(values[k], (list, tuple)) or not values[k]:
                raise SweepError(f"Give a non-empty list of values for {k}.")
        combos = [dict(zip(keys, c)) for c in itertools.product(*(values[k] for k in keys))]
    checked_base = {k: _check_value(k, v) for k, v in full_base.items()}
    cells = []
    for combo in combos:
        settings = dict(checked_base)
        for k, v in combo.items():
            settings[k] = _check_value(k, v)
        label = ", ".join(f"{k}={_short(v)}" for k, v in combo.items()) or "base"
        cells.append((label, settings))
    return cells


def _short(value: Any) -> str:
    if isinstance(value, str) and ("/" in value or "\\" in value):
        return Path(value).name
    return str(value)


class Sweeps:
    """Task definitions, expansion and queries (no synthesis here; see :class:`SweepRunner`)."""

    def __init__(self, db: Database, library: Library, max_items: int = MAX_ITEMS):
        self.db = db
        self.library = library
        self.max_items = int(max_items)

    def create_task(self, spec: TaskSpec, parent_item_id: Optional[int] = None) -> int:
        self.library.role(spec.role_id)
        name = str(spec.name or "").strip() or f"{spec.compare} comparison"
        texts = [(str(t).strip(), str(lang)) for t, lang in spec.texts if str(t).strip()]
        if not texts:
            raise SweepError("Give at least one test text.")
        for t, lang in texts:
            if lang not in LANGUAGES:
                raise SweepError(f"Text language {lang!r} is not supported; use one of {', '.join(LANGUAGES)}.")
        samples = int(spec.samples)
        if not 1 <= samples <= 50:
            raise SweepError("Samples per cell must be between 1 and 50.")
        refs = self._choose_refs(spec)
        # the size is known from the lengths of the value lists: refuse a huge grid before building any of it
        total = count_cells(spec.compare, spec.values) * len(refs) * len(texts) * samples
        if total > self.max_items:
            raise SweepError(f"The task would make {total} results (limit {self.max_items}, MAX_SWEEP_ITEMS); "
                             "choose fewer values.")
        cells = expand_cells(spec.compare, spec.base, spec.values)
        for _, settings in cells:
            for clip_id in settings.get("aux_refs", []):
                self.library.clip(clip_id)
        with self.db.transaction() as conn:
            task_id = int(conn.execute(
                "INSERT INTO tasks (role_id, name, compare_type, spec, samples, parent_item_id) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (int(spec.role_id), name, spec.compare, spec.as_json(), samples, parent_item_id)).lastrowid)
            for pos, (t, lang) in enumerate(texts):
                conn.execute("INSERT INTO task_texts (task_id, position, text, language) VALUES (?, ?, ?, ?)",
                             (task_id, pos, t, lang))
            for pos, clip_id in enumerate(refs):
                conn.execute("INSERT INTO task_refs (task_id, position, clip_id) VALUES (?, ?, ?)",
                             (task_id, pos, clip_id))
            for pos, (label, settings) in enumerate(cells):
                conn.execute("INSERT INTO task_cells (task_id, position, label, params, gpt_path, sovits_path) "
                             "VALUES (?, ?, ?, ?, ?, ?)",
                             (task_id, pos, label, json.dumps(settings, ensure_ascii=False),
                              settings["gpt_path"], settings["sovits_path"]))
            self.expand(task_id)
        return task_id

    def _choose_refs(self, spec: TaskSpec) -> list[int]:
        chosen: list[int] = []
        for clip_id in spec.ref_clip_ids:
            row = self.library.clip(clip_id)
            if row["role_id"] != int(spec.role_id):
                raise SweepError(f"Clip {clip_id} belongs to another role.")
            if int(clip_id) not in chosen:
                chosen.append(int(clip_id))
        if spec.ref_categories:
            rows = self.library.clips(spec.role_id, categories=spec.ref_categories,
                                      valid=True if spec.valid_only else None, sort="id", descending=False,
                                      limit=10000)
            chosen += [r["id"] for r in rows if r["id"] not in chosen]
        if not chosen:
            raise SweepError("Choose reference clips (a selection, or categories with valid 3-10 s clips).")
        return chosen

    def expand(self, task_id: int) -> int:
        """Create the missing items of a task (idempotent: the UNIQUE key ignores existing ones)."""
        task = self.task(task_id)
        spec = json.loads(task["spec"])
        seed, fixed = spec.get("seed"), spec.get("fixed_seed")
        task_seed = int(seed) if seed is not None else int(task_id) * 1_000_003

        def seed_for(text_pos: int, sample: int) -> int:
            if fixed is not None:
                return (int(fixed) + sample) % 2**32
            return derive_seed(task_seed, text_pos, sample)
        with self.db.transaction() as conn:
            cells = conn.execute("SELECT id FROM task_cells WHERE task_id = ?", (task_id,)).fetchall()
            refs = conn.execute("SELECT id FROM task_refs WHERE task_id = ?", (task_id,)).fetchall()
            texts = conn.execute("SELECT id, position FROM task_texts WHERE task_id = ?", (task_id,)).fetchall()
            added = 0
            for (cell,), (ref,), (text, tpos) in itertools.product(cells, refs, texts):
                for sample in range(int(task["samples"])):
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO items (task_id, cell_id, ref_id, text_id, sample, seed) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (task_id, cell, ref, text, sample, seed_for(tpos, sample)))
                    added += cur.rowcount
        return added

    # -- queries -----------------------------------------------------------------------------------------------

    def task(self, task_id: int) -> dict:
        row = self.db.one("SELECT * FROM tasks WHERE id = ?", (int(task_id),))
        if row is None:
            raise NotFound(f"There is no task with id {task_id}.")
        return row

    def tasks(self, role_id: Optional[int] = None) -> list[dict]:
        sql = ("SELECT t.*, "
               "(SELECT COUNT(*) FROM items i WHERE i.task_id = t.id) AS total, "
               "(SELECT COUNT(*) FROM items i WHERE i.task_id = t.id AND i.status = 'done') AS done, "
               "(SELECT COUNT(*) FROM items i WHERE i.task_id = t.id AND i.status = 'failed') AS failed "
               "FROM tasks t")
        if role_id is None:
            return self.db.all(sql + " ORDER BY t.id DESC")
        return self.db.all(sql + " WHERE t.role_id = ? ORDER BY t.id DESC", (int(role_id),))

    def counts(self, task_id: int) -> dict:
        rows = self.db.all("SELECT status, COUNT(*) AS n FROM items WHERE task_id = ? GROUP BY status",
                           (int(task_id),))
        out = {"pending": 0, "running": 0, "done": 0, "failed": 0}
        out.update({r["status"]: r["n"] for r in rows})
        out["total"] = sum(out[k] for k in ("pending", "running", "done", "failed"))
        return out

    def cells(self, task_id: int) -> list[dict]:
        return self.db.all("SELECT * FROM task_cells WHERE task_id = ? ORDER BY position", (int(task_id),))

    def texts(self, task_id: int) -> list[dict]:
        return self.db.all("SELECT * FROM task_texts WHERE task_id = ? ORDER BY position", (int(task_id),))

    def refs(self, task_id: int) -> list[dict]:
        return self.db.all("SELECT r.*, c.name, c.transcript, c.category FROM task_refs r "
                           "LEFT JOIN clips c ON c.id = r.clip_id WHERE r.task_id = ? ORDER BY r.position",
                           (int(task_id),))

    def set_status(self, task_id: int, status: str, error: Optional[str] = None, phase: str = "") -> None:
        """Status (and error); ``phase`` 'scoring' marks finished synthesis whose measuring is still to do, in the
        same write, so a crash between the two cannot lose the scoring."""
        with self.db.transaction() as conn:
            if error is None:
                conn.execute("UPDATE tasks SET status = ?, phase = ?, updated_at = datetime('now') WHERE id = ?",
                             (status, phase, int(task_id)))
            else:
                conn.execute("UPDATE tasks SET status = ?, phase = ?, error = ?, updated_at = datetime('now') "
                             "WHERE id = ?", (status, phase, error, int(task_id)))

    def set_phase(self, task_id: int, phase: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE tasks SET phase = ? WHERE id = ?", (phase, int(task_id)))

    def update_task(self, task_id: int, name: Optional[str] = None, conclusion: Optional[str] = None) -> dict:
        self.task(task_id)
        with self.db.transaction() as conn:
            if name is not None:
                if not str(name).strip():
                    raise SweepError("A task name cannot be empty.")
                conn.execute("UPDATE tasks SET name = ? WHERE id = ?", (str(name).strip(), int(task_id)))
            if conclusion is not None:
                conn.execute("UPDATE tasks SET conclusion = ? WHERE id = ?", (str(conclusion), int(task_id)))
        return self.task(task_id)

    def retry_failed(self, task_id: int) -> int:
        with self.db.transaction() as conn:
            return conn.execute("UPDATE items SET status = 'pending', error = '' WHERE task_id = ? AND "
                                "status = 'failed'", (int(task_id),)).rowcount

    def recover(self, task_id: Optional[int] = None) -> int:
        """Items a killed process left 'running' go back to 'pending'. Returns how many."""
        with self.db.transaction() as conn:
            if task_id is None:
                return conn.execute("UPDATE items SET status = 'pending' WHERE status = 'running'").rowcount
            return conn.execute("UPDATE items SET status = 'pending' WHERE status = 'running' AND task_id = ?",
                                (int(task_id),)).rowcount


class SweepRunner:
    """Synthesises a task's pending items. ``engine`` is anything with ``synthesize_many(requests, cancel=...)``;
    ``devices`` (``all``, ``cuda:0,cuda:1``, ...) spreads every run over an engine pool made by ``engine.pool``
    (or is an open :class:`gsv_core.api.EnginePool` to use; its owner closes it)."""

    def __init__(self, sweeps: Sweeps, engine: Any, out_root: Path, guard: PathGuard, chunk_size: int = 8,
                 devices: Any = None):
        self.devices = devices
        self._synth = engine  # the engine, or the engine pool while a run is spread over devices
        self.sweeps = sweeps
        self.db = sweeps.db
        self.library = sweeps.library
        self.engine = engine
        self.out_root = Path(out_root).resolve()
        self.guard = guard
        self.chunk_size = max(1, int(chunk_size))

    def task_dir(self, task_id: int) -> Path:
        return self.out_root / f"task_{int(task_id)}"

    def _claim(self, task_id: int, limit: Optional[int] = None) -> list[dict]:
        with self.db.transaction() as conn:
            first = conn.execute(
                "SELECT c.gpt_path, c.sovits_path FROM items i JOIN task_cells c ON c.id = i.cell_id "
                "WHERE i.task_id = ? AND i.status = 'pending' ORDER BY c.position, i.id LIMIT 1",
                (task_id,)).fetchone()
            if first is None:
                return []
            rows = [dict(r) for r in conn.execute(
                "SELECT i.*, c.params, c.label, t.text, t.language AS text_lang, r.clip_id FROM items i "
                "JOIN task_cells c ON c.id = i.cell_id JOIN task_texts t ON t.id = i.text_id "
                "JOIN task_refs r ON r.id = i.ref_id "
                "WHERE i.task_id = ? AND i.status = 'pending' AND c.gpt_path = ? AND c.sovits_path = ? "
                "ORDER BY c.position, i.id LIMIT ?",
                (task_id, first[0], first[1], limit or self.chunk_size)).fetchall()]
            for r in rows:
                conn.execute("UPDATE items SET status = 'running', attempts = attempts + 1 WHERE id = ?",
                             (r["id"],))
            return rows

    def request_for(self, item: dict):
        p = json.loads(item["params"])
        clip = self.library.clip(item["clip_id"]) if item["clip_id"] is not None else None
        if clip is None:
            raise SweepError("The reference clip of this item was deleted.")
        aux = tuple(str(self.library.clip_path(c)) for c in p.get("aux_refs", []))
        base = SynthesisRequest(
            text=item["text"], text_lang=item["text_lang"], ref_audio=str(self.library.clip_path(clip)),
            ref_text=clip["transcript"], ref_lang=clip["language"], gpt_path=p["gpt_path"],
            sovits_path=p["sovits_path"], aux_refs=aux, seed=int(item["seed"]), id=f"item{item['id']}")
        return SynthesisRequest.from_mapping({k: p[k] for k in PARAM_DEFAULTS if k in p}, base, skip_empty=False)

    def _fail(self, item: dict, error: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE items SET status = 'failed', error = ?, finished_at = datetime('now') "
                         "WHERE id = ? AND status = 'running'", (error[:2000], item["id"]))

    def _release(self, items: Sequence[dict]) -> None:
        with self.db.transaction() as conn:
            for item in items:
                conn.execute("UPDATE items SET status = 'pending' WHERE id = ? AND status = 'running'",
                             (item["id"],))

    def _store(self, item: dict, result: Any) -> None:
        from gsv_core.audio import save_wav

        from .plots import spectrogram_png

        folder = self.task_dir(item["task_id"])
        wav = save_wav(folder / f"item_{item['id']}.wav", result.audio, result.sample_rate)
        png = spectrogram_png(result.audio, result.sample_rate, folder / f"item_{item['id']}.png",
                              title=f"item {item['id']} · {item['label']} · seed {item['seed']}")
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE items SET status = 'done', error = '', audio_file = ?, spectrogram_file = ?, duration = ?, "
                "scored = 0, finished_at = datetime('now') WHERE id = ? AND status = 'running'",
                (wav.relative_to(self.out_root).as_posix(), png.relative_to(self.out_root).as_posix(),
                 float(result.duration), item["id"]))

    def _synthesize(self, items: list[dict], cancel_event: threading.Event) -> None:
        from gsv_core.engine import Cancelled

        prepared = []
        for item in items:
            try:
                prepared.append((item, self.request_for(item)))
            except GSVError as exc:
                self._fail(item, str(exc))
        if not prepared:
            return
        each = getattr(self._synth, "synthesize_each", None)
        if each is not None:  # an engine pool: a result or an error per item, in order
            for (item, _), out in zip(prepared, each([r for _, r in prepared], cancel=cancel_event)):
                if isinstance(out, BaseException):
                    self._fail(item, _describe(out))
                else:
                    self._store(item, out)
            return
        try:
            results = self._synth.synthesize_many([r for _, r in prepared], cancel=cancel_event)
        except Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - isolate the item that broke the batch
            if len(prepared) == 1:
                self._fail(prepared[0][0], _describe(exc))
                return
            for item, req in prepared:
                if cancel_event.is_set():
                    raise Cancelled("Synthesis was cancelled.") from None
                try:
                    result = self._synth.synthesize_many([req], cancel=cancel_event)[0]
                except Cancelled:
                    raise
                except Exception as single:  # noqa: BLE001
                    self._fail(item, _describe(single))
                    continue
                self._store(item, result)
            return
        for (item, _), result in zip(prepared, results):
            self._store(item, result)

    def run(self, task_id: int, progress: Optional[Progress] = None,
            cancel: Optional[Callable[[], bool]] = None, final_phase: str = "") -> dict:
        """Run every pending item of a task; returns its counts. Cancelling leaves the rest pending (resumable).
        ``final_phase`` is stored with the final 'done' status (the service passes 'scoring')."""
        from gsv_core.api import Cancelled, EnginePool, job_devices

        task_id = int(task_id)
        self.sweeps.task(task_id)
        given = self.devices if isinstance(self.devices, EnginePool) else None
        names = [] if given is not None else job_devices(self.devices)
        self.sweeps.recover(task_id)
        self.sweeps.set_status(task_id, "running", "")
        event = _CancelBridge(cancel)
        claimed: list[dict] = []
        pool = given
        try:
            if names and self.sweeps.counts(task_id)["pending"]:
                if progress is not None:
                    progress(0.0, f"starting {len(names)} engines on {', '.join(names)}")
                pool = self.engine.pool(names)
            self._synth = pool or self.engine
            limit = self.chunk_size * (pool.size if pool is not None else 1)  # a chunk per engine
            while True:
                if event.is_set():
                    raise Cancelled("cancelled")
                counts = self.sweeps.counts(task_id)
                if progress is not None:
                    finished = counts["done"] + counts["failed"]
                    progress(finished / max(1, counts["total"]),
                             f"{finished}/{counts['total']} done ({counts['failed']} failed)")
                claimed = self._claim(task_id, limit)
                if not claimed:
                    break
                self._synthesize(claimed, event)
                claimed = []
        except Cancelled:
            self._release(claimed)
            self.sweeps.set_status(task_id, "cancelled")
            return self.sweeps.counts(task_id)
        except BaseException as exc:
            self._release(claimed)
            self.sweeps.set_status(task_id, "failed", _describe(exc))
            raise
        finally:
            self._synth = self.engine
            if pool is not None and pool is not given:
                pool.close()
        counts = self.sweeps.counts(task_id)
        note = f"{counts['failed']} item(s) failed" if counts["failed"] else ""
        self.sweeps.set_status(task_id, "done", note, phase=final_phase)
        if progress is not None:
            progress(1.0, f"{counts['done']}/{counts['total']} done ({counts['failed']} failed)")
        return counts


class _CancelBridge(threading.Event):
    """A threading.Event (what the engine checks) that is also set when a ``cancel()`` callable says so."""

    def __init__(self, cancel: Optional[Callable[[], bool]]):
        super().__init__()
        self._cancel = cancel

    def is_set(self) -> bool:
        if not super().is_set() and self._cancel is not None and self._cancel():
            self.set()
        return super().is_set()


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, GSVError) else f"{type(exc).__name__}: {exc}"
