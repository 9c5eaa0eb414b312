"""Text side of the engine: frontend pieces -> phone ids and their BERT features, cached.

BERT features follow upstream: Chinese segments get ``hidden_states[-3]`` of chinese-roberta expanded per phone,
every other segment zeros of the same width; a piece's features are its segments' features concatenated in
time. Prompt texts and repeated pieces are cached (the UI and sweeps repeat them constantly).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch

from ..text import SPLIT_MARKS, load_user_dict, preprocess_text, text_to_phones
from ..text.frontend import FrontendResult, Segment

BERT_DIM = 1024


@dataclass(frozen=True)
class TextUnit:
    """One piece of text as the GPT and SoVITS read it."""

    ids: tuple[int, ...]
    norm_text: str
    segments: tuple[Segment, ...]

    @classmethod
    def from_result(cls, result: FrontendResult) -> "TextUnit":
        return cls(tuple(result.phone_ids), result.norm_text, tuple(result.segments))


class TextFeaturizer:
    def __init__(self, bert_model: Callable[[], Any], dtype: torch.dtype, options: Optional[dict] = None,
                 cache_size: int = 512):
        """``options``: ``use_g2pw`` (bool) and ``user_dict_path`` (the settings' file or None); the dictionary is
        re-read when the file changes, so editing it takes effect without a restart."""
        self._bert_model = bert_model
        self.dtype = dtype
        self._use_g2pw = bool((options or {}).get("use_g2pw", True))
        self._user_dict_path = (options or {}).get("user_dict_path")
        self._bert_cache: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
        self._prompt_cache: "OrderedDict[tuple, TextUnit]" = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()  # fast tokenizers are not safe to call from two threads at once

    def _options(self) -> tuple[dict, tuple]:
        """(front-end keyword arguments, their cache key)."""
        stamp: tuple = ()
        user_dict = None
        if self._user_dict_path:
            user_dict = load_user_dict(self._user_dict_path)  # cached by the file's mtime and size
            st = Path(self._user_dict_path).expanduser().stat()
            stamp = (st.st_mtime_ns, st.st_size)
        return {"user_dict": user_dict, "use_g2pw": self._use_g2pw}, (self._use_g2pw, stamp)

    def prompt_unit(self, text: str, lang: str, version: str, timings: dict) -> TextUnit:
        """The reference transcript as upstream feeds it: stripped, ending with a split mark (。 or . added)."""
        text = text.strip("\n").strip()
        if text and text[-1] not in SPLIT_MARKS:
            text += "." if lang == "en" else "。"
        options, stamp = self._options()
        key = (text, lang, version, stamp)
        with self._lock:
            unit = self._prompt_cache.get(key)
        if unit is None:
            t0 = time.perf_counter()
            unit = TextUnit.from_result(text_to_phones(text, lang, version, tags=False, **options))
            timings["frontend"] += time.perf_counter() - t0
            with self._lock:
                self._remember(self._prompt_cache, key, unit)
        return unit

    def fragments(self, text: str, lang: str, method: str, version: str, pause: float,
                  timings: dict) -> Iterator[tuple[tuple[str, TextUnit], float]]:
        """``((piece text, unit), pause after)`` for every piece to synthesise, in order. A pause tag replaces
        the regular pause after the piece before it; a leading pause tag is ignored."""
        t0 = time.perf_counter()
        results = preprocess_text(text, lang, version, method, **self._options()[0])
        timings["frontend"] += time.perf_counter() - t0
        pieces: list[list] = []
        for res in results:
            if res.segments:
                pieces.append([res.text, TextUnit.from_result(res), pause])
            elif res.pauses and pieces:
                pieces[-1][2] = sum(p.seconds for p in res.pauses)
        for piece_text, unit, after in pieces:
            yield (piece_text, unit), after

    def preview(self, text: str, lang: str, method: str, version: str, pause: float):
        """How :meth:`fragments` will cut and read ``text`` (a :class:`gsv_core.engine.preview.TextPreview`:
        pieces, language segments, phones, pinyin, pauses), without BERT; raises the front end's TextError."""
        from .preview import build_preview

        results = preprocess_text(text, lang, version, method, **self._options()[0])
        return build_preview(text, lang, method, version, results, pause)

    def bert_for(self, unit: TextUnit, timings: dict) -> torch.Tensor:
        """[1024, len(unit.ids)] on the CPU, in the engine's dtype."""
        key = tuple((s.lang, s.norm_text, tuple(s.word2ph or ()), len(s.phone_ids)) for s in unit.segments)
        with self._lock:
            cached = self._bert_cache.get(key)
            if cached is not None:
                self._bert_cache.move_to_end(key)
                return cached
        t0 = time.perf_counter()
        zh = [s for s in unit.segments if s.lang == "zh" and s.word2ph]
        feats: dict[int, torch.Tensor] = {}
        if zh:
            model = self._bert_model()
            with self._lock, torch.inference_mode():
                out = model.phone_features_batch([(s.norm_text, s.word2ph) for s in zh])
            feats = {id(s): f for s, f in zip(zh, out)}
        parts = [
            feats[id(s)].to("cpu", torch.float32) if id(s) in feats else torch.zeros(BERT_DIM, len(s.phone_ids))
            for s in unit.segments
        ]
        bert = torch.cat(parts, dim=1).to(self.dtype)
        timings["bert"] += time.perf_counter() - t0
        with self._lock:
            self._remember(self._bert_cache, key, bert)
        return bert

    def _remember(self, cache: OrderedDict, key: Any, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self._cache_size:
            cache.popitem(last=False)
