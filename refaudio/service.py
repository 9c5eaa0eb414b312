"""RefAudioService: the one object the RefAudio tab and the CLI call (no gradio).

Owns the database, the library folder (``<folder of REFAUDIO_DB>/library``), the output folder
(``OUTPUT_DIR/refaudio``), the path guard over both, and a background queue: one worker thread per process runs
queued tasks one after another (synthesis, then automatic metrics), with progress, cancel, and resume of
interrupted tasks when the service starts.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from gsv_core import paths, weights
from gsv_core.errors import GSVError
from gsv_core.messages import keyed

from .db import Database
from .files import PathGuard
from .grouping import SpeakerIndex
from .library import Library
from .products import Products, load_preset, product_to_request_values
from .scoring import Results, Transcriber, asr_transcriber
from .sweeps import SweepError, SweepRunner, Sweeps, TaskSpec, map_model_paths
from .texts import TestTexts


class ConfirmationRequired(GSVError):
    """A delete was asked for without its explicit confirmation."""


def _confirmed(confirm: bool, what: str) -> None:
    """Every delete needs an explicit confirmation (the tab's checkbox, the CLI's prompt or --yes)."""
    if confirm is not True:
        raise keyed(ConfirmationRequired, "library.confirm_delete", what=what)


@dataclass
class JobState:
    task_id: int
    state: str = "queued"  # queued | running | scoring | done | cancelled | failed
    fraction: float = 0.0
    message: str = ""
    error: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = 0.0


class TaskQueue:
    """A single worker thread that runs tasks in order. ``run_one(task_id, progress, cancel)`` does the work."""

    def __init__(self, run_one: Callable[[int, Callable[[float, str], None], Callable[[], bool]], None]):
        self._run_one = run_one
        self._queue: "queue.Queue[int]" = queue.Queue()
        self._jobs: dict[int, JobState] = {}
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()

    def _ensure_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="refaudio-queue", daemon=True)
            self._thread.start()

    def submit(self, task_id: int) -> JobState:
        with self._lock:
            job = self._jobs.get(int(task_id))
            if job is not None and job.state in ("queued", "running", "scoring"):
                return job
            job = JobState(int(task_id))
            self._jobs[int(task_id)] = job
            self._queue.put(int(task_id))
            self._ensure_worker()
            return job

    def cancel(self, task_id: int) -> bool:
        with self._lock:
            job = self._jobs.get(int(task_id))
            if job is None or job.state not in ("queued", "running", "scoring"):
                return False
            job.cancel.set()
            if job.state == "queued":
                job.state = "cancelled"
            return True

    def state(self, task_id: int) -> Optional[JobState]:
        with self._lock:
            return self._jobs.get(int(task_id))

    def wait(self, task_id: int, timeout: float = 600.0) -> JobState:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.state(task_id)
            if job is not None and job.state in ("done", "cancelled", "failed"):
                return job
            time.sleep(0.05)
        raise TimeoutError(f"task {task_id} did not finish within {timeout} s")

    def shutdown(self) -> None:
        self._stop.set()
        self._queue.put(-1)

    def _work(self) -> None:
        while not self._stop.is_set():
            task_id = self._queue.get()
            if task_id < 0:
                return
            job = self.state(task_id)
            if job is None or job.cancel.is_set():
                continue

            def progress(fraction: float, message: str, job=job) -> None:
                job.fraction, job.message = float(fraction), message

            job.state, job.started = "running", time.time()
            try:
                self._run_one(task_id, progress, job.cancel.is_set)
                job.state = "cancelled" if job.cancel.is_set() else "done"
            except GSVError as exc:
                job.state, job.error = "failed", str(exc)
            except Exception as exc:  # noqa: BLE001 - a broken task must not stop the queue
                job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"


class RefAudioService:
    def __init__(self, settings: Any, engine: Any = None, engine_factory: Optional[Callable[[], Any]] = None,
                 transcriber: Optional[Transcriber] = None, asr_service: Any = None,
                 speaker_encoder: Any = None, sv_path: Any = None, auto_resume: bool = True,
                 score_after_run: bool = True, chunk_size: int = 8):
        self.settings = settings
        self.max_unpacked_bytes = int(getattr(settings, "max_unpacked_mb", 2048)) * 2**20
        self.db = Database(settings.refaudio_db)
        self.library_root = (self.db.path.parent / "library").resolve()
        self.out_root = (Path(settings.output_dir) / "refaudio").resolve()
        self.library_root.mkdir(parents=True, exist_ok=True)
        self.out_root.mkdir(parents=True, exist_ok=True)
        self.guard = PathGuard([self.library_root, self.out_root])
        self.library = Library(self.db, self.library_root, self.guard)
        self.sweeps = Sweeps(self.db, self.library, int(getattr(settings, "max_sweep_items", 20000)))
        self.products = Products(self.db, self.library, max_unzip_bytes=self.max_unpacked_bytes,
                                 model_allowed=self._model_allowed)
        self.texts = TestTexts(self.db)
        self._engine = engine
        self._engine_factory = engine_factory
        self._engine_lock = threading.Lock()
        self._transcriber = transcriber if transcriber is not None else asr_transcriber(asr_service)
        self._speaker_encoder = speaker_encoder
        self._sv_path = sv_path
        self.score_after_run = score_after_run
        self.chunk_size = chunk_size
        self.queue = TaskQueue(self._run_task)
        if auto_resume:
            self.resume_interrupted()

    # -- shared pieces -----------------------------------------------------------------------------------------

    @property
    def engine(self):
        with self._engine_lock:
            if self._engine is None:
                if self._engine_factory is not None:
                    self._engine = self._engine_factory()
                else:
                    from gsv_core.api import Engine

                    self._engine = Engine.open(self.settings)
            return self._engine

    def _encoder(self):
        if self._speaker_encoder is not None:
            return self._speaker_encoder
        return self.engine.speaker_encoder(self._sv_path)

    def speaker_index(self) -> SpeakerIndex:
        path = self._sv_path or self.settings.sv_path
        if self._speaker_encoder is not None:
            return SpeakerIndex(self.db, self.library, lambda: self._speaker_encoder, f"injected:{id(self._speaker_encoder)}")
        return SpeakerIndex.for_model_file(self.db, self.library, path, self._encoder)

    def _speaker_index_or_none(self) -> Optional[SpeakerIndex]:
        if self._speaker_encoder is not None:
            return self.speaker_index()
        path = self._sv_path or self.settings.sv_path
        return self.speaker_index() if path and Path(str(path)).exists() else None

    @property
    def results(self) -> Results:
        return Results(self.db, self.sweeps, self.out_root, self.guard, self._transcriber,
                       self._speaker_index_or_none())

    def runner(self, engine: Any = None) -> SweepRunner:
        # JOB_DEVICES: the sweeps spread over one engine process per device (gsv_core.pool)
        return SweepRunner(self.sweeps, engine or self.engine, self.out_root, self.guard, self.chunk_size,
                           devices=getattr(self.settings, "job_devices", ""))

    def close(self) -> None:
        self.queue.shutdown()
        self.db.close()

    # -- roles, clips ------------------------------------------------------------------------------------------

    def list_roles(self, search: str = "") -> list[dict]:
        return self.library.roles(search)

    def create_role(self, category: str, name: str) -> int:
        return self.library.create_role(category, name)

    def delete_role(self, role_id: int, confirm: bool = False, force: bool = False) -> dict:
        """Delete a role. Needs ``confirm``; a role that still holds clips, tasks or products also needs ``force``
        (keyed ``library.role_not_empty`` otherwise), which deletes them with it: every task's output folder, the
        role's library folder (clip audio, views, imported models) and the clips' similarity plots. Refused while
        one of its tasks runs. Returns what was deleted."""
        role = self.library.role(role_id)
        label = f"{role['category']}/{role['name']}"
        _confirmed(confirm, f"role {label}")
        rid = int(role["id"])
        counts = {"clips": self.db.scalar("SELECT COUNT(*) FROM clips WHERE role_id = ?", (rid,)),
                  "tasks": self.db.scalar("SELECT COUNT(*) FROM tasks WHERE role_id = ?", (rid,)),
                  "products": self.db.scalar("SELECT COUNT(*) FROM products WHERE role_id = ?", (rid,))}
        if any(counts.values()) and not force:
            raise keyed(GSVError, "library.role_not_empty", role=label, **counts)
        tasks = self.sweeps.tasks(rid)
        for task in tasks:
            self._refuse_running(task["id"])
        clip_ids = [r["id"] for r in self.db.all("SELECT id FROM clips WHERE role_id = ?", (rid,))]
        for task in tasks:
            self.queue.cancel(task["id"])
            self.guard.delete_tree(self.out_root / f"task_{task['id']}")
        self.library.delete_role(rid)
        for cid in clip_ids:
            self._drop_clip_plots(cid)
        return {"role": label, **counts}

    def import_list(self, role_id: int, list_path: Any, category: str = "default", **kw):
        """Import a ``.list`` from a local path (``python -m refaudio import``: the user's own shell)."""
        return self.library.import_list(role_id, Path(str(list_path)), category, **kw)

    def import_server_list(self, role_id: int, list_path: Any, category: str = "default", **kw):
        """Import a ``.list`` named by the UI or the API: the list and every audio file it names must lie in the
        folders the app may read (gsv_core.paths)."""
        real = paths.check_readable(self.settings, list_path, ".list file")
        if real.suffix.lower() != ".list":
            raise GSVError(f"{real.name!r} is not a .list file (audio|speaker|lang|text per line).")
        return self.library.import_list(role_id, real, category, audio_allowed=self._audio_allowed, **kw)

    def import_upload(self, role_id: int, files: Sequence[Any], category: str = "default", **kw):
        """Import an uploaded ``.list`` with its audio (loose files and/or zips): only uploaded files can be used
        (refaudio.uploads); the staging folder is removed afterwards. Returns the import report, whose errors start
        with the rows that named no uploaded file."""
        import shutil

        from .library import ImportIssue, ImportReport
        from .uploads import stage_list_upload

        staged = stage_list_upload(self.out_root, files, self.max_unpacked_bytes)
        try:
            if staged.rows:
                report = self.library.import_list(role_id, staged.list_path, category,
                                                  audio_allowed=lambda p: p.resolve().is_relative_to(staged.folder),
                                                  **kw)
            else:
                report = ImportReport()
        finally:
            shutil.rmtree(staged.folder, ignore_errors=True)
        report.errors[:0] = [ImportIssue(line, audio, reason) for line, audio, reason in staged.refused]
        return report

    def list_clips(self, role_id: int, **filters) -> list[dict]:
        return self.library.clips(role_id, **filters)

    def categories(self, role_id: int) -> list[str]:
        return self.library.categories(role_id)

    def relabel(self, clip_ids: Sequence[int], category: str) -> int:
        return self.library.relabel(clip_ids, category)

    def update_clip(self, clip_id: int, **fields) -> dict:
        return self.library.update_clip(clip_id, **fields)

    def delete_clip(self, clip_id: int, confirm: bool = False) -> None:
        """Delete a clip with its audio, cached views and similarity plot. Needs ``confirm``; refused while a
        product (reference or auxiliary) or a sweep task uses it."""
        row = self.library.clip(clip_id)
        _confirmed(confirm, f"clip {row['id']}")
        self.library.delete_clip(row["id"])
        self._drop_clip_plots(row["id"])

    def delete_clips(self, clip_ids: Sequence[int], confirm: bool = False) -> dict:
        """Delete several clips; the ones in use are skipped with their reason: ``{"deleted": [...], "refused":
        {id: message}}``."""
        ids = [int(i) for i in clip_ids]
        _confirmed(confirm, f"clip(s) {', '.join(map(str, ids))}")
        out: dict = {"deleted": [], "refused": {}}
        for cid in ids:
            try:
                self.delete_clip(cid, confirm=True)
                out["deleted"].append(cid)
            except GSVError as exc:
                out["refused"][cid] = exc
        return out

    def _drop_clip_plots(self, clip_id: int) -> None:
        grouping = self.out_root / "grouping"
        if grouping.is_dir():
            for path in grouping.glob(f"clip{int(clip_id)}_*.png"):
                self.guard.delete_file(path)

    def export_role(self, role_id: int, as_zip: bool = True, categories: Sequence[str] = (),
                    valid_only: bool = False, dest: Optional[Path] = None) -> Path:
        """A role's clips as an upstream ``.list`` + audio: a zip or a folder under ``<output>/refaudio/exports``
        (or ``dest``)."""
        from .files import safe_name

        role = self.library.role(role_id)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"role_{role['id']}_{safe_name(role['name'], 'role')}_{stamp}"
        target = Path(dest) if dest else self.out_root / "exports" / (name + (".zip" if as_zip else ""))
        target.parent.mkdir(parents=True, exist_ok=True)
        return self.library.export_role(role["id"], target, as_zip, categories, valid_only)

    def clip_audio(self, clip_id: int) -> Path:
        return self.library.clip_path(clip_id)

    def clip_view(self, clip_id: int, marks: Sequence[float] = (), regions: Sequence[tuple[float, float]] = ()):
        return self.library.clip_view(clip_id, marks, regions)

    def split_clip(self, clip_id: int, segments: Sequence[dict], join: bool = False) -> list[int]:
        return self.library.split_clip(clip_id, segments, join)

    def export_clips(self, clip_ids: Sequence[int]) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return self.library.export_list(clip_ids, self.out_root / "exports" / f"clips_{stamp}.zip")

    # -- grouping ----------------------------------------------------------------------------------------------

    def similarity(self, anchor_clip_id: int, categories: Sequence[str] = (), threshold: Optional[float] = None,
                   progress=None) -> dict:
        """Scores against an anchor clip plus a histogram PNG (in the output folder)."""
        from .plots import histogram_png

        out = self.speaker_index().similarity_to(anchor_clip_id, categories, progress=progress)
        out["histogram_png"] = str(histogram_png(out["counts"], out["edges"],
                                                 self.out_root / "grouping" / f"clip{anchor_clip_id}_hist.png",
                                                 threshold, f"similarity to clip {anchor_clip_id}"))
        return out

    def move_similar(self, anchor_clip_id: int, threshold: float, target_category: str,
                     categories: Sequence[str] = ()) -> list[int]:
        return self.speaker_index().move_similar(anchor_clip_id, threshold, target_category, categories)

    def cluster(self, role_id: int, threshold: float, categories: Sequence[str] = ()) -> list[list[int]]:
        return self.speaker_index().cluster(role_id, threshold, categories)

    def apply_clusters(self, clusters: Sequence[Sequence[int]], prefix: str = "speaker") -> dict:
        return self.speaker_index().apply_clusters(clusters, prefix)

    # -- tasks -------------------------------------------------------------------------------------------------

    def create_task(self, spec: TaskSpec) -> int:
        """A new sweep task; every model it names must lie in the model folders (the app's rule, for the tab and
        ``python -m refaudio`` alike)."""
        def resolve(kind: str, path: Any) -> Any:
            if not path:
                return path
            try:  # a list label (what the tab sends) or a path; the task stores the absolute path
                return weights.check_model_path(self.settings, path, kind, extra_roots=self._extra_model_roots())
            except weights.ModelPathError as exc:
                raise SweepError(str(exc)) from None

        return self.sweeps.create_task(map_model_paths(spec, resolve))

    def _extra_model_roots(self) -> list[Path]:
        return [self.library.root]  # models imported with products live in the library

    def _model_allowed(self, path: Path) -> bool:
        try:
            weights.check_model_path(self.settings, path, "model", extra_roots=self._extra_model_roots())
            return True
        except weights.ModelPathError:
            return False

    def _audio_allowed(self, path: Path) -> bool:
        return paths.is_readable(self.settings, path, extra_roots=[self.library.root])

    def list_tasks(self, role_id: Optional[int] = None) -> list[dict]:
        return self.sweeps.tasks(role_id)

    def start_task(self, task_id: int) -> JobState:
        self.sweeps.task(task_id)
        self.sweeps.set_status(task_id, "queued")
        return self.queue.submit(task_id)

    def cancel_task(self, task_id: int) -> bool:
        ok = self.queue.cancel(task_id)
        if ok and self.sweeps.task(task_id)["status"] == "queued":
            self.sweeps.set_status(task_id, "cancelled")
        return ok

    def task_status(self, task_id: int) -> dict:
        task = self.sweeps.task(task_id)
        job = self.queue.state(task_id)
        counts = self.sweeps.counts(task_id)
        state = job.state if job else task["status"]
        if task.get("phase") == "scoring" and state in ("done", "running"):
            state = "scoring"
        return {"task": task, "counts": counts, "state": state,
                "fraction": job.fraction if job else (counts["done"] + counts["failed"]) / max(1, counts["total"]),
                "message": job.message if job else "", "error": (job.error if job else "") or task["error"]}

    def run_task_now(self, task_id: int, progress=None, cancel=None) -> dict:
        """Synchronously (CLI): synthesise the pending items, then measure them."""
        self._run_task(task_id, progress or (lambda *_: None), cancel or (lambda: False))
        return self.sweeps.counts(task_id)

    def _run_task(self, task_id: int, progress, cancel) -> None:
        def part(lo: float, hi: float):
            return lambda f, m: progress(lo + (hi - lo) * f, m)

        self.runner().run(task_id, progress=part(0.0, 0.85 if self.score_after_run else 1.0), cancel=cancel,
                          final_phase="scoring" if self.score_after_run else "")
        if self.score_after_run and not cancel() and self.sweeps.task(task_id)["phase"] == "scoring":
            outcome = self.results.score_task(task_id, progress=part(0.85, 1.0), cancel=cancel)
            if cancel():
                return  # still in phase 'scoring': the next start (or a restart) measures the rest
            task = self.sweeps.task(task_id)
            note = "; ".join(n for n in [task["error"], *outcome["notes"]] if n)
            self.sweeps.set_status(task_id, task["status"], note if outcome["notes"] else None, phase="")

    def resume_interrupted(self) -> list[int]:
        """Tasks that were queued, running or still being measured (phase 'scoring') when the process stopped: their
        items go back to pending and the tasks are queued again (a finished synthesis goes straight to scoring)."""
        ids = [t["id"] for t in self.db.all("SELECT id FROM tasks WHERE status IN ('queued', 'running') OR "
                                            "phase = 'scoring' ORDER BY id")]
        for task_id in ids:
            self.sweeps.recover(task_id)
            self.start_task(task_id)
        return ids

    def retry_failed(self, task_id: int) -> int:
        return self.sweeps.retry_failed(task_id)

    def update_task(self, task_id: int, name=None, conclusion=None) -> dict:
        return self.sweeps.update_task(task_id, name, conclusion)

    def rename_task(self, task_id: int, name: str) -> dict:
        if not str(name or "").strip():
            raise keyed(SweepError, "library.name_empty")
        return self.sweeps.update_task(task_id, name=name)

    def annotate_task(self, task_id: int, note: str) -> dict:
        """The task's note (its conclusion: what the comparison showed)."""
        return self.sweeps.update_task(task_id, conclusion=str(note or ""))

    def _refuse_running(self, task_id: int) -> None:
        job = self.queue.state(task_id)
        if job is not None and job.state in ("running", "scoring"):
            raise keyed(SweepError, "library.task_running", task=int(task_id))

    def delete_task(self, task_id: int, confirm: bool = False) -> None:
        """Delete a task, its results and its output folder (audio, spectrograms). Needs ``confirm``; refused while
        it runs (a queued one is cancelled). Products saved from its results keep their settings."""
        task = self.sweeps.task(task_id)
        _confirmed(confirm, f"task {task['id']} ({task['name']})")
        self._refuse_running(task_id)
        self.queue.cancel(task_id)
        with self.db.transaction() as conn:
            conn.execute("UPDATE products SET source_item_id = NULL WHERE source_item_id IN "
                         "(SELECT id FROM items WHERE task_id = ?)", (int(task_id),))
            conn.execute("DELETE FROM tasks WHERE id = ?", (int(task_id),))
        self.guard.delete_tree(self.out_root / f"task_{int(task_id)}")

    # -- results -----------------------------------------------------------------------------------------------

    def list_results(self, task_id: int, **filters) -> list[dict]:
        return self.results.results(task_id, **filters)

    def result(self, item_id: int) -> dict:
        return self.results.item(item_id)

    def result_audio(self, item_id: int) -> Path:
        return self.results.audio_path(item_id)

    def result_spectrogram(self, item_id: int) -> Path:
        return self.results.spectrogram_path(item_id)

    def set_score(self, item_id: int, score: Optional[int] = None, remark: Optional[str] = None) -> dict:
        return self.results.set_score(item_id, score, remark)

    def compare(self, a_id: int, b_id: int) -> dict:
        return self.results.compare(a_id, b_id)

    def score_task(self, task_id: int, rescore: bool = False, progress=None) -> dict:
        return self.results.score_task(task_id, progress=progress, rescore=rescore)

    def long_text_task(self, text: str, text_lang: str = "zh", item_id: Optional[int] = None,
                       task_id: Optional[int] = None, samples: int = 1, start: bool = True) -> int:
        """The long-text stage: the settings of ``item_id`` (or the best-scored result of ``task_id``) applied to a
        long text, as a new task scored the same way."""
        if item_id is None:
            if task_id is None:
                raise GSVError("Choose a result, or a task whose best-scored result is used.")
            best = self.results.best(task_id)
            if not best:
                raise GSVError(f"Task {task_id} has no finished result yet.")
            item_id = best[0]["id"]
        item = self.results.item(item_id)
        task = self.sweeps.task(item["task_id"])
        base = dict(item["params"])
        spec = TaskSpec(role_id=task["role_id"], name=f"long text · from result {item_id}", compare="none",
                        base=base, texts=[(text, text_lang)], ref_clip_ids=[item["clip_id"]], samples=samples,
                        fixed_seed=int(item["seed"]))
        new_id = self.sweeps.create_task(spec, parent_item_id=item_id)
        if start:
            self.start_task(new_id)
        return new_id

    # -- products ----------------------------------------------------------------------------------------------

    def save_product(self, role_id: int, name: str, **kw) -> int:
        return self.products.save(role_id, name, **kw)

    def product_from_result(self, item_id: int, name: str, **kw) -> int:
        return self.products.from_result(self.results, item_id, name, **kw)

    def list_products(self, role_id: Optional[int] = None, search: str = "") -> list[dict]:
        return self.products.products(role_id, search)

    def update_product(self, product_id: int, **fields) -> dict:
        """Edit a product (see :meth:`Products.update`: name, category, remark, score, params, clips, models)."""
        return self.products.update(product_id, **fields)

    def delete_product(self, product_id: int, confirm: bool = False) -> None:
        """Delete a product (and model files it imported that nothing else names). Needs ``confirm``."""
        p = self.products.product(product_id)
        _confirmed(confirm, f"product {p['name']}")
        self.products.delete(p["id"])

    # -- the test-text library ---------------------------------------------------------------------------------

    def list_texts(self, search: str = "", language: str = "", tag: str = "") -> list[dict]:
        return self.texts.list(search, language, tag)

    def add_text(self, name: str, text: str, language: str = "zh", tags: Any = "", note: str = "") -> int:
        return self.texts.add(name, text, language, tags, note)

    def update_text(self, text_id: int, **fields) -> dict:
        return self.texts.update(text_id, **fields)

    def delete_text(self, text_id: int, confirm: bool = False) -> None:
        row = self.texts.get(text_id)
        _confirmed(confirm, f"test text {row['name']}")
        self.texts.delete(row["id"])

    def text_pairs(self, names_or_ids: Sequence[Any]) -> list[tuple[str, str]]:
        """(text, language) of library texts, for a sweep's ``texts`` or a long-text test."""
        return self.texts.pairs(names_or_ids)

    def export_products(self, product_ids: Sequence[int], include_models: bool = False,
                        dest: Optional[Path] = None) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        ids = [int(i) for i in product_ids]
        target = dest or self.out_root / "exports" / f"products_{'_'.join(map(str, ids[:5]))}_{stamp}.zip"
        return self.products.export(ids, Path(target), include_models)

    def import_products(self, zip_path: Any, role_id: Optional[int] = None, overwrite: bool = False) -> list[int]:
        return self.products.import_zip(Path(str(zip_path)), role_id, overwrite)

    def product_request_values(self, product_id: int) -> dict:
        """What the TTS tab needs to load a product (absolute paths + parameters)."""
        return product_to_request_values(self.products, product_id)

    def load_preset(self, path: Any) -> dict:
        return load_preset(path, model_allowed=self._model_allowed)

    def preset_from_zip(self, zip_file: Any) -> dict:
        """An uploaded product zip, unpacked (refaudio.uploads) and loaded as TTS request values (its first
        product; ``note`` says when there are more)."""
        from .uploads import stage_product_zip

        folder = stage_product_zip(self.out_root, zip_file, self.max_unpacked_bytes)
        presets = sorted(folder.rglob("preset.json"))
        if not presets:
            raise GSVError(f"{Path(str(zip_file)).name} has no preset.json; export a product first.")
        values = self.load_preset(presets[0].parent)
        if len(presets) > 1:
            values["note"] = f"the zip holds {len(presets)} products; loaded the first ({values.get('name')})"
        return values

    # -- served files ------------------------------------------------------------------------------------------

    def resolve_served(self, path: Any) -> Path:
        """A file the UI may serve: only inside the library and output folders."""
        return self.guard.resolve(path)
