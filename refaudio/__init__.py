"""The reference-audio workbench: a SQLite library of reference clips, parameter sweeps run in batches through the
engine, automatic metrics and user scores, and voice presets ("products").

The RefAudio tab and ``python -m refaudio`` call :class:`refaudio.service.RefAudioService`; see docs/refaudio.md.
"""
from .service import RefAudioService
from .sweeps import TaskSpec

__all__ = ["RefAudioService", "TaskSpec"]
