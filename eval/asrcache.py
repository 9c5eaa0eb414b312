"""ASR transcripts cached per audio content: a rerun, a re-scoring with other options or a second run over the same
external audio never transcribes a file twice.

The cache is one JSON-lines file (by default ``REPORTS_DIR/asr_cache.jsonl``, shared by every run; a run may name
another file or none). A line holds ``key``, ``text`` and ``lang``; the key is the SHA-256 of

* the audio file's bytes (its content, not its name: a copied or renamed file hits, an overwritten one misses),
* the ASR model's identity (resolved folder + size and modification time of ``model.bin``),
* every ASR option that changes the transcript (language, beam size, VAD, token cap, temperature, compute type,
  t2s, punctuation; not the device),
* :data:`CACHE_VERSION`.

Only successful transcripts are stored (a failure may be transient). Lines are appended and flushed one by one;
a torn last line (a killed process) is ignored when the file is read back.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

CACHE_VERSION = 1
#: ASR options left out of the key (they do not change what is transcribed)
_NOT_IN_KEY = ("model_dir", "device", "speaker")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def model_identity(model_dir: str | os.PathLike) -> str:
    """Resolved folder plus size and modification time of its weights (a replaced model misses the cache)."""
    folder = Path(model_dir).expanduser().resolve()
    parts = [str(folder)]
    weights = folder / "model.bin"
    if weights.is_file():
        st = weights.stat()
        parts += [str(st.st_size), str(st.st_mtime_ns)]
    return "|".join(parts)


def options_identity(options: Any) -> dict:
    """The transcript-relevant fields of an :class:`gsv_core.asr.ASROptions` (or a plain dict)."""
    d = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options)
    return {k: d[k] for k in sorted(d) if k not in _NOT_IN_KEY}


class ASRCache:
    """``get(audio_path, options)`` -> ``(text, lang)`` or None; ``put(audio_path, options, text, lang)``.
    ``ASRCache(None)`` is a cache that holds nothing (every lookup misses, nothing is written)."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path).expanduser() if path else None
        self._items: Optional[dict[str, tuple[str, str]]] = None
        self._hashes: dict[tuple[str, int, int], str] = {}
        self.hits = 0
        self.misses = 0

    def _load(self) -> dict[str, tuple[str, str]]:
        if self._items is None:
            self._items = {}
            if self.path is not None and self.path.is_file():
                for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                    try:
                        d = json.loads(line)
                        self._items[str(d["key"])] = (str(d["text"]), str(d.get("lang", "")))
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn or foreign line
        return self._items

    def audio_hash(self, audio_path: str | os.PathLike) -> str:
        p = Path(audio_path)
        st = p.stat()
        k = (str(p.resolve()), st.st_size, st.st_mtime_ns)
        if k not in self._hashes:
            self._hashes[k] = file_sha256(p)
        return self._hashes[k]

    def key(self, audio_path: str | os.PathLike, options: Any) -> str:
        opts = options_identity(options)
        ident = dict(v=CACHE_VERSION, audio=self.audio_hash(audio_path),
                     model=model_identity(getattr(options, "model_dir", None) or opts.get("model_dir", "")),
                     options=opts)
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode("utf-8")).hexdigest()

    def get(self, audio_path: str | os.PathLike, options: Any) -> Optional[tuple[str, str]]:
        if self.path is None:
            self.misses += 1
            return None
        hit = self._load().get(self.key(audio_path, options))
        if hit is None:
            self.misses += 1
        else:
            self.hits += 1
        return hit

    def put(self, audio_path: str | os.PathLike, options: Any, text: str, lang: str = "") -> None:
        if self.path is None:
            return
        key = self.key(audio_path, options)
        items = self._load()
        if items.get(key) == (text, lang):
            return
        items[key] = (text, lang)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = b""
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                data = fh.read(1)
        with open(self.path, "a", encoding="utf-8") as fh:
            if data and data != b"\n":
                fh.write("\n")  # a torn last line stays alone (and is skipped when read back)
            fh.write(json.dumps(dict(key=key, text=text, lang=lang), ensure_ascii=False) + "\n")
            fh.flush()
