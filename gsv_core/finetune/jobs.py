"""Background finetuning jobs for the app: one worker thread runs one experiment's stages at a time, so a training
run outlives the browser tab that started it; the page polls :meth:`FinetuneJobs.status`.

A job is (experiment config, stages, optional follow-up such as checkpoint selection). Cancelling asks the running
stage to stop at its next step; trainers save their state first, so starting the job again continues."""
from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from gsv_core.errors import GSVError

from .pipeline import Experiment, FinetuneConfig, describe

FollowUp = Callable[[Callable[[float, str], None], threading.Event], Any]


class JobBusyError(GSVError):
    """Another finetuning job is still running."""


@dataclass
class JobStatus:
    state: str = "idle"  # idle | running | done | cancelled | failed
    experiment: str = ""
    stages: tuple = ()
    fraction: float = 0.0  # of the whole job
    stage: str = ""  # the stage running now (data, features, s2, s1, select)
    message: str = ""
    error: str = ""
    started: float = 0.0
    finished: float = 0.0
    log: list = field(default_factory=list)
    result: Any = None

    @property
    def elapsed(self) -> float:
        if not self.started:
            return 0.0
        return (self.finished or time.time()) - self.started

    @property
    def stage_number(self) -> int:
        """1-based position of the running stage among the job's stages (0 when unknown)."""
        return self.stages.index(self.stage) + 1 if self.stage in self.stages else 0


class FinetuneJobs:
    def __init__(self, settings: Any):
        self.settings = settings
        self._lock = threading.Lock()
        self._status = JobStatus()
        self._cancel = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._log: deque = deque(maxlen=200)

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, config: FinetuneConfig, stages, follow_up: Optional[FollowUp] = None,
              follow_up_name: str = "select", transcribe=None, audio_allowed=None) -> JobStatus:
        """Run ``stages`` of ``config`` in the background, then ``follow_up(progress, cancel)`` if given;
        ``transcribe`` is the data stage's ASR transcript check (``config.asr_check``)."""
        config.validate()
        with self._lock:
            if self.running():
                raise JobBusyError(f"a finetuning job ({self._status.experiment}: {', '.join(self._status.stages)}) "
                                   "is still running; cancel it or wait until it finishes")
            exp = Experiment(self.settings, config)  # refuses settings that would repurpose a saved experiment
            self._cancel = threading.Event()
            self._log.clear()
            names = tuple(stages) + ((follow_up_name,) if follow_up is not None else ())
            self._status = JobStatus(state="running", experiment=config.name, stages=names, started=time.time(),
                                     message="starting")
            exp.save()  # the experiment exists (and its settings are kept) from the first click
            self._thread = threading.Thread(target=self._run, args=(exp, tuple(stages), follow_up, transcribe,
                                                                    audio_allowed),
                                            name=f"finetune-{config.name}", daemon=True)
            self._thread.start()
        return self.status()  # outside the lock: status() takes it too (threading.Lock is not reentrant)

    def cancel(self) -> bool:
        if not self.running():
            return False
        self._cancel.set()
        self._note("cancel requested: stopping after the current step (state is saved)")
        return True

    def status(self) -> JobStatus:
        with self._lock:
            st = JobStatus(**{**self._status.__dict__})
            st.log = list(self._log)
            return st

    def wait(self, timeout: Optional[float] = None) -> JobStatus:
        t = self._thread
        if t is not None:
            t.join(timeout)
        return self.status()

    # -- worker --------------------------------------------------------------------------------------------------
    def _note(self, message: str) -> None:
        self._log.append(time.strftime("%H:%M:%S ") + str(message))

    def _progress(self, frac: float, message: str) -> None:
        stage = ""
        if message.startswith("[") and "]" in message:  # "[s2] epoch 1/8 ..." from Experiment.run / the follow-up
            stage, message = message[1:message.index("]")], message[message.index("]") + 1:].strip()
        with self._lock:
            self._status.fraction = max(0.0, min(1.0, float(frac)))
            self._status.message = message
            if stage:
                self._status.stage = stage

    def _run(self, exp: Experiment, stages: tuple, follow_up: Optional[FollowUp], transcribe=None,
             audio_allowed=None) -> None:
        share = 0.85 if follow_up is not None else 1.0
        try:
            self._note(f"{exp.config.name}: {', '.join(stages)}")
            results = exp.run(stages, progress=lambda f, m: self._progress(f * share, m),
                              cancel=self._cancel.is_set, log=self._note, transcribe=transcribe,
                              audio_allowed=audio_allowed)
            for stage in stages:
                if stage in results:
                    self._note(describe(stage, results[stage]))
            if "cancelled" in results or self._cancel.is_set():
                self._finish("cancelled", "cancelled: run the same stages again to continue")
                return
            if follow_up is not None:
                try:
                    res = follow_up(lambda f, m: self._progress(share + (1 - share) * f, f"[select] {m}"),
                                    self._cancel)
                except GSVError as exc:
                    if self._cancel.is_set() or not stages:
                        raise
                    # the stages themselves succeeded: keep the job "done" and say why the follow-up did not run
                    self._note(f"checkpoint selection not done: {exc}")
                    self._finish("done", f"training finished; checkpoint selection not done: {exc}", error=str(exc))
                    return
                with self._lock:
                    self._status.result = res
                self._note("checkpoint selection finished")
            self._finish("done", "finished")
        except GSVError as exc:
            state = "cancelled" if self._cancel.is_set() else "failed"
            self._note(f"{state}: {exc}")
            self._finish(state, str(exc), error=str(exc))
        except Exception as exc:  # noqa: BLE001 - reported in the page, full trace in the log
            self._note(traceback.format_exc(limit=8))
            self._finish("failed", f"unexpected error: {type(exc).__name__}: {exc}",
                         error=f"{type(exc).__name__}: {exc}")

    def _finish(self, state: str, message: str, error: str = "") -> None:
        with self._lock:
            self._status.state = state
            self._status.message = message
            self._status.error = error
            self._status.finished = time.time()
            if state == "done":
                self._status.fraction = 1.0
