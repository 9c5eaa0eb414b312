"""Error types raised by gsv_core.

Every error a user can cause (a missing file, a corrupt checkpoint, a wrong pairing of models, bad audio) is a
``GSVError`` with a message meant to be shown as is in the UI or the CLI. Anything else escaping gsv_core is a bug.
"""


class GSVError(Exception):
    """Base class of user-facing errors; ``str(err)`` is a complete, readable message."""


class CheckpointError(GSVError):
    """A checkpoint file is missing, unreadable, unsafe, of an unexpected kind or of an unsupported version."""


class UnsupportedVersionError(CheckpointError):
    """A recognised checkpoint of a version we do not implement (SoVITS v3/v4, LoRA files)."""


class ModelMismatchError(GSVError):
    """Weights do not fit the architecture built from their config (missing/unexpected keys, shape mismatch)."""


class AudioError(GSVError):
    """Audio that cannot be decoded or is unusable (silent, too short/long, wrong format)."""
