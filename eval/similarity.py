"""Speaker similarity scorers: one API over the speaker models an evaluation can use.

========================  ==========  ==========================================================================
name                      dim         what it is
========================  ==========  ==========================================================================
``eres2netv2`` (default)  192         ERes2NetV2's speaker-verification embedding (the same checkpoint SoVITS
                                      v2Pro uses, its ``seg_1`` head): a fair timbre score
``eres2netv2-forward3``   20480       the time-averaged feature map v2Pro/v2ProPlus SoVITS is *conditioned on*;
                                      comparing it rewards copying the conditioning (kept for old numbers)
``wavlm-sv``              512         transformers ``WavLMForXVector`` (e.g. ``microsoft/wavlm-base-plus-sv``)
                                      from a local folder: a WavLM speaker-verification model, the family of
                                      the published SIM numbers
========================  ==========  ==========================================================================

Published SIM (seed-tts-eval, F5-TTS, CosyVoice ...) is the cosine of **WavLM-large + ECAPA-TDNN** embeddings
(UniSpeech's ``wavlm_large_finetune.pth``, see :data:`eval.seedtts.SEED_TTS_EVAL_SIM`); no scorer here loads that
checkpoint, so ``wavlm-sv`` numbers are of the same kind (WavLM speaker verification, cosine at 16 kHz) but on
their own scale: compare systems with one scorer, and quote the scorer with the number.

Every scorer resamples to 16 kHz, refuses audio shorter than 0.1 s, returns 1-D float32 CPU tensors from
:meth:`embed` and the cosine similarity (a float in [-1, 1]) from :meth:`similarity` / :meth:`similarity_to`.
Long audio is embedded in windows of ``window_s`` seconds whose unit embeddings are averaged (WavLM attention is
quadratic in length; ERes2NetV2 embeds any length at once).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from gsv_core.errors import AudioError, GSVError

SAMPLE_RATE = 16000
MIN_SECONDS = 0.1
#: the scorers :func:`load_scorer` knows, with a line on each
SIMILARITY_MODELS: dict[str, str] = {
    "eres2netv2": "ERes2NetV2 192-d speaker-verification embedding (default)",
    "eres2netv2-forward3": "ERes2NetV2 forward3, the 20480-d vector SoVITS v2Pro is conditioned on (not a fair "
                           "similarity: it rewards copying the conditioning)",
    "wavlm-sv": "WavLM speaker verification (transformers WavLMForXVector from a local folder)",
}
DEFAULT_SIMILARITY_MODEL = "eres2netv2"
#: what to download for ``wavlm-sv`` (shown when the folder is missing or is not such a model)
WAVLM_SV_HELP = (
    "The WavLM speaker-verification scorer needs a transformers WavLMForXVector folder (config.json, "
    "preprocessor_config.json, model.safetensors or pytorch_model.bin), e.g. microsoft/wavlm-base-plus-sv from "
    "Hugging Face (`hf download microsoft/wavlm-base-plus-sv --local-dir DIR`). Note: published seed-tts-eval SIM "
    "uses WavLM-large + ECAPA-TDNN (UniSpeech wavlm_large_finetune.pth), which this scorer does not load, so its "
    "numbers are comparable in kind, not in value.")


class SimilarityError(GSVError):
    """A speaker-similarity model that cannot be used (missing weights, unknown name)."""


def _wave16(wav: Any, sr: int) -> np.ndarray:
    from gsv_core.audio import resample
    from gsv_core.signal import as_mono

    x = as_mono(wav, "speaker similarity input")
    sr = int(sr)
    if sr <= 0:
        raise AudioError(f"sample rate must be positive, got {sr}")
    x16 = resample(x, sr, SAMPLE_RATE) if sr != SAMPLE_RATE else x
    if x16.size < int(MIN_SECONDS * SAMPLE_RATE):
        raise AudioError(f"speaker similarity needs at least {MIN_SECONDS} s of audio, "
                         f"got {x16.size / SAMPLE_RATE:.3f} s")
    return np.ascontiguousarray(x16, dtype=np.float32)


def cosine(a, b) -> float:
    """Cosine similarity of two 1-D embeddings, as a float."""
    from gsv_core.features.speaker import cosine_similarity

    return float(cosine_similarity(a, b))


class SpeakerScorer:
    """Base class: subclasses set ``name`` and implement :meth:`_embed16` ([T] float32 at 16 kHz -> [D])."""

    name: str = ""
    window_s: Optional[float] = None

    def _embed16(self, x16: np.ndarray):  # pragma: no cover - abstract
        raise NotImplementedError

    def embed(self, wav: Any, sr: int):
        """The speaker embedding of a waveform at any rate: a 1-D float32 CPU tensor."""
        import torch

        x16 = _wave16(wav, sr)
        win = int(self.window_s * SAMPLE_RATE) if self.window_s else 0
        if not win or x16.size <= win:
            return self._embed16(x16).float().cpu().reshape(-1)
        starts = list(range(0, x16.size, win))
        if len(starts) > 1 and x16.size - starts[-1] < win // 2:
            starts.pop()  # a short tail joins the previous window
        units = []
        for i, s in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else x16.size
            e = self._embed16(x16[s:end]).float().cpu().reshape(-1)
            units.append(e / e.norm().clamp_min(1e-12))
        return torch.stack(units).mean(0)

    def similarity_to(self, embedding, wav: Any, sr: int) -> float:
        """Cosine similarity of a waveform to an embedding computed before (e.g. the reference's, cached)."""
        return cosine(self.embed(wav, sr), embedding)

    def similarity(self, wav_a: Any, sr_a: int, wav_b: Any, sr_b: int) -> float:
        """Cosine similarity of the embeddings of two waveforms."""
        return cosine(self.embed(wav_a, sr_a), self.embed(wav_b, sr_b))

    def describe(self) -> dict[str, Any]:
        """What to record next to the numbers (report.json): name and description."""
        return {"similarity_model": self.name, "similarity_model_about": SIMILARITY_MODELS.get(self.name, "")}


class ERes2NetScorer(SpeakerScorer):
    """ERes2NetV2 (a :class:`gsv_core.features.speaker.SpeakerEncoder`): ``kind="segment"`` (192-d
    verification embedding, default) or ``"forward3"`` (the 20480-d SoVITS conditioning vector)."""

    def __init__(self, encoder, kind: str = "segment"):
        from gsv_core.features.speaker import EMBEDDING_KINDS

        if kind not in EMBEDDING_KINDS:
            raise SimilarityError(f"unknown ERes2NetV2 embedding {kind!r}: use one of {', '.join(EMBEDDING_KINDS)}")
        self.encoder = encoder
        self.kind = kind
        self.name = "eres2netv2" if kind == "segment" else "eres2netv2-forward3"

    def _embed16(self, x16: np.ndarray):
        import torch

        wav = torch.from_numpy(x16)
        # forward3 is the encoder's __call__ (any callable stand-in works, as refaudio's tests use); no autograd
        # graph, also when called inside a training process (inference_mode tensors would not mix with training)
        with torch.inference_mode(False), torch.no_grad():
            if hasattr(self.encoder, "embed"):  # SpeakerEncoder.embed windows long audio (bounded memory)
                return self.encoder.embed(wav, self.kind)[0]
            return (self.encoder(wav) if self.kind == "forward3" else self.encoder.segment_embedding(wav))[0]


class WavLMSVScorer(SpeakerScorer):
    """transformers ``WavLMForXVector`` from a local folder (no download here; :data:`WAVLM_SV_HELP` says what to
    fetch). Embeddings are the model's x-vectors; audio longer than ``window_s`` (20 s) is embedded in windows."""

    name = "wavlm-sv"

    def __init__(self, folder: str | Path, device: str = "cpu", window_s: float = 20.0):
        folder = Path(folder).expanduser()
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise SimilarityError(f"no WavLM speaker-verification model in {folder} (config.json missing). "
                                  + WAVLM_SV_HELP)
        try:
            arch = json.loads(cfg_path.read_text(encoding="utf-8")).get("architectures") or []
        except (OSError, ValueError) as exc:
            raise SimilarityError(f"{cfg_path} is not a readable model config ({exc}). " + WAVLM_SV_HELP) from None
        if "WavLMForXVector" not in arch:
            raise SimilarityError(f"{folder} holds {arch or 'an unknown model'}, not WavLMForXVector. "
                                  + WAVLM_SV_HELP)
        from transformers import Wav2Vec2FeatureExtractor, WavLMForXVector

        try:
            self.model = WavLMForXVector.from_pretrained(str(folder), local_files_only=True).to(device).eval()
        except (OSError, ValueError) as exc:
            raise SimilarityError(f"cannot load the WavLM model in {folder}: {exc}. " + WAVLM_SV_HELP) from None
        if (folder / "preprocessor_config.json").is_file():
            self.features = Wav2Vec2FeatureExtractor.from_pretrained(str(folder), local_files_only=True)
        else:
            self.features = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, do_normalize=True)
        self.device = device
        self.window_s = window_s
        self.folder = folder

    def _embed16(self, x16: np.ndarray):
        import torch

        inputs = self.features(x16, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        with torch.no_grad():
            out = self.model(input_values=inputs["input_values"].to(self.device))
        return out.embeddings[0]


def load_scorer(model: str = DEFAULT_SIMILARITY_MODEL, *, encoder=None, sv_path: str | Path | None = None,
                wavlm_dir: str | Path | None = None, device: str = "cpu") -> SpeakerScorer:
    """A scorer by name (:data:`SIMILARITY_MODELS`). The ERes2NetV2 ones take a loaded ``encoder`` or an
    ``sv_path`` (the official ``pretrained_eres2netv2w24s4ep4.ckpt``); ``wavlm-sv`` takes ``wavlm_dir``."""
    if model in ("eres2netv2", "eres2netv2-forward3"):
        if encoder is None:
            if not sv_path:
                raise SimilarityError(f"the {model} scorer needs the speaker model (sv_path or a loaded encoder)")
            from gsv_core.loading import load_speaker_encoder

            encoder = load_speaker_encoder(sv_path, device=device)
        return ERes2NetScorer(encoder, "segment" if model == "eres2netv2" else "forward3")
    if model == "wavlm-sv":
        if not wavlm_dir:
            raise SimilarityError("the wavlm-sv scorer needs wavlm_dir (a local model folder). " + WAVLM_SV_HELP)
        return WavLMSVScorer(wavlm_dir, device=device)
    raise SimilarityError(f"unknown similarity model {model!r}: use one of {', '.join(SIMILARITY_MODELS)}")


class EmbeddingCache:
    """Reference embeddings computed once per (scorer, key): ``cache.get(key, wav, sr)``, or
    ``cache.get_file(path)`` which loads the file and keys it by path + modification time."""

    def __init__(self, scorer: SpeakerScorer):
        self.scorer = scorer
        self._items: dict[Any, Any] = {}

    def get(self, key: Any, wav: Any, sr: int):
        if key not in self._items:
            self._items[key] = self.scorer.embed(wav, sr)
        return self._items[key]

    def get_file(self, path: str | Path):
        from gsv_core.audio import load_audio

        p = Path(path)
        key = (str(p.resolve()), p.stat().st_mtime_ns if p.exists() else None)
        if key not in self._items:
            wav, sr = load_audio(p)
            self._items[key] = self.scorer.embed(wav, sr)
        return self._items[key]

    def __len__(self) -> int:
        return len(self._items)
