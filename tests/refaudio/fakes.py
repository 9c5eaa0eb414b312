"""A stand-in engine for fast runner tests: deterministic audio from the seed, optional failures and crashes."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsv_core.errors import AudioError


@dataclass
class FakeResult:
    sample_rate: int
    audio: np.ndarray
    seed: int

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


class FakeEngine:
    def __init__(self, crash_after: int | None = None, hard_exit: bool = False):
        self.calls: list[list] = []
        self.done = 0
        self.crash_after = crash_after
        self.hard_exit = hard_exit

    def synthesize_many(self, requests, progress=None, cancel=None):
        self.calls.append([r.id for r in requests])
        out = []
        for r in requests:
            if not Path(r.ref_audio).is_file() or Path(r.ref_audio).stat().st_size < 100:
                raise AudioError(f"{r.ref_audio}: unreadable reference")
            if self.crash_after is not None and self.done >= self.crash_after:
                if self.hard_exit:
                    os._exit(17)
                raise KeyboardInterrupt("simulated crash")
            rng = np.random.default_rng(r.seed)
            n = 1600 * (5 + r.seed % 7) + 160 * r.top_k
            out.append(FakeResult(16000, (0.2 * rng.standard_normal(n)).astype(np.float32), r.seed))
        self.done += len(requests)
        return out
