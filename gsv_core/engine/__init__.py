"""The inference engine: one model registry, reference caching, batched/streamed synthesis."""
from .pipeline import Cancelled, TTSEngine
from .registry import ModelRegistry
from .request import AudioChunk, FragmentInfo, RequestError, SynthesisRequest, SynthesisResult

__all__ = ["AudioChunk", "Cancelled", "FragmentInfo", "ModelRegistry", "RequestError", "SynthesisRequest",
           "SynthesisResult", "TTSEngine"]
