"""Several local devices serving one long job: one engine per device, each in its own worker process.

    from gsv_core.api import Engine, job_devices

    engine = Engine.open(settings)
    devices = job_devices("all")                 # [] = no pool: the engine itself does the work
    with engine.pool(devices) as pool:           # one process per device: Engine.open(settings, device=d)
        results = pool.synthesize_many(requests, cancel=event)   # input order; the first failure is raised
        outcomes = pool.synthesize_each(requests, cancel=event)  # input order; a result or a GSVError per item

The requests are cut into contiguous shards, one per worker (neighbouring requests share models and settings, so
each worker still batches them); the results come back to the calling process in input order, which writes its
files and records exactly as with one engine (resume is unchanged). Every worker opens its engine with the
calling engine's settings, precision, feature models and memory budget; the synthesis log is written by the
calling process only (one writer), with each worker's device. Cancelling stops every worker within one GPT step;
a worker that dies (killed, out of memory) is a :class:`PoolError` naming its device, and the pool is closed.
Workers are started with the ``spawn`` method (CUDA cannot be shared with forked children).

Device lists (``job_devices``): ``""``/``default``/``None`` no pool; ``all`` every local CUDA GPU when there are
two or more, else no pool; ``cuda:0,cuda:1`` (or a list) those devices; ``cpu,cpu`` two CPU workers (tests).
"""
from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import pickle
import queue
import threading
import time
from typing import Any, Callable, Optional, Sequence

from .errors import GSVError

Progress = Callable[[float, str], None]

#: seconds a worker may take to import torch and open its engine (models load lazily, at the first request)
START_TIMEOUT_S = 600.0
#: seconds the workers get to stop after a cancel before they are terminated
CANCEL_GRACE_S = 60.0


class PoolError(GSVError):
    """A worker of an engine pool could not start or stopped unexpectedly."""


def job_devices(spec: Any) -> list[str]:
    """The devices a long job spreads over: ``[]`` for the single engine (``None``, ``""``, ``default``), every
    local CUDA GPU for ``all`` (``[]`` with fewer than two), or the devices of a comma-separated string or list
    (two or more; ``cpu`` may repeat)."""
    if spec is None:
        return []
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in ("", "default", "single", "none", "off"):
            return []
        if text == "all":
            import torch

            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            return [f"cuda:{i}" for i in range(count)] if count > 1 else []
        names = [p.strip() for p in text.split(",") if p.strip()]
    elif isinstance(spec, (list, tuple)):
        names = [str(p).strip().lower() for p in spec if str(p).strip()]
    else:
        raise GSVError(f"devices {spec!r}: use all, default or a list such as cuda:0,cuda:1")
    if not names:
        return []
    if len(names) < 2:
        raise GSVError(f"devices {spec!r}: give two or more devices (e.g. cuda:0,cuda:1) or all; a single device "
                       "is the device setting (--device, GSV_DEVICE)")
    for name in names:
        _check_device(name)
    return names


def _check_device(name: str) -> None:
    import torch

    if name == "cpu":
        return
    if not name.startswith("cuda:") or not name[5:].isdigit():
        raise GSVError(f"device {name!r} in a device list: use cpu or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if int(name[5:]) >= count:
        raise GSVError(f"device {name!r}: this machine has {count} CUDA device(s)")


class EnginePool:
    """One engine per device in worker processes; one call at a time (a job's runner drives it)."""

    def __init__(self, settings: Any, devices: Sequence[str], options: Optional[dict] = None,
                 log: Optional[Callable[[Any, str, str], None]] = None, start_timeout: float = START_TIMEOUT_S):
        self.devices = [str(d) for d in devices]
        if not self.devices:
            raise PoolError("an engine pool needs at least one device")
        self.size = len(self.devices)
        self._log = log
        self._lock = threading.Lock()
        self._jobs = itertools.count(1)
        self._closed = False
        self._ctx = mp.get_context("spawn")
        self._stop = self._ctx.Event()  # the workers' cancel event (what their engines check every GPT step)
        self._results = self._ctx.Queue()
        self._workers: list[_Worker] = []
        self.worker_info: list[tuple[str, str]] = []  # (device, dtype) each engine reported
        cpu_threads = int(getattr(settings, "cpu_threads", 0) or 0)
        threads = 0 if cpu_threads > 0 else max(1, (os.cpu_count() or 1) // self.size)
        try:
            for index, device in enumerate(self.devices):
                tasks = self._ctx.Queue()
                proc = self._ctx.Process(target=_worker_main, name=f"gsv-engine-{index}-{device}", daemon=True,
                                         args=(index, settings, dict(options or {}), device, threads, tasks,
                                               self._results, self._stop))
                proc.start()
                self._workers.append(_Worker(device, proc, tasks))
            self._wait_ready(start_timeout)
        except BaseException:
            self.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def _wait_ready(self, timeout: float) -> None:
        info: dict[int, tuple[str, str]] = {}
        deadline = time.monotonic() + timeout
        while len(info) < self.size:
            try:
                kind, index, _, payload = self._results.get(timeout=0.2)
            except queue.Empty:
                self._raise_if_dead()
                if time.monotonic() > deadline:
                    raise PoolError(f"the engine workers did not start within {timeout:.0f} s") from None
                continue
            if kind == "failed":
                raise PoolError(f"the engine on {self.devices[index]} could not start: {_loads(payload)}")
            if kind == "ready":
                info[index] = payload
        self.worker_info = [info[i] for i in range(self.size)]

    def close(self) -> None:
        """Stop the workers (asked first, terminated if they do not stop)."""
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            try:
                w.tasks.put(None)
            except (OSError, ValueError):
                pass
        for w in self._workers:
            w.process.join(timeout=10)
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
        for q in [self._results, *(w.tasks for w in self._workers)]:
            q.close()
            q.cancel_join_thread()

    def __enter__(self) -> "EnginePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- synthesis ---------------------------------------------------------------------------------------------------
    def synthesize_many(self, requests: Sequence[Any], progress: Optional[Progress] = None,
                        cancel: Optional[threading.Event] = None) -> list:
        """Like :meth:`gsv_core.api.Engine.synthesize_many`: results in request order; the first failing request's
        error is raised."""
        outcomes = self._map(list(requests), each=False, progress=progress, cancel=cancel)
        for out in outcomes:
            if isinstance(out, BaseException):
                raise out
        return outcomes

    def synthesize_each(self, requests: Sequence[Any], progress: Optional[Progress] = None,
                        cancel: Optional[threading.Event] = None) -> list:
        """A result or the error (a GSVError) of every request, in request order: a batch that fails is retried
        request by request in its worker, so one bad request fails alone. Cancelling raises ``Cancelled``."""
        return self._map(list(requests), each=True, progress=progress, cancel=cancel)

    def _map(self, requests: list, each: bool, progress: Optional[Progress], cancel) -> list:
        from .engine.pipeline import Cancelled

        if not requests:
            return []
        with self._lock:
            if self._closed:
                raise PoolError("the engine pool is closed")
            try:
                self._raise_if_dead()
            except PoolError:
                self.close()
                raise
            job = next(self._jobs)
            shards = _shards(len(requests), self.size)
            pending: dict[int, tuple[int, int]] = {}
            for index, (lo, hi) in enumerate(shards):
                if hi > lo:
                    self._workers[index].tasks.put((job, requests[lo:hi], each))
                    pending[index] = (lo, hi)
            outcomes: list = [None] * len(requests)
            finished = 0
            cancelled = False
            deadline = None
            while pending:
                if cancel is not None and cancel.is_set() and deadline is None:
                    self._stop.set()
                    deadline = time.monotonic() + CANCEL_GRACE_S
                try:
                    kind, index, got_job, payload = self._results.get(timeout=0.1)
                except queue.Empty:
                    try:
                        self._raise_if_dead()
                    except PoolError:
                        self.close()
                        raise
                    if deadline is not None and time.monotonic() > deadline:
                        self.close()
                        raise Cancelled("Synthesis was cancelled (the engine workers were stopped).") from None
                    continue
                if got_job != job or index not in pending:
                    continue
                lo, hi = pending.pop(index)
                if kind == "cancelled":
                    cancelled = True
                    continue
                for offset, (status, value) in enumerate(_loads(payload)):
                    if status == "ok" and self._log is not None:
                        device, dtype = self.worker_info[index]
                        self._log(value, device, dtype)
                    outcomes[lo + offset] = value
                finished += hi - lo
                if progress is not None:
                    progress(finished / len(requests), f"{finished}/{len(requests)} synthesised")
            self._stop.clear()
            if cancelled or (cancel is not None and cancel.is_set()):
                raise Cancelled("Synthesis was cancelled.")
            return outcomes

    def _raise_if_dead(self) -> None:
        for w in self._workers:
            code = w.process.exitcode
            if code is not None:
                why = "killed, perhaps out of memory" if code in (-9, 137) else "it crashed"
                raise PoolError(f"the engine worker on {w.device} stopped unexpectedly (exit code {code}: {why}); "
                                "finished items are kept: run the job again to resume")


class _Worker:
    def __init__(self, device: str, process, tasks):
        self.device, self.process, self.tasks = device, process, tasks


def _shards(n: int, k: int) -> list[tuple[int, int]]:
    """``k`` contiguous (lo, hi) ranges covering ``range(n)``, sizes differing by at most one."""
    out, lo = [], 0
    for i in range(k):
        hi = lo + n // k + (1 if i < n % k else 0)
        out.append((lo, hi))
        lo = hi
    return out


def _portable(exc: BaseException) -> GSVError:
    """An error that survives pickling, with the message the runners record."""
    if isinstance(exc, GSVError):
        try:
            pickle.loads(pickle.dumps(exc))
            return exc
        except Exception:  # noqa: BLE001 - a subclass with a constructor pickle cannot replay
            return GSVError(str(exc))
    return GSVError(f"{type(exc).__name__}: {exc}")


def _loads(payload: bytes):
    return pickle.loads(payload)


def _dumps(value: Any) -> bytes:
    try:
        return pickle.dumps(value)
    except Exception as exc:  # noqa: BLE001 - never leave the parent waiting on an unpicklable reply
        if isinstance(value, list):
            return pickle.dumps([("error", GSVError(f"result could not be sent back: {exc}"))] * len(value))
        return pickle.dumps(GSVError(f"{type(value).__name__} could not be sent back: {exc}"))


def _run(engine, requests: list, each: bool, stop) -> Any:
    """Outcomes ("ok", result) / ("error", GSVError) of a shard, or "cancelled"."""
    from .engine.pipeline import Cancelled

    try:
        return [("ok", r) for r in engine.synthesize_many(requests, cancel=stop)]
    except Cancelled:
        return "cancelled"
    except Exception as exc:  # noqa: BLE001 - reported to the calling process
        if not each or len(requests) == 1:
            return [("error", _portable(exc))] + [("error", None)] * (len(requests) - 1)
    out = []
    for req in requests:  # one request broke the batch: find it, the others go on
        try:
            out.append(("ok", engine.synthesize_many([req], cancel=stop)[0]))
        except Cancelled:
            return "cancelled"
        except Exception as exc:  # noqa: BLE001
            out.append(("error", _portable(exc)))
    return out


def _worker_main(index: int, settings: Any, options: dict, device: str, threads: int, tasks, results, stop) -> None:
    """A worker process: open the engine on ``device``, then serve shards until told to stop (None)."""
    try:
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        from .api import Engine

        engine = Engine.open(settings, device=device, **options)
        results.put(("ready", index, None, (str(engine.device), str(engine.dtype).replace("torch.", ""))))
    except BaseException as exc:  # noqa: BLE001 - the parent names the device and the reason
        results.put(("failed", index, None, _dumps(_portable(exc))))
        return
    while True:
        job = tasks.get()
        if job is None:
            return
        job_id, requests, each = job
        outcome = _run(engine, requests, each, stop)
        if outcome == "cancelled":
            results.put(("cancelled", index, job_id, None))
            continue
        # a shard that failed as a whole ("many" mode) carries its error on its first request
        results.put(("done", index, job_id, _dumps([(s, v) for s, v in outcome])))
