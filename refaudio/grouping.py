"""Speaker grouping of a role's clips with ERes2NetV2 speaker vectors.

The vectors are ERes2NetV2's 192-d speaker-verification embedding (``kind="segment"``, what
:mod:`eval.similarity` scores with by default); ``kind="forward3"`` (the 20480-d vector SoVITS v2Pro is conditioned
on) is still available. Embeddings are computed once per clip, speaker model and kind and cached in the database
(the kind is part of the cache key, so vectors of different kinds never mix). From them: the similarity of
every clip to one anchor clip with a histogram over the whole range (-1..1, nothing dropped), the full similarity
matrix, threshold clustering, the role's centroid (the target speaker) and moving clips into a category.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from gsv_core.errors import GSVError

from .db import Database
from .library import Library

Progress = Callable[[float, str], None]
BIN_WIDTH = 0.1


class GroupingError(GSVError):
    """Speaker grouping cannot run as asked."""


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


#: the embedding the index uses unless told otherwise (gsv_core.features.speaker.EMBEDDING_KINDS)
DEFAULT_KIND = "segment"


class SpeakerIndex:
    """``encoder_provider()`` returns the speaker encoder (loaded on first use); ``model_key`` names it in the
    cache (path + modification time) and ends with the embedding ``kind`` (``"<model>|segment"``), so a different
    model or another kind of vector never reuses stale vectors."""

    def __init__(self, db: Database, library: Library, encoder_provider: Callable[[], Any], model_key: str,
                 kind: str = DEFAULT_KIND):
        from gsv_core.features.speaker import EMBEDDING_KINDS

        if kind not in EMBEDDING_KINDS:
            raise GroupingError(f"Unknown speaker embedding {kind!r}: use one of {', '.join(EMBEDDING_KINDS)}.")
        self.db = db
        self.library = library
        self.encoder_provider = encoder_provider
        self.kind = kind
        self.model_key = f"{model_key}|{kind}"

    @classmethod
    def for_model_file(cls, db: Database, library: Library, sv_path: Any,
                       encoder_provider: Callable[[], Any], kind: str = DEFAULT_KIND) -> "SpeakerIndex":
        p = Path(str(sv_path)) if sv_path else None
        key = f"{p.resolve()}:{p.stat().st_mtime_ns}" if p is not None and p.exists() else str(sv_path)
        return cls(db, library, encoder_provider, key, kind)

    def embedding_of_wav(self, wav: np.ndarray, sr: int) -> np.ndarray:
        from eval.audio_metrics import speaker_embedding

        return speaker_embedding(self.encoder_provider(), wav, sr, kind=self.kind).numpy().astype(np.float32)

    def embeddings(self, clip_ids: Sequence[int], progress: Optional[Progress] = None,
                   cancel: Optional[Callable[[], bool]] = None) -> dict[int, np.ndarray]:
        """Speaker vectors of the clips (cached); a clip whose audio cannot be read is skipped and reported in
        ``self.last_errors``."""
        from gsv_core.audio import load_audio

        ids = [int(i) for i in clip_ids]
        out: dict[int, np.ndarray] = {}
        self.last_errors: dict[int, str] = {}
        for n, clip_id in enumerate(ids):
            row = self.db.one("SELECT dim, vector FROM speaker_embeddings WHERE clip_id = ? AND model = ?",
                              (clip_id, self.model_key))
            if row is not None:
                out[clip_id] = np.frombuffer(row["vector"], dtype=np.float32).copy()
                continue
            if cancel is not None and cancel():
                break
            if progress is not None:
                progress(n / max(1, len(ids)), f"speaker vector of clip {clip_id}")
            try:
                wav, sr = load_audio(self.library.clip_path(clip_id))
                vec = self.embedding_of_wav(wav, sr)
            except GSVError as exc:
                self.last_errors[clip_id] = str(exc)
                continue
            with self.db.transaction() as conn:
                conn.execute("INSERT OR REPLACE INTO speaker_embeddings (clip_id, model, dim, vector) "
                             "VALUES (?, ?, ?, ?)", (clip_id, self.model_key, int(vec.size), vec.tobytes()))
            out[clip_id] = vec
        return out

    def _role_clip_ids(self, role_id: int, categories: Sequence[str] = (), valid_only: bool = False) -> list[int]:
        rows = self.library.clips(role_id, categories=categories, valid=True if valid_only else None, sort="id",
                                  descending=False, limit=10000)
        return [r["id"] for r in rows]

    def centroid(self, role_id: int, categories: Sequence[str] = ()) -> Optional[np.ndarray]:
        """The mean unit speaker vector of the role's valid clips (all clips when none is valid)."""
        ids = self._role_clip_ids(role_id, categories, valid_only=True) or self._role_clip_ids(role_id, categories)
        vecs = self.embeddings(ids)
        if not vecs:
            return None
        return _unit(np.mean([_unit(v) for v in vecs.values()], axis=0))

    def similarity_to(self, anchor_clip_id: int, categories: Sequence[str] = (),
                      progress: Optional[Progress] = None) -> dict:
        """Scores of every clip (of the anchor's role, optionally only some categories) against the anchor."""
        anchor = self.library.clip(anchor_clip_id)
        ids = [i for i in self._role_clip_ids(anchor["role_id"], categories) if i != anchor["id"]]
        vecs = self.embeddings([anchor["id"], *ids], progress=progress)
        if anchor["id"] not in vecs:
            raise GroupingError(f"Clip {anchor['id']} has no speaker vector: "
                                f"{self.last_errors.get(anchor['id'], 'unreadable audio')}")
        a = _unit(vecs[anchor["id"]])
        scores = sorted(((i, float(np.dot(a, _unit(vecs[i])))) for i in ids if i in vecs), key=lambda x: -x[1])
        counts, edges = histogram([s for _, s in scores])
        return {"anchor": anchor["id"], "scores": scores, "counts": counts, "edges": edges,
                "errors": dict(self.last_errors)}

    def matrix(self, role_id: int, categories: Sequence[str] = ()) -> tuple[list[int], np.ndarray]:
        ids = self._role_clip_ids(role_id, categories)
        vecs = self.embeddings(ids)
        ids = [i for i in ids if i in vecs]
        if not ids:
            return [], np.zeros((0, 0), dtype=np.float32)
        m = np.stack([_unit(vecs[i]) for i in ids])
        return ids, (m @ m.T).astype(np.float32)

    def cluster(self, role_id: int, threshold: float, categories: Sequence[str] = ()) -> list[list[int]]:
        """Average-linkage agglomerative clustering: two groups merge while their mean pairwise similarity is at
        least ``threshold``. Largest group first; deterministic."""
        if not -1.0 <= float(threshold) <= 1.0:
            raise GroupingError(f"The similarity threshold must be between -1 and 1, not {threshold}.")
        ids, sim = self.matrix(role_id, categories)
        groups = [[k] for k in range(len(ids))]
        while len(groups) > 1:
            best, pair = -2.0, None
            for a in range(len(groups)):
                for b in range(a + 1, len(groups)):
                    s = float(sim[np.ix_(groups[a], groups[b])].mean())
                    if s > best:
                        best, pair = s, (a, b)
            if pair is None or best < float(threshold):
                break
            a, b = pair
            groups[a] = sorted(groups[a] + groups[b])
            del groups[b]
        out = [[ids[k] for k in g] for g in groups]
        return sorted(out, key=lambda g: (-len(g), g[0]))

    def move_similar(self, anchor_clip_id: int, threshold: float, target_category: str,
                     categories: Sequence[str] = ()) -> list[int]:
        """Move every clip scoring >= threshold against the anchor (and the anchor) into ``target_category``.
        Clips without a score (unreadable) are left where they are."""
        result = self.similarity_to(anchor_clip_id, categories)
        ids = [result["anchor"]] + [i for i, s in result["scores"] if s >= float(threshold)]
        self.library.relabel(ids, target_category)
        return ids

    def apply_clusters(self, clusters: Sequence[Sequence[int]], prefix: str = "speaker") -> dict[str, list[int]]:
        """Label cluster k as ``<prefix>_<k>`` (1 = the largest)."""
        out = {}
        for k, group in enumerate(clusters, 1):
            if group:
                name = f"{prefix}_{k}"
                self.library.relabel(list(group), name)
                out[name] = list(group)
        return out


def histogram(scores: Sequence[float], width: float = BIN_WIDTH) -> tuple[list[int], list[float]]:
    """Counts in ``width``-wide bins over [-1, 1]; every score is counted (values are clipped into the range)."""
    n = int(round(2.0 / width))
    edges = [round(-1.0 + k * width, 6) for k in range(n + 1)]
    counts = [0] * n
    for s in scores:
        k = int(np.floor((min(max(float(s), -1.0), 1.0) + 1.0) / width))
        counts[min(k, n - 1)] += 1
    return counts, edges
