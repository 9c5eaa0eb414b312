"""Append-only CSV log of every synthesis: what was asked, with which models, and how long each stage took."""
from __future__ import annotations

import csv
import threading
import time
from pathlib import Path
from typing import Any, Optional

COLUMNS = [
    "timestamp", "id", "text", "text_lang", "fragments", "phones", "tokens", "gpt", "sovits", "version", "device",
    "dtype", "top_k", "top_p", "temperature", "repetition_penalty", "speed", "noise_scale", "pause", "split_method",
    "seed", "audio_s", "speech_s", "wall_s", "rtf", "t_reference", "t_frontend", "t_bert", "t_s1", "t_s2", "t_post",
]


class TTSLog:
    def __init__(self, path: Optional[Any]):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()

    def append(self, result: Any, device: str = "", dtype: str = "") -> None:
        if self.path is None:
            return
        req = result.request
        t = result.timings
        row = {
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%S"), "id": getattr(req, "id", ""),
            "text": getattr(req, "text", ""), "text_lang": getattr(req, "text_lang", ""),
            "fragments": len(result.fragments), "phones": sum(f.phones for f in result.fragments),
            "tokens": result.tokens, "gpt": result.gpt, "sovits": result.sovits, "version": result.version,
            "device": device, "dtype": dtype, "top_k": getattr(req, "top_k", ""), "top_p": getattr(req, "top_p", ""),
            "temperature": getattr(req, "temperature", ""), "repetition_penalty": getattr(req, "repetition_penalty", ""),
            "speed": getattr(req, "speed", ""), "noise_scale": getattr(req, "noise_scale", ""),
            "pause": getattr(req, "pause", ""), "split_method": getattr(req, "split_method", ""), "seed": result.seed,
            "audio_s": f"{result.duration:.3f}", "speech_s": f"{result.speech_seconds:.3f}",
            "wall_s": f"{result.wall:.3f}", "rtf": f"{result.rtf:.4f}",
            **{f"t_{k}": f"{t.get(k, 0.0):.4f}" for k in ("reference", "frontend", "bert", "s1", "s2", "post")},
        }
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                new = not self.path.exists() or self.path.stat().st_size == 0
                with open(self.path, "a", newline="", encoding="utf-8") as f:
                    writer = csv.DictWriter(f, fieldnames=COLUMNS)
                    if new:
                        writer.writeheader()
                    writer.writerow(row)
            except OSError:
                # The log must never break synthesis (read-only folder, full disk): the result is still returned.
                pass
