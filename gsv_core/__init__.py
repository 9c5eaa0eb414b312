"""gsv_core: our own GPT-SoVITS inference and finetuning engine (checkpoint-compatible with upstream)."""

__version__ = "0.1.0"
